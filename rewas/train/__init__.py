"""Training: caches of frozen-encoder outputs (`cache`), accelerate trainers for every trainable part (`trainer`),
the demo corpus (`corpus`) and the sound-class classifier used to evaluate it (`classifier`)."""

from .cache import CachedClips, build_cache, refresh_latents
from .trainer import TrainConfig, train

__all__ = ["CachedClips", "build_cache", "refresh_latents", "TrainConfig", "train"]
