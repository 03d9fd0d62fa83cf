"""Synthetic sample media with known content: videos whose motion or flashes happen at chosen times, click tracks.

Used by the demo and the tests (which make their own media), and handy for checking sync by eye or by ear.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from fractions import Fraction

import av
import numpy as np


def _rate(fps: float) -> Fraction:
    for num, den in ((24000, 1001), (30000, 1001), (60000, 1001)):
        if abs(fps - num / den) < 1e-3:
            return Fraction(num, den)
    return Fraction(fps).limit_denominator(1000)


def write_video(
    path: str | os.PathLike,
    frame_fn: Callable[[float], np.ndarray],
    duration: float,
    fps: float = 25.0,
    *,
    codec: str = "libx264",
    times: Sequence[float] | None = None,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    audio_start: float = 0.0,
    rotation: int | None = None,
) -> None:
    """Encode frames frame_fn(t) -> (H, W, 3) uint8 at times k/fps (or explicit `times`, for variable frame rate).

    audio: (N,) mono or (C, N) float samples, C = 1 or 2, encoded as AAC starting `audio_start` seconds after the
    first frame.
    """
    rate = _rate(fps)
    variable = times is not None
    times = list(times) if times is not None else [k / float(rate) for k in range(round(duration * float(rate)))]
    first = frame_fn(0.0)
    with av.open(os.fspath(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = first.shape[1], first.shape[0]
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, 90000) if variable else 1 / rate
        if variable:
            stream.codec_context.time_base = Fraction(1, 90000)
            stream.options = {"bf": "0"}
        if rotation:
            stream.set_display_rotation(rotation)
        if audio is not None:
            audio = np.asarray(audio, dtype=np.float32)
            audio = audio.reshape(1, -1) if audio.ndim == 1 else audio
            layout = {1: "mono", 2: "stereo"}[audio.shape[0]]
            astream = container.add_stream("aac", rate=sample_rate, layout=layout)
        for t in times:
            frame = av.VideoFrame.from_ndarray(frame_fn(t), format="rgb24")
            frame.pts = round(t / stream.time_base)
            frame.time_base = stream.time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if audio is not None:
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(audio.T).reshape(1, -1), format="flt", layout=layout
            )
            frame.sample_rate = sample_rate
            frame.pts = round(audio_start * sample_rate)
            for packet in astream.encode(frame):
                container.mux(packet)
            container.mux(astream.encode(None))


def flash_frames(
    flash_times: Sequence[float], size: tuple[int, int] = (128, 160), flash: float = 0.04
) -> Callable[[float], np.ndarray]:
    """Black frames that turn white for `flash` seconds at each of `flash_times`."""
    h, w = size

    def frame(t: float) -> np.ndarray:
        on = any(0 <= t - f < flash for f in flash_times)
        return np.full((h, w, 3), 255 if on else 0, dtype=np.uint8)

    return frame


def bouncing_ball_frames(
    bounce_period: float = 0.8, size: tuple[int, int] = (240, 320)
) -> Callable[[float], np.ndarray]:
    """A ball dropping onto the floor every `bounce_period` seconds (impact at t = k * period)."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]

    def frame(t: float) -> np.ndarray:
        phase = (t % bounce_period) / bounce_period  # 0 at impact
        height = 4 * phase * (1 - phase)  # parabola, 0 at impacts
        cy = (h - 30) - height * (h - 80)
        cx = 40 + (w - 80) * ((t / (4 * bounce_period)) % 1.0)
        image = np.zeros((h, w, 3), dtype=np.uint8)
        image[h - 18 :] = (90, 70, 50)  # floor
        ball = (yy - cy) ** 2 + (xx - cx) ** 2 < 14**2
        image[ball] = (230, 60, 40)
        return image

    return frame


