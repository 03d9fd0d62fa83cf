"""⑧ Layers' stems -> one stereo soundtrack: gain, pan, and a master gain that keeps the sum under full scale.

    stems (K, N) mono ─► gain (dB) ─► constant-power pan (-1 left … 1 right, per sample) ─► (K, N, 2)
    ─► master gain, one for the whole mix, if the sum would go over full scale ─► panned stems; mix = their sum

The mix is exactly the sum of the panned stems (a master gain scales each of them, not the sum), so a stem
written beside the mix is the part of it that its layer makes.
"""

from __future__ import annotations

import numpy as np

HEADROOM = 0.99  # the loudest sample of a mix that would go over full scale is brought to this


def pan_gains(pan: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Constant-power pan law: -1 -> (1, 0), 0 -> (0.707, 0.707) (-3 dB each side), 1 -> (0, 1)."""
    angle = (np.clip(np.asarray(pan, dtype=np.float64), -1, 1) + 1) * np.pi / 4
    return np.cos(angle), np.sin(angle)


def pan_per_sample(pan: np.ndarray | float, samples: int, sample_rate: int, fps: float) -> np.ndarray:
    """A fixed pan, or one per video frame at `fps`, -> (samples,), frames linearly interpolated."""
    pan = np.asarray(pan, dtype=np.float64)
    if pan.ndim == 0:
        return np.full(samples, float(pan))
    times = (np.arange(samples) + 0.5) / sample_rate
    return np.interp(times, (np.arange(len(pan)) + 0.5) / fps, pan)


def place(stem: np.ndarray, gain_db: float, pan: np.ndarray) -> np.ndarray:
    """(N,) mono stem, its gain, (N,) pan -> (N, 2) stereo."""
    left, right = pan_gains(pan)
    scaled = np.asarray(stem, dtype=np.float64) * 10 ** (gain_db / 20)
    return np.stack([scaled * left, scaled * right], 1)


def mix(placed: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray], float]:
    """(N, 2) placed stems -> (the mix, the stems as they are in it, the master gain in dB, 0 or below): float32,
    the mix exactly their sum."""
    total = np.sum(placed, axis=0)
    peak = float(np.max(np.abs(total))) if total.size else 0.0
    master = HEADROOM / peak if peak > 1.0 else 1.0
    stems = [(p * master).astype(np.float32) for p in placed]
    # summed in float64 and rounded once: the mix is the stems' sum to float32 precision
    summed = np.sum([s.astype(np.float64) for s in stems], axis=0).astype(np.float32)
    return summed, stems, 20 * np.log10(master)
