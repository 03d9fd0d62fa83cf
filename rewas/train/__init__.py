"""Training: caches of frozen-encoder outputs (`cache`) and accelerate trainers for phi and the adapter (`trainer`)."""

from .cache import CachedClips, build_cache
from .trainer import TrainConfig, train

__all__ = ["CachedClips", "build_cache", "TrainConfig", "train"]
