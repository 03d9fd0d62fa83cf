"""Training: caches of frozen-encoder outputs (`cache`), accelerate trainers for every trainable part (`trainer`),
and the demo corpus (`corpus`). The sound-class classifier that `rewas train classifier` trains is defined with the
evaluation that uses it (`rewas.evaluate.embedders.ClassifierBundle`): training imports evaluation, never the
reverse."""

import importlib

# imported on first use: `rewas.train.recipe` (the command line's help) must not import torch
_WHERE = {
    "CachedClips": "cache",
    "build_cache": "cache",
    "refresh_latents": "cache",
    "TrainConfig": "recipe",
    "train": "trainer",
}

__all__ = list(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
