"""Does a soundtrack have audible defects? A detector that looks at the sound itself, for steady material.

* **Dropouts**: 10 ms frames whose level is `dropout_db` (15 dB) under the median level of the second around them:
  a steady sound that briefly vanishes (a limiter ducking, a phase cancellation, a silent hole).
* **Clicks**: 10 ms frames whose energy above `click_hz` (6 kHz) is `click_db` (15 dB) over its median in the
  second around them: a burst of broadband or high-frequency energy that the material around it does not have.
* **Overs**: samples with |x| > 1, counted on the waveform *before* the peak limiter (`vocoder.vocode(...,
  limit=False)`): how often the limiter has to act at all.

A frame is not judged a dropout where the median of its second is under `floor_db` (dBFS): silence has no
dropouts; nor a click where its energy above `click_hz` is under `floor_db`: a click 60 dB under full scale is
not heard. Neither are the first and last `edge_s` (0.1 s): a sound may
start or end there (the demo corpus's steady recordings fade in and out over their first and last 0.2 s). The
medians are centred and taken over `span_s` (1 s), so a sound that fades in or out slowly is not a defect, and
a defect shorter than half a second cannot hide itself. Meant for steady prompts (engines, rain, wind, ...): on
sparse impacts every gap between hits is a "dropout", and a fire's crackle is a run of "clicks" (the corpus's
real fire recordings have about 9 per second).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Defects:
    """Per-frame findings of `detect`: the start times (s) of the flagged 10 ms frames, and the overs."""

    dropouts: list[float] = field(default_factory=list)
    clicks: list[float] = field(default_factory=list)
    overs: int = 0  # samples over full scale (before the limiter), when that waveform was given
    frames: int = 0  # frames judged (all but the edges)

    @property
    def clean(self) -> bool:
        return not self.dropouts and not self.clicks and not self.overs

    def summary(self) -> dict:
        return {"dropouts": len(self.dropouts), "clicks": len(self.clicks), "overs": self.overs, "frames": self.frames}


def running_median(x: np.ndarray, width: int, chunk: int = 8192) -> np.ndarray:
    """(N,) -> (N,) median over a centred window of `width` (odd) values, edges padded by reflection; computed a
    chunk at a time so an hour of 10 ms frames stays in bounded memory."""
    half = width // 2
    padded = np.pad(x, half, mode="reflect") if len(x) > half else np.pad(x, half, mode="edge")
    out = np.empty(len(x), dtype=np.float64)
    for start in range(0, len(x), chunk):
        stop = min(len(x), start + chunk)
        view = np.lib.stride_tricks.sliding_window_view(padded[start : stop + 2 * half], width)
        out[start:stop] = np.median(view, axis=1)
    return out


def frame_levels(
    wav: np.ndarray, sample_rate: int, frame_s: float = 0.01, above_hz: float = 0.0, chunk: int = 8192
) -> np.ndarray:
    """(N,) waveform -> (N // frame,) level in dBFS of each frame (a sine at full scale: -3 dB), of the whole band
    or, with `above_hz`, of the energy above that frequency (a Hann-windowed FFT two frames long per frame),
    `chunk` frames at a time so an hour of audio stays in bounded memory."""
    hop = round(frame_s * sample_rate)
    wav = np.asarray(wav, dtype=np.float64).reshape(-1)
    n = len(wav) // hop
    if n == 0:
        return np.zeros(0)
    if not above_hz:
        power = np.mean(wav[: n * hop].reshape(n, hop) ** 2, axis=1)
    else:
        size = 2 * hop
        padded = np.pad(wav[: n * hop], (hop // 2, hop + hop // 2))
        frames = np.lib.stride_tricks.sliding_window_view(padded, size)[::hop][:n]
        window = np.hanning(size)
        bins = np.fft.rfftfreq(size, 1 / sample_rate) >= above_hz
        power = np.empty(n)
        for start in range(0, n, chunk):
            spectrum = np.abs(np.fft.rfft(frames[start : start + chunk] * window, axis=1)[:, bins]) ** 2
            # Parseval with the window's power: a full-band white noise of power p gives p * (share of the band)
            power[start : start + chunk] = spectrum.sum(axis=1) * 2 / (size * np.sum(window**2))
    return 10 * np.log10(power + 1e-20)


def detect(
    wav: np.ndarray,
    sample_rate: int = 16000,
    unlimited: np.ndarray | None = None,
    dropout_db: float = 15.0,
    click_db: float = 15.0,
    click_hz: float = 6000.0,
    span_s: float = 1.0,
    floor_db: float = -60.0,
    frame_s: float = 0.01,
    edge_s: float = 0.1,
) -> Defects:
    """(N,) waveform as heard -> its `Defects`; `unlimited`, the same waveform before the peak limiter, adds the
    count of samples over full scale."""
    width = 2 * (round(span_s / frame_s) // 2) + 1
    level = frame_levels(wav, sample_rate, frame_s)
    high = frame_levels(wav, sample_rate, frame_s, above_hz=click_hz)
    out = Defects(frames=len(level))
    if unlimited is not None:
        out.overs = int(np.sum(np.abs(np.asarray(unlimited)) > 1.0))
    if not len(level):
        return out
    judged = np.zeros(len(level), dtype=bool)
    edge = round(edge_s / frame_s)
    judged[edge : len(level) - edge] = True
    typical = running_median(level, width)
    dropped = judged & (typical > floor_db) & (level < typical - dropout_db)
    typical_high = running_median(high, width)
    clicked = judged & (high > floor_db) & (high > typical_high + click_db)
    hop = round(frame_s * sample_rate)
    out.dropouts = [round(float(i * hop / sample_rate), 4) for i in np.flatnonzero(dropped)]
    out.clicks = [round(float(i * hop / sample_rate), 4) for i in np.flatnonzero(clicked)]
    out.frames = int(judged.sum())
    return out
