"""Does a long soundtrack hold together? Two measures for generations longer than one window.

* `overlap_agreement`: pieces decoded separately (e.g. the VAE's decoding windows, before they are joined) and
  placed at `starts`: the Pearson r of each neighbouring pair over the frames they share. Two unrelated sounds give
  about 0, one continuous sound about 1.
* `novelty_peak_over_median`: the distance between the mean log-mel profiles of the `span_s` before and after each
  instant; its peak over its median. A seam, or a texture that changes at the window stride, raises the peak; for a
  stationary sound it stays near 1-2.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def overlap_agreement(pieces: Sequence[np.ndarray], starts: Sequence[int]) -> list[float]:
    """pieces (frames, ...) at ascending `starts` -> r over each neighbouring pair's shared frames."""
    out = []
    for i in range(len(pieces) - 1):
        shared = starts[i] + len(pieces[i]) - starts[i + 1]
        if shared <= 0:
            raise ValueError(f"pieces {i} and {i + 1} do not overlap")
        a, b = pieces[i][len(pieces[i]) - shared :], pieces[i + 1][:shared]
        out.append(float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1]))
    return out


def novelty_peak_over_median(mel: np.ndarray, frame_rate: float, span_s: float = 2.0) -> float:
    """mel (frames, n_mels) -> peak / median of |mean profile after t - mean profile before t|, t every frame
    (NaN when the clip is shorter than two spans)."""
    n = round(span_s * frame_rate)
    if mel.shape[0] < 2 * n + 1:
        return float("nan")
    csum = np.concatenate([np.zeros((1, mel.shape[1])), np.cumsum(mel, axis=0)])
    t = np.arange(n, mel.shape[0] - n)
    before = (csum[t] - csum[t - n]) / n
    after = (csum[t + n] - csum[t]) / n
    novelty = np.linalg.norm(after - before, axis=1)
    return float(novelty.max() / np.median(novelty))
