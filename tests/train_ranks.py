"""Train the debug model's phi on `n` distinct clips of a cache, under `accelerate launch` or alone; the test that
runs it compares the weights two ranks end with against one rank on their combined batches.

    python tests/train_ranks.py CACHE OUT BATCH_SIZE
"""

from __future__ import annotations

import sys

import torch

from rewas import ReWaSPipeline
from rewas.train import CachedClips, TrainConfig, train


class Clips(torch.utils.data.Dataset):
    """The cached clips, then the same clips reversed in time: `n` distinct items from a small cache."""

    FLIP = {"features": 0, "energy": 0, "latents": 1, "mel": 0, "wave": 0}  # each array's time axis

    def __init__(self, cached: CachedClips, n: int):
        self.cached, self.n, self.empty_text = cached, n, cached.empty_text

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        item = self.cached[i % len(self.cached)]
        if i < len(self.cached):
            return item
        return {k: v.flip(self.FLIP[k]) if k in self.FLIP else v for k, v in item.items()}


if __name__ == "__main__":
    cache, out, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    pipe = ReWaSPipeline.from_pretrained("debug")
    # two optimizer steps over the four clips: each step sees two clips, on one rank or one per rank
    cfg = TrainConfig(steps=2, batch_size=batch, lr=1e-3, warmup=1, log_every=1, text_dropout=0.0)
    train(pipe, Clips(CachedClips(cache), 4), "phi", out, cfg, log=lambda d: None)