def landing_height(t: float, impacts: Sequence[float], lead: float = 0.5) -> float:
    """0 on the floor, 1 at the top: an object that falls for `lead` s onto the first impact, bounces from one impact
    to the next (a parabola), and rests after the last."""
    past = [e for e in impacts if e <= t]
    future = [e for e in impacts if e > t]
    if not future:
        return 0.0
    t1 = future[0]
    t0 = past[-1] if past else t1 - lead
    phase = min(1.0, max(0.0, (t - t0) / max(1e-3, t1 - t0)))
    return 4 * phase * (1 - phase) if past else 1 - phase


def two_objects_frames(
    left_impacts: Sequence[float],
    right_impacts: Sequence[float],
    size: tuple[int, int] = (160, 320),
    drift: float = 0.06,
    radius: int | None = None,
) -> Callable[[float], np.ndarray]:
    """Two balls, one in each half of the picture, each landing on the floor at its own impact times and drifting
    sideways by `drift` of the width (period 6 s): per-object sound, tracked. The balls' radius in pixels is
    `radius`, or 1/12 of the height."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    radius = max(4, h // 12) if radius is None else radius
    colours = ((230, 70, 60), (60, 190, 230))

    def frame(t: float) -> np.ndarray:
        image = np.full((h, w, 3), 25, dtype=np.uint8)
        image[h - h // 10 :] = (110, 90, 70)  # the floor
        floor = h - h // 10 - radius
        for k, (impacts, colour) in enumerate(zip((left_impacts, right_impacts), colours)):
            cx = w * (0.25 + 0.5 * k) + drift * w * np.sin(2 * np.pi * t / 6.0 + k)
            cy = floor - landing_height(t, impacts) * 0.55 * h
            image[(yy - cy) ** 2 + (xx - cx) ** 2 < radius**2] = colour
        return image

    return frame


BUS_PARTS = {  # parts of `bus_frames`' bus, (left, top, right, bottom) pixels at 640 x 320 with the bus at x = 0
    "window": (20, 110, 65, 160),  # the first of its 5 windows, alike and 55 px apart, with some paint around it
    "door": (225, 155, 270, 230),  # half the door and the paint beside it
    "logo": (20, 170, 110, 200),  # the red stripe along its side
    "side": (80, 160, 180, 225),  # paint and the stripe's end
    "paint": (120, 200, 180, 225),  # plain paint and nothing else
}


BUS_WIDTH, BUS_HEIGHT = 640, 320  # `bus_frames`' picture

# boxes on `bus_frames`' sky and grass, fractions of the picture, that the bus never crosses
BUS_SCENERY = [
    (400 / BUS_WIDTH, 10 / BUS_HEIGHT, 500 / BUS_WIDTH, 80 / BUS_HEIGHT),
    (400 / BUS_WIDTH, 260 / BUS_HEIGHT, 560 / BUS_WIDTH, 310 / BUS_HEIGHT),
]


BLOTCH_TINT = (170, 160, 140)  # `blotches`' grey


def blotches(rng: np.random.Generator, height: int = 160, width: int = 320) -> np.ndarray:
    """(height, width, 3) float: random colours in 8 px squares drawn from `rng`, 0.6 of them over 0.4 of a grey: a
    textured picture, whose blotches a tracker's look of an object holds in its margin (tests/test_layers.py,
    scripts/measure_tracking.py --blotches)."""
    squares = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3))
    return 0.6 * np.kron(squares, np.ones((8, 8, 1)))[:height, :width] + 0.4 * np.array(BLOTCH_TINT)


def bus_frames(speed: float = 45.0, start: float = 20.0) -> Callable[[float], np.ndarray]:
    """A bus, half the picture wide, driving left to right across a plain sky and grass at `speed` px/s from x =
    `start` (640 x 320): a large object whose parts (`BUS_PARTS`) a region's box may be drawn on."""
    h, w = BUS_HEIGHT, BUS_WIDTH
    yy, xx = np.mgrid[0:h, 0:w]

    def frame(t: float) -> np.ndarray:
        image = np.full((h, w, 3), (150, 180, 210), np.uint8)
        image[240:] = (90, 110, 70)
        x0, y0 = int(round(start + speed * t)), 100

        def paint(left: int, top: int, right: int, bottom: int, colour: tuple[int, int, int]) -> None:
            a, b = max(0, x0 + left), min(w, x0 + right)
            if b > a:
                image[y0 + top : y0 + bottom, a:b] = colour

        paint(0, 0, 300, 130, (200, 160, 40))
        for k in range(5):
            paint(20 + 55 * k, 15, 60 + 55 * k, 55, (60, 80, 110))
        paint(250, 60, 285, 125, (120, 60, 30))
        paint(30, 80, 120, 95, (180, 40, 40))
        for cx in (60, 240):
            image[(xx - x0 - cx) ** 2 + (yy - y0 - 135) ** 2 < 20**2] = (30, 30, 30)
        return image

    return frame


