"""Does a layer's region stay on its object, whatever box the user draws? (rewas/tracking.py, docs/layers.md)

    python scripts/measure_tracking.py              # 3 clips x 2 balls, plain and filmed, every kind of box
    python scripts/measure_tracking.py --clips 1    # quicker

The clips are `samples.two_objects_frames`, 8 s: two balls, one in each half, each landing at the onsets of its
own corpus ball sound (seeds 0, 1, 2, as tests/test_layers.py and docs/layers.md use), on the corpus's plain
background. Each is also "filmed": a smooth random texture behind the scene, a hand-held shake of about 1.5 px,
a 7 Hz lighting flicker, a mild blur and sensor noise.

Boxes, for each ball:
* tight: the ball's own box with a margin of 2, 5, 10 or 15% of the picture, drawn at 0 s and at 4 s; the error
  is the tracked box centre's distance from the ball's true centre (fractions of the width and height);
* loose: boxes around where the ball moves: its half of the picture, and (0.05, 0.05, 0.45, 0.95) or
  (0.1, 0.1, 0.4, 0.9) and their mirror images, drawn at 0 s. What counts is that the ball stays inside the box
  and the box on the ball's half of the picture.

Printed per clip kind: the worst and median error of the tight boxes, the tracks whose error ever passed the
ball's radius (8.3% of the height), the smallest share of frames in which a loose box held its ball, and the
loose boxes whose centre crossed to the other half.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rewas import samples  # noqa: E402
from rewas.tracking import Region, track  # noqa: E402
from rewas.train.corpus import CLASSES  # noqa: E402

FPS, SECONDS = 25.0, 8.0
COLOURS = (0, 2)  # the left ball is red (230 in the red channel), the right one blue (230 in blue)
LOOSE = [
    (0.0, 0.0, 0.5, 1.0),
    (0.05, 0.05, 0.45, 0.95),
    (0.1, 0.1, 0.4, 0.9),
]  # the left ball's; mirrored for the right
RADIUS = 1 / 12  # the balls' radius, a fraction of the height


def balls(frame: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each ball's (centre, box) on a plain frame, fractions of the width and height."""
    h, w = frame.shape[:2]
    out = []
    for channel in COLOURS:
        ys, xs = np.nonzero(frame[..., channel] == 230)
        out.append(
            (
                np.array([xs.mean() / w, ys.mean() / h]),
                np.array([xs.min() / w, ys.min() / h, xs.max() / w, ys.max() / h]),
            )
        )
    return out


def filmed(frame_fn, seed: int):
    """The plain clip as a hand-held camera in a room might film it (the balls' positions move by the shake only)."""
    rng = np.random.default_rng(seed)
    h, w = frame_fn(0.0).shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    texture = np.zeros((h, w))
    for _ in range(6):
        fy, fx, phase = rng.uniform(0.02, 0.15), rng.uniform(0.02, 0.15), rng.uniform(0, 2 * np.pi)
        texture += np.sin(fy * yy + fx * xx + phase)
    texture = (texture - texture.min()) / np.ptp(texture)
    tint = rng.uniform(30, 140, 3)
    key = frame_fn(0.0)[0, 0].astype(np.float32)  # the plain background's colour

    def frame(t: float) -> np.ndarray:
        image = frame_fn(t).astype(np.float32)
        background = (np.abs(image - key).sum(-1) < 30)[..., None]
        image = np.where(background, tint * (0.5 + texture[..., None]), image)
        dy, dx = 1.5 * rng.standard_normal(2)
        image = image[
            np.clip((yy + dy).round().astype(int), 0, h - 1), np.clip((xx + dx).round().astype(int), 0, w - 1)
        ]
        image = 0.5 * image + 0.25 * (np.roll(image, 1, 0) + np.roll(image, 1, 1))
        image = image * (1 + 0.08 * np.sin(2 * np.pi * 7.3 * t)) + 5 * rng.standard_normal(image.shape)
        return np.clip(image, 0, 255).astype(np.uint8)

    return frame


def measure(path: Path, frame_fn, stats: dict) -> None:
    truth = [balls(frame_fn(i / FPS)) for i in range(round(SECONDS * FPS))]
    for k in range(2):
        centres = np.array([frame_balls[k][0] for frame_balls in truth])
        for at in (0.0, 4.0):
            for pad in (0.02, 0.05, 0.1, 0.15):
                box = balls(frame_fn(at))[k][1] + np.array([-pad, -pad, pad, pad])
                found = track(path, Region(tuple(np.clip(box, 0, 1)), at=at), FPS)
                error = np.abs(found.centres() - centres).max(axis=1)
                stats["error"].append(error)
                stats["lost"] += int(error.max() > RADIUS)
                stats["tight"] += 1
        for left, top, right, bottom in LOOSE:
            box = (left, top, right, bottom) if k == 0 else (1 - right, top, 1 - left, bottom)
            found = track(path, Region(box), FPS)
            b = found.boxes
            held = (b[:, 0] <= centres[:, 0]) & (centres[:, 0] <= b[:, 2]) & (b[:, 1] <= centres[:, 1])
            held &= centres[:, 1] <= b[:, 3]
            stats["held"].append(float(held.mean()))
            side = found.centres()[:, 0] < 0.5 if k == 0 else found.centres()[:, 0] > 0.5
            stats["crossed"] += int(not side.all())
            stats["loose"] += 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=3, help="clips (seeds 0, 1, ... of the ball sounds)")
    args = parser.parse_args()
    ball = next(c for c in CLASSES if c.name == "ball_bounce")
    results = {
        kind: {"error": [], "lost": 0, "tight": 0, "held": [], "crossed": 0, "loose": 0} for kind in ("plain", "filmed")
    }
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.clips):
            events = []
            for k in range(2):
                rng = np.random.default_rng([seed, k, 5])
                events.append(ball.make(rng, ball.params(rng), SECONDS)[1])
            plain = samples.two_objects_frames(*events)
            for kind, frame_fn in (("plain", plain), ("filmed", filmed(plain, seed))):
                path = Path(tmp) / f"{kind}_{seed}.mkv"  # lossless: x264 did not encode the noise the same twice
                samples.write_video(path, frame_fn, SECONDS, FPS, codec="ffv1")
                measure(path, plain, results[kind])  # the truth comes from the plain frames
    for kind, s in results.items():
        error = np.concatenate(s["error"])
        print(
            f"{kind}: tight boxes (x{s['tight']}): error worst {error.max():.3f}, median {np.median(error):.4f}, "
            f"tracks that left the ball {s['lost']}; loose boxes (x{s['loose']}): ball held in "
            f"{100 * min(s['held']):.0f}-{100 * statistics.median(s['held']):.0f}% of frames (worst-median), "
            f"crossed to the other half {s['crossed']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
