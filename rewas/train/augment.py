"""Training augmentations.

Envelopes (the adapter): each training clip is heard under a random smooth gain envelope, and its log-mel, energy
and latent are recomputed from the reshaped waveform, so a class is seen under many curves and the adapter learns
to follow the curve instead of the class's typical envelope (a clip's own energy is all it sees otherwise).

    wave (B, N) ──× 10^(g(t)/20)──► normalise ──► log-mel (B, n_mels, F) ──► energy (B, F), latent (B, z, T, F')

Kinds of envelope, one per clip, drawn uniformly; the span (dB between the envelope's lowest and highest gain) is
drawn from [6, 2 * max_db]:
* swell: a raised-cosine bump (0.5-3 s) up from a floor;
* fade: a linear ramp in dB (at least 0.2 s), in or out, between two random instants;
* gate: a square wave (period 0.3-2 s, duty 20-80%) with 20 ms edges;
* tremolo: a sine, 0.5-6 Hz;
* spline: random levels every 0.25-1 s, joined by a smooth (cosine) interpolation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .cache import sound_arrays

KINDS = ("swell", "fade", "gate", "tremolo", "spline")


def _u(generator: torch.Generator | None, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=generator))


def random_envelope(
    frames: int, frame_rate: float, generator: torch.Generator | None = None, max_db: float = 12.0, kind: str = ""
) -> torch.Tensor:
    """One gain envelope in dB, (frames,), centred on 0 dB (from -span/2 to +span/2); `kind` one of KINDS or
    random."""
    kind = kind or KINDS[int(torch.randint(len(KINDS), (), generator=generator))]
    span = _u(generator, 6.0, 2.0 * max_db)
    t = torch.arange(frames, dtype=torch.float64) / frame_rate
    duration = frames / frame_rate
    if kind == "swell":
        centre, width = _u(generator, 0.0, duration), _u(generator, 0.5, 3.0)
        x = ((t - centre) / (width / 2)).clamp(-1, 1)
        shape = 0.5 + 0.5 * torch.cos(math.pi * x)  # 1 at the centre, 0 beyond half the width
    elif kind == "fade":
        a, b = sorted((_u(generator, 0.0, duration), _u(generator, 0.0, duration)))
        shape = ((t - a) / max(b - a, 0.2)).clamp(0, 1)
        if torch.rand((), generator=generator) < 0.5:
            shape = 1 - shape
    elif kind == "gate":
        period, duty, phase = _u(generator, 0.3, 2.0), _u(generator, 0.2, 0.8), _u(generator, 0.0, 1.0)
        shape = (((t / period + phase) % 1.0) < duty).double()
        edge = max(1, round(0.02 * frame_rate))  # 20 ms ramps: no clicks, still a gate
        shape = F.avg_pool1d(shape[None, None], 2 * edge + 1, 1, edge, count_include_pad=False)[0, 0]
    elif kind == "tremolo":
        rate, phase = _u(generator, 0.5, 6.0), _u(generator, 0.0, 2 * math.pi)
        shape = 0.5 + 0.5 * torch.sin(2 * math.pi * rate * t + phase)
    elif kind == "spline":
        step = _u(generator, 0.25, 1.0)
        knots = torch.rand(int(duration / step) + 2, generator=generator, dtype=torch.float64)
        pos = t / step
        i = pos.floor().long().clamp(max=len(knots) - 2)
        w = 0.5 - 0.5 * torch.cos(math.pi * (pos - i))  # cosine interpolation: smooth at every knot
        shape = knots[i] * (1 - w) + knots[i + 1] * w
        shape = (shape - shape.min()) / (shape.max() - shape.min()).clamp(min=1e-6)
    else:
        raise ValueError(f"unknown envelope kind {kind!r}; one of {KINDS}")
    return (span * (shape - 0.5)).float()


def reshape_envelopes(
    pipe, batch: dict, probability: float, generator: torch.Generator | None = None, max_db: float = 12.0
) -> dict:
    """A copy of `batch` in which each clip, with `probability`, is heard under a random envelope
    (`apply_envelopes`); other clips are left as cached."""
    chosen = (torch.rand(batch["wave"].shape[0], generator=generator) < probability).nonzero()[:, 0]
    if len(chosen) == 0:
        return batch
    frames, rate = batch["energy"].shape[-1], pipe.config.audio.frame_rate
    gains = torch.stack([random_envelope(frames, rate, generator, max_db) for _ in chosen])  # (b', F) dB
    return apply_envelopes(pipe, batch, chosen, gains)


@torch.no_grad()
def apply_envelopes(pipe, batch: dict, chosen: torch.Tensor, gains_db: torch.Tensor) -> dict:
    """Clips `chosen` (b',) of `batch` under the gain envelopes `gains_db` (b', F) at the mel frame rate: their
    "wave", "mel", "energy" and "latents" recomputed from the reshaped waveform as the cache computes them
    (`cache.sound_arrays`). A copy; `batch` is untouched."""
    wave = batch["wave"]
    gains = F.interpolate(gains_db.double()[:, None], size=wave.shape[-1], mode="linear", align_corners=False)[:, 0]
    sound = sound_arrays(pipe, wave[chosen.to(wave.device)].double() * 10 ** (gains.to(wave.device) / 20))
    out = dict(batch)
    for key, value in sound.items():
        if key in batch:
            out[key] = batch[key].clone()
            out[key][chosen.to(batch[key].device)] = value.to(batch[key].device, batch[key].dtype)
    return out
