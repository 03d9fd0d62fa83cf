"""Training: caches of frozen-encoder outputs (`cache`), accelerate trainers for every trainable part (`trainer`),
and the demo corpus (`corpus`). The sound-class classifier that `rewas train classifier` trains is defined with the
evaluation that uses it (`rewas.evaluate.embedders.ClassifierBundle`): training imports evaluation, never the
reverse."""

from .cache import CachedClips, build_cache, refresh_latents
from .trainer import TrainConfig, train

__all__ = ["CachedClips", "build_cache", "refresh_latents", "TrainConfig", "train"]
