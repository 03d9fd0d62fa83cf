"""③½ Curve edits: what a person does to an energy curve before it steers generation. One implementation for the
command line (`--mute 1-2.5 --gain 3-4:+6dB --energy-scale 0.8 --smooth 0.2`), Python (`apply`) and the studio page.

The curve is in nats (the mean log-mel of `rewas.energy`), one value per 10 ms mel frame. A level change of g dB
adds g·ln(10)/20 nats, since every mel magnitude is multiplied by the same factor. Silence is the log-mel floor,
ln(1e-5) ≈ -11.5 nats: what an all-zero recording gives.

    mute   START-END              the range is silence
    gain   [START-END:]±G dB      louder or quieter by G dB
    scale  [START-END:]S          the level above silence times S (0: silence, 1: unchanged, 2: twice as far up)
    smooth [START-END:]W          a moving average W seconds wide (Hann weights)
    draw   (t, e), (t, e), ...    the curve between the first and last keyframe is the line through them

A range is in seconds from the first displayed frame; an end past the curve is its end; no range is the whole
curve. Edits apply in the order given, each to the result of the one before.

Where the edits bring the curve down to silence, the output is also gated to silence (`gate`): the model follows a
silent curve into silence for impacts and tones, but not always for continuous sounds (rain, engines: 5-6 dB
quieter on some seeds, docs/studio.md), and a person who mutes a range wants it silent.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .config import AudioConfig
from .errors import UserError

SILENCE = math.log(AudioConfig().log_clamp)  # nats: the curve of an all-zero recording
NATS_PER_DB = math.log(10) / 20
# op -> (command-line flag, the form of its value, what it does, an example): the flags, their help and the
# parse errors all come from here
FORMS = {
    "mute": ("--mute", "START-END", "silence", "1.0-2.5"),
    "gain": ("--gain", "[START-END:]±GdB", "louder/quieter", "3-4:+6dB"),
    "scale": ("--energy-scale", "[START-END:]FACTOR", "the level above silence times FACTOR", "0.8"),
    "smooth": ("--smooth", "[START-END:]SECONDS", "moving average", "0.2"),
    "draw": (
        "--draw",
        "TIME:NATS,TIME:NATS,...",
        "keyframes; the curve between the first and last is the line through them",
        "0:-6,1.5:-2,3:-6",
    ),
}
OPS = tuple(FORMS)
_NUMBER = r"[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|inf)"  # as `str(Edit)` writes them (%g, inf)


@dataclass(frozen=True)
class Edit:
    """One edit of a curve; `parse` reads the command-line spelling and `str` writes it back."""

    op: str
    start: float = 0.0  # seconds
    end: float = math.inf
    value: float = 0.0  # gain: dB; scale: factor; smooth: width in seconds
    points: tuple[tuple[float, float], ...] = field(default=())  # draw: (time_s, nats) keyframes

    def __post_init__(self):
        if self.op not in OPS:
            raise UserError(f"unknown curve edit {self.op!r} (one of {', '.join(OPS)})")
        if not (math.isfinite(self.start) and self.start >= 0 and self.end > self.start):
            raise UserError(f"{self.op}: the range must be START-END seconds with 0 <= START < END")
        if not math.isfinite(self.value):
            raise UserError(f"{self.op}: the value must be a finite number")
        if self.op == "scale" and self.value < 0:
            raise UserError(f"scale: the factor must be >= 0 (got {self.value:g})")
        if self.op == "smooth" and self.value <= 0:
            raise UserError(f"smooth: the width must be > 0 seconds (got {self.value:g})")
        if self.op == "draw":
            times = [t for t, _ in self.points]
            if len(self.points) < 2 or any(b <= a for a, b in zip(times, times[1:])) or times[0] < 0:
                raise UserError("draw: give at least two keyframes at increasing times >= 0")
            if not all(math.isfinite(t) and math.isfinite(e) for t, e in self.points):
                raise UserError("draw: keyframe times and values must be finite numbers")

    def __str__(self) -> str:
        if self.op == "draw":
            return "draw " + ",".join(f"{t:g}:{e:g}" for t, e in self.points)
        span = "" if (self.start, self.end) == (0.0, math.inf) else f"{self.start:g}-{self.end:g}"
        if self.op == "mute":
            return f"mute {span or 'all'}"
        value = f"{self.value:+g}dB" if self.op == "gain" else f"{self.value:g}"
        return f"{self.op} {span + ':' if span else ''}{value}"


def label(edit: Edit) -> str:
    """A short name for a list of edits on a page: a long drawn stroke as its span, the rest as spelled."""
    if edit.op == "draw" and len(edit.points) > 3:
        return f"draw {edit.points[0][0]:g}-{edit.points[-1][0]:g} s ({len(edit.points)} points)"
    return str(edit)


def parse(op: str, text: str) -> Edit:
    """The command-line spelling of one edit -> Edit; a malformed one is a one-line user error showing the form.

    mute "1-2.5"; gain "3-4:+6dB" or "-3dB"; scale "0.8" or "1-2:0.8"; smooth "0.2" or "1-2:0.2";
    draw "0:-6,1.5:-2,3:-6" (time:nats keyframes)."""
    text = text.strip()
    if op not in FORMS:
        raise UserError(f"unknown curve edit {op!r} (one of {', '.join(OPS)})")
    flag, form, _, example = FORMS[op]
    bad = UserError(f"{flag} {text!r}: expected {form}, e.g. {example}")
    if op == "draw":
        pairs = [p.split(":") for p in text.replace(" ", "").split(",") if p]
        try:
            points = tuple((float(t), float(e)) for t, e in pairs)
        except ValueError:
            raise bad from None
        return Edit("draw", points=points)
    span, value = (None, text) if op != "mute" else (text, None)
    if op != "mute" and ":" in text:
        span, value = text.split(":", 1)
    start, end = 0.0, math.inf
    if span is not None:
        m = re.fullmatch(rf"\s*({_NUMBER})\s*-\s*({_NUMBER})\s*", span)
        if not m:
            raise bad
        start, end = float(m[1]), float(m[2])
    number = 0.0
    if value is not None:
        m = re.fullmatch(rf"\s*({_NUMBER})\s*(db)?\s*", value, flags=re.IGNORECASE)
        if not m or (op == "gain") != bool(m[2]):
            raise bad
        number = float(m[1])
    return Edit(op, start, end, number)


def apply(
    curve: np.ndarray,
    edits: Sequence[Edit],
    frame_rate: float = AudioConfig().frame_rate,
    *,
    ceiling: float | None = None,
) -> np.ndarray:
    """(F,) curve in nats, one value per mel frame at `frame_rate` -> the edited curve (F,) float32. Values stay
    at or above silence (and at or below `ceiling`, when given)."""
    out = np.asarray(curve, dtype=np.float64).reshape(-1).copy()
    centres = (np.arange(len(out)) + 0.5) / frame_rate  # frame k covers [k, k + 1) / frame_rate
    for edit in edits:
        inside = (centres >= edit.start) & (centres < edit.end)
        if edit.op == "mute":
            out[inside] = SILENCE
        elif edit.op == "gain":
            out[inside] += edit.value * NATS_PER_DB
        elif edit.op == "scale":
            out[inside] = SILENCE + edit.value * (out[inside] - SILENCE)
        elif edit.op == "smooth":
            out[inside] = _moving_average(out, edit.value * frame_rate)[inside]
        else:  # draw
            times, values = np.array(edit.points).T
            inside = (centres >= times[0]) & (centres <= times[-1])
            out[inside] = np.interp(centres[inside], times, values)
        out = np.maximum(out, SILENCE)
        if ceiling is not None:
            out = np.minimum(out, ceiling)
    return out.astype(np.float32)


def silenced(before: np.ndarray, after: np.ndarray, muted: np.ndarray | None = None) -> np.ndarray:
    """Frames the edits made silent: at silence after them, and changed by them (or silenced before, `muted`).
    A curve that was at silence already, unedited, is left to the model."""
    quiet = np.asarray(after) <= SILENCE + 1e-3
    changed = np.abs(np.asarray(after, np.float64) - np.asarray(before, np.float64)) > 1e-3
    return quiet & (changed if muted is None else changed | muted)


def gate(muted: np.ndarray, samples: int, hop: int, ramp: int = 160) -> np.ndarray:
    """(F,) bool per mel frame -> (samples,) float32 gain: 0 in silenced frames, 1 elsewhere, with `ramp`-sample
    (10 ms) linear fades just outside each silenced range, so the cut does not click and the range is silent to
    its edges."""
    mask = np.repeat(np.asarray(muted, np.float64), hop)[:samples]
    mask = np.pad(mask, (0, max(0, samples - len(mask))), mode="edge" if len(mask) else "constant")
    half = ramp // 2
    mask = (np.convolve(mask, np.ones(2 * half + 1), "same") > 0).astype(np.float64)  # widened by half a ramp
    sound = np.pad(1.0 - mask, (ramp // 2, ramp - 1 - ramp // 2), mode="edge")
    return (np.convolve(sound, np.ones(ramp), "valid") / ramp).astype(np.float32)  # sums of 0/1: exact at 0 and 1


def _moving_average(x: np.ndarray, width: float) -> np.ndarray:
    """Hann-weighted moving average `width` frames wide; the ends are averaged over the frames that exist. A window
    wider than twice the curve is that wide: every frame it reaches is already in it (wider, a smoothing of 1e9 s
    asked for hundreds of GB, and one wider than the clip failed)."""
    half = max(1, min(len(x), int(round(width / 2))))
    weights = np.hanning(2 * half + 1)[1:-1] if half > 1 else np.ones(1)
    start = (len(weights) - 1) // 2  # "same" of the full convolution, for a window longer than the curve too
    total = np.convolve(x, weights)[start : start + len(x)]
    norm = np.convolve(np.ones_like(x), weights)[start : start + len(x)]
    return total / norm
