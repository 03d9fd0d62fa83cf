"""⑥ → ⑦ Soundtracks of any length: one latent timeline, sampled and decoded through model-sized windows.

The denoiser, φ and the VAE all work on windows of W latent frames (5.12 s; the paper's attention is trained on
exactly that). A longer soundtrack is still one latent (1, C, L, F), L >= W, sampled as a whole:

* **Sampling** (`sample_timeline`). At every sampler step the timeline is cut into tiles; each tile is predicted
  by a window that reaches `context` frames past it on both sides, and fills only its tile. The cut moves from
  step to step (a low-discrepancy offset, no randomness), so no seam stays in place and every frame is predicted
  from the inside of some window at most steps (SpotDiffusion, Frolov et al. 2024, with context margins). Each
  frame gets one prediction per step: no averaging, so nothing is blurred. Tiles of one step are independent
  and go through the denoiser in batches. docs/long_videos.md has the methods tried and their numbers.
* **Everything else** (the energy curve, the hint latent, decoding to mel, vocoding) runs on fixed overlapping
  windows joined by `windows.blend`.

A timeline of exactly one window takes the single-window path bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .diffusion import DDIM, DPMSolverPP, randn

GOLDEN = (math.sqrt(5) - 1) / 2  # the offsets frac(i * GOLDEN) spread evenly for any number of steps
WindowDenoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (x, t, hint) -> model output


@dataclass(frozen=True)
class Tile:
    window: int  # first timeline frame of the window the model sees
    keep: tuple[int, int]  # [a, b): the timeline frames this window's prediction fills


def tiles(length: int, window: int, context: int, step: int) -> list[Tile]:
    """The tiling of a timeline at sampler step `step`: tiles of window - 2 * context frames, their cut shifted by
    frac(step * GOLDEN) of a tile; each tile's window reaches `context` frames past it where the timeline allows.
    Tiles that fall in the same window are merged, so a timeline of one window is one tile at every step."""
    if length < window:
        raise ValueError(f"a timeline of {length} frames is shorter than one window ({window})")
    size = window - 2 * context
    if size < 1:
        raise ValueError(f"context {context} leaves no frames of a {window}-frame window to keep")
    offset = int((step * GOLDEN) % 1.0 * size)
    cuts = [0, *range(offset or size, length, size), length]
    out: list[Tile] = []
    for a, b in zip(cuts, cuts[1:]):
        start = min(max(a - context, 0), length - window)
        if out and out[-1].window == start:
            out[-1] = Tile(start, (out[-1].keep[0], b))
        else:
            out.append(Tile(start, (a, b)))
    return out


@torch.no_grad()
def sample_timeline(
    denoise: WindowDenoiser,
    sampler: DDIM | DPMSolverPP,
    shape: tuple[int, int, int, int],
    hint: torch.Tensor,
    window: int,
    *,
    steps: int,
    context: int,
    batch_size: int = 1,
    generator: torch.Generator | None = None,
    eta: float = 1.0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    callback: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """The reverse process over a whole latent timeline of `shape` (1, C, L, F); hint (1, z, L, F) is the control
    latent of the same timeline, and denoise(x (B, C, W, F), t, hint (B, z, W, F)) the model on B windows. Returns
    x_0 (1, C, L, F) in float32. (`sample_timelines` with one timeline.)"""
    return sample_timelines(
        denoise, [sampler], [shape], [hint], window, steps=steps, context=context, batch_size=batch_size,
        generators=[generator], eta=eta, device=device, dtype=dtype, callback=callback,
    )[0]  # fmt: skip


@torch.no_grad()
def sample_timelines(
    denoise: WindowDenoiser,
    samplers: list[DDIM | DPMSolverPP],
    shapes: list[tuple[int, int, int, int]],
    hints: list[torch.Tensor],
    window: int,
    *,
    steps: int,
    context: int,
    batch_size: int = 1,
    generators: list[torch.Generator | None],
    texts: list[torch.Tensor] | None = None,
    negatives: list[torch.Tensor] | None = None,
    eta: float = 1.0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    callback: Callable[[int, int], None] | None = None,
) -> list[torch.Tensor]:
    """Several timelines sampled side by side, one sampler (its state), generator and hint each: at every step the
    tiles of all of them go through `denoise` in batches of `batch_size` windows; texts[k] (1, D), if given, is
    passed per window as `rows`, and negatives[k] (1, D) as `negative_rows`. Returns each timeline's x_0
    (1, C, L_k, F) in float32.

    The noise (initial and per step) is drawn for each whole timeline from its own generator, and a window's
    prediction does not depend on the others in its batch, so a timeline's result is the same whatever the batch
    size and whatever else is sampled with it, up to the float rounding of the kernels each batch shape gets."""
    for sampler in samplers:
        sampler.set_timesteps(steps, device=device)
    xs = [randn(shape, g, device) * s.init_noise_sigma for shape, g, s in zip(shapes, generators, samplers)]
    hints = [hint.to(device, dtype) for hint in hints]
    timesteps = samplers[0].timesteps
    for i, t in enumerate(timesteps):
        plan = [(k, tile) for k, x in enumerate(xs) for tile in tiles(x.shape[2], window, context, i)]
        outs = [torch.empty_like(x) for x in xs]
        for b in range(0, len(plan), batch_size):
            batch = plan[b : b + batch_size]
            x_in = torch.cat([xs[k][:, :, p.window : p.window + window] for k, p in batch]).to(dtype)
            h_in = torch.cat([hints[k][:, :, p.window : p.window + window] for k, p in batch])
            rows = {} if texts is None else {"rows": torch.cat([texts[k] for k, _ in batch])}
            if negatives is not None:
                rows["negative_rows"] = torch.cat([negatives[k] for k, _ in batch])
            pred = denoise(x_in, t, h_in, **rows).float()
            for (k, p), y in zip(batch, pred):
                a, z = p.keep
                outs[k][0, :, a:z] = y[:, a - p.window : z - p.window]
        xs = [s.step(out, t, x, eta=eta, generator=g) for s, out, x, g in zip(samplers, outs, xs, generators)]
        if callback is not None:
            callback(i + 1, len(timesteps))
    return xs
