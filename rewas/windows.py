"""Fixed windows over a timeline: where they go, and how their outputs are joined back into one.

Every stage that works on model-sized windows (φ over video frames, the hint encoder, the VAE decoder, the
vocoder) covers a long timeline with `window_starts` and joins the pieces with `blend`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch


def window_starts(length: int, window: int, min_overlap: int) -> list[int]:
    """Evenly spaced starts of windows of `window` frames covering [0, length), neighbours sharing >= min_overlap
    frames (one window at 0 when length <= window)."""
    if length <= window:
        return [0]
    if not 0 <= min_overlap < window:
        raise ValueError(f"overlap {min_overlap} must be in [0, {window})")
    count = math.ceil((length - window) / (window - min_overlap)) + 1
    return [round(i * (length - window) / (count - 1)) for i in range(count)]


def fade_weights(length: int, fade_in: int, fade_out: int, dtype=torch.float64) -> torch.Tensor:
    """(length,) ones with linear ramps over the first `fade_in` and the last `fade_out` frames (never exactly 0)."""
    w = torch.ones(length, dtype=dtype)
    if fade_in:
        w[:fade_in] = torch.linspace(0, 1, fade_in + 2, dtype=dtype)[1:-1]
    if fade_out:
        w[length - fade_out :] *= torch.linspace(1, 0, fade_out + 2, dtype=dtype)[1:-1]
    return w


def blend(pieces: Iterable[torch.Tensor], starts: Sequence[int], length: int, dim: int = -1) -> torch.Tensor:
    """Join pieces placed at `starts` (ascending) along `dim` into `length` frames: linear crossfades over each
    overlap, normalised so the weights sum to one everywhere. Parts of a piece past `length` are dropped; frames no
    piece covers are zero. One piece starting at 0 comes back unchanged (cut to `length`).

    `pieces` may be a generator: each piece is added as it comes, so only the joined result is held."""
    pieces = iter(pieces)
    if len(starts) == 1 and starts[0] == 0:
        piece = next(pieces)
        return piece.narrow(dim, 0, min(length, piece.shape[dim]))
    total = weight_sum = None
    previous_end = 0
    for i, (piece, start) in enumerate(zip(pieces, starts)):
        dim = dim % piece.dim()
        if total is None:
            shape = list(piece.shape)
            shape[dim] = length
            total = torch.zeros(shape, dtype=torch.float32, device=piece.device)
            weight_sum = torch.zeros(length, dtype=torch.float32, device=piece.device)
        n = piece.shape[dim]
        fade_in = min(n, max(0, previous_end - start)) if i > 0 else 0
        fade_out = min(n, max(0, start + n - starts[i + 1])) if i + 1 < len(starts) else 0
        w = fade_weights(n, fade_in, fade_out).to(piece.device, torch.float32)
        keep = max(0, min(n, length - start))
        view = [1] * piece.dim()
        view[dim] = keep
        total.narrow(dim, start, keep).add_(piece.narrow(dim, 0, keep).float() * w[:keep].view(view))
        weight_sum[start : start + keep] += w[:keep]
        previous_end = start + n
    view = [1] * total.dim()
    view[dim] = length
    return total.div_(weight_sum.clamp(min=1e-12).view(view))