def bus_part(part: str, t: float, speed: float = 45.0, start: float = 20.0) -> np.ndarray:
    """(left, top, right, bottom) pixels of one of `BUS_PARTS` at `t` s in `bus_frames(speed, start)`."""
    left, top, right, bottom = BUS_PARTS[part]
    x = start + speed * t
    return np.array([left + x, top, right + x, bottom], dtype=np.float64)


def bus_part_path(
    part: str, times: np.ndarray, speed: float = 45.0, start: float = 20.0
) -> tuple[np.ndarray, np.ndarray]:
    """Where one of `BUS_PARTS` is at `times` (seconds) in `bus_frames(speed, start)`: its centres (T, 2) as fractions
    of the picture, and whether it is all in the picture (T,), where a tracker's error is measured."""
    truth = np.array([bus_part(part, t, speed, start) for t in times])
    whole = (truth[:, 0] >= 0) & (truth[:, 2] <= BUS_WIDTH)
    centres = np.stack([truth[:, 0] + truth[:, 2], truth[:, 1] + truth[:, 3]], 1) / 2 / [BUS_WIDTH, BUS_HEIGHT]
    return centres, whole


def impact_curve(impacts: Sequence[float], frames: int, frame_rate: float = 100.0, decay: float = 0.08) -> np.ndarray:
    """(frames,) the loudness an impact sound would have at each frame: 1 at each impact, decaying over `decay` s."""
    t = np.arange(frames) / frame_rate
    out = np.zeros(frames)
    for e in impacts:
        after = t >= e
        out[after] = np.maximum(out[after], np.exp(-(t[after] - e) / decay))
    return out


def click_track(
    duration: float, click_times: Sequence[float], sample_rate: int = 16000, click: float = 0.004
) -> np.ndarray:
    """Silence with short full-scale square clicks starting exactly at `click_times`."""
    audio = np.zeros(round(duration * sample_rate), dtype=np.float32)
    n = max(1, round(click * sample_rate))
    for t in click_times:
        start = round(t * sample_rate)
        audio[start : start + n] = 0.9
    return audio


def knocks_and_swell(seconds: float, rng: np.random.Generator, sample_rate: int = 16000) -> np.ndarray:
    """A recording no clip of the demo corpus resembles, for measuring `--energy-from`: six irregular noise knocks
    (40 ms decay) and a swell of noise from 2.0 to 3.5 s, peak 0.8."""
    n = round(seconds * sample_rate)
    t, x = np.arange(n) / sample_rate, np.zeros(n)
    for onset in np.sort(rng.uniform(0.2, seconds - 0.4, 6)):
        k = np.arange(int(0.25 * sample_rate))
        start = int(onset * sample_rate)
        x[start : start + len(k)] += rng.standard_normal(len(k)) * np.exp(-k / sample_rate / 0.04)
    swell = np.clip(np.sin(np.pi * (t - 2.0) / 1.5), 0, None) * ((t > 2.0) & (t < 3.5))
    x += 0.3 * rng.standard_normal(n) * swell
    return (0.8 * x / np.abs(x).max()).astype(np.float32)
