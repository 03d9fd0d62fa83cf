"""Training: caches of frozen-encoder outputs (`cache`), accelerate trainers for every trainable part (`trainer`),
and the demo corpus (`corpus`). The sound-class classifier that `rewas train classifier` trains is defined with the
evaluation that uses it (`rewas.evaluate.embedders.ClassifierBundle`): training imports evaluation, never the
reverse."""

from .._optional import lazy_names

_WHERE = {
    "CachedClips": "cache",
    "build_cache": "cache",
    "refresh_latents": "cache",
    "TrainConfig": "recipe",
    "train": "trainer",
}
__all__ = list(_WHERE)
__getattr__ = lazy_names(__name__, _WHERE)  # `rewas.train.recipe` (the CLI's help) must not import torch
