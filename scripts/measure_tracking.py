"""Does a layer's region stay on its object, whatever box the user draws? (rewas/tracking.py, docs/layers.md)

    python scripts/measure_tracking.py              # 3 clips x 2 balls, plain and filmed, every kind of box
    python scripts/measure_tracking.py --clips 1    # quicker
    python scripts/measure_tracking.py --sound      # also each ball's layer on the default model (docs/layers.md)
    python scripts/measure_tracking.py --size 320x640 --radius 5   # small balls in a larger picture
    python scripts/measure_tracking.py --bus        # boxes on parts of a large object, and on the scenery
    python scripts/measure_tracking.py --blotches   # a ball crossing a blotchy picture, 11 kinds of scene

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
ball's radius (8.3% of the height by default) or 5% of the picture, the smallest share of frames in which a loose
box held its ball, and the loose boxes whose centre crossed to the other half. Also per clip kind, boxes with no
ball in them when drawn (0 s and 4 s): on the floor, on the background beside the balls, where a ball passes later.
They should stay where they are drawn (a camera's shake may move them a little): printed, those that moved by over
2% of the picture, and the largest move.

With --bus, the clips are instead `samples.bus_frames`, 6 s: a bus half the picture wide drives across a plain sky and
grass, plain and filmed (seeds 0, 1, ...), all in the picture from the start, and again coming in from the left edge. A
box is drawn on each of `samples.BUS_PARTS` that is in the picture (a window of a row of 5 alike, half the door, the
stripe on its side, paint with the stripe's end, plain paint) at 0, 1.5, 3 and 4.5 s; the error is its centre's distance
from that part's true centre, on the frames where the part is all in the picture. Boxes on the sky and the grass should
stay where they are drawn. Printed per clip kind: the worst and median error of the parts' tracks, those off by over 5%,
those that stayed where drawn (`Track.fixed`), and how far the scenery's boxes moved.

With --blotches, the clips are instead a red ball on a blotchy, noisy picture (random colours in 8 px squares), 2 s, a
box drawn tight around it at 0 s, 10 seeds of each of: slow (4 px a frame) and fast (10 px a frame) across it, a bounce
on an invisible floor, a zigzag, blotches 8% of which are the ball's own colour, the picture in shadow from x = 180 on
(0.6 of its light, the ball's too), the ball coming nearer (its radius 12 to 28 px), its twin crossing its path the
other way, 10 px lower, the picture's colour balance drifting (its red to 0.7, its blue to 1.36 by 2 s), the picture in
a warmer light from x = 180 on (red 1.45, blue 0.55, the ball's too), and a ball of yellow and blue stripes 5 px wide
that rolls (its stripes turn with it). Printed per kind: the worst error (pixels) while all of the ball is in the
picture, the frames off by over 8 px, and the tracks with any such frame.

With --sound, each plain clip also gets a soundtrack of two layers on the embedded default model (fp32, seed 0,
prompt "a rubber ball bouncing on a wooden floor"), one per ball, with the ball's tight box (2% margin, drawn at
0 s) and then with its half of the picture. Printed per layer, over the clips: the Pearson r of the layer's curve
and of its stem's energy with each ball's true curve (the control curve of the ball's own sound), and how much
louder its stem is on its ball's side.
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
EMPTY = [
    (0.05, 0.7, 0.45, 1.0),
    (0.0, 0.6, 0.2, 1.0),
    (0.3, 0.3, 0.5, 0.6),
    (0.6, 0.5, 0.95, 0.9),
    (0.0, 0.0, 0.1, 0.2),
]
FAR = 0.05  # a track this far off its ball (fractions of the width and height) has lost it, whatever its size
PROMPT = "a rubber ball bouncing on a wooden floor"


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


def measure(path: Path, frame_fn, stats: dict, radius: float) -> None:
    """Every kind of box on the clip at `path`, against the balls of `frame_fn` (their radius a fraction of the
    height: a track further off than that has left its ball) -> `stats`."""
    truth = [balls(frame_fn(i / FPS)) for i in range(round(SECONDS * FPS))]
    for k in range(2):
        centres = np.array([frame_balls[k][0] for frame_balls in truth])
        for at in (0.0, 4.0):
            for pad in (0.02, 0.05, 0.1, 0.15):
                box = balls(frame_fn(at))[k][1] + np.array([-pad, -pad, pad, pad])
                found = track(path, Region(tuple(np.clip(box, 0, 1)), at=at), FPS)
                error = np.abs(found.centres() - centres).max(axis=1)
                stats["error"].append(error)
                stats["lost"] += int(error.max() > radius)
                stats["far"] += int(error.max() > FAR)
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
    for box in EMPTY:
        for at in (0.0, 4.0):
            if any(_inside(centre, box, radius) for centre, _ in balls(frame_fn(at))):
                continue  # (part of) a ball in it: an object's box, not an empty one
            move = float(np.abs(track(path, Region(box, at=at), FPS).boxes - np.array(box)).max())
            stats["moved"].append(move)
            stats["empty"] += 1


BUS_SECONDS, BUS_AT = 6.0, (0.0, 1.5, 3.0, 4.5)
BUS_STARTS = (20.0, -150.0)  # the bus all in the picture; coming in from the left edge
BUS_PIXELS = [samples.BUS_WIDTH, samples.BUS_HEIGHT] * 2  # a box's (left, top, right, bottom) in pixels per fraction


def measure_bus(path: Path, speed: float, start: float, stats: dict) -> None:
    """Boxes on each of the bus's parts that is in the picture when drawn, and on the scenery, on the clip at `path`
    -> `stats`. A part's error counts on the frames where it is all in the picture."""
    frames = np.arange(round(BUS_SECONDS * FPS)) / FPS
    for part in samples.BUS_PARTS:
        centres, seen = samples.bus_part_path(part, frames, speed, start)
        for at in BUS_AT:
            box = samples.bus_part(part, at, speed, start)
            if box[0] < 0 or box[2] > samples.BUS_WIDTH:
                continue
            found = track(path, Region(tuple(box / BUS_PIXELS), at=at), FPS)
            error = np.abs(found.centres() - centres)[seen].max(axis=1)
            stats["error"].append(error)
            stats["far"] += int(error.max() > FAR)
            stats["fixed"] += int(found.fixed)
            stats["parts"] += 1
    for box in samples.BUS_SCENERY:
        for at in BUS_AT:
            stats["moved"].append(float(np.abs(track(path, Region(box, at=at), FPS).boxes - np.array(box)).max()))


def bus(clips: int) -> None:
    speed = 45.0
    results = {kind: {"error": [], "far": 0, "fixed": 0, "parts": 0, "moved": []} for kind in ("plain", "filmed")}
    with tempfile.TemporaryDirectory() as tmp:
        for start in BUS_STARTS:
            plain = samples.bus_frames(speed, start)
            for seed in range(clips):
                for kind, frame_fn in (("plain", plain), ("filmed", filmed(plain, seed))):
                    if kind == "plain" and seed > 0:
                        continue  # the same clip again
                    path = Path(tmp) / f"bus_{start:g}_{kind}_{seed}.mkv"
                    samples.write_video(path, frame_fn, BUS_SECONDS, FPS, codec="ffv1")
                    measure_bus(path, speed, start, results[kind])
    for kind, s in results.items():
        error = np.concatenate(s["error"])
        print(
            f"{kind}: parts of the bus (x{s['parts']}): error worst {error.max():.3f}, median {np.median(error):.4f}, "
            f"off by over {FAR:g}: {s['far']}, stayed where drawn {s['fixed']}; "
            f"scenery (x{len(s['moved'])}): moved by over 2% {sum(m > 0.02 for m in s['moved'])}, "
            f"the most {max(s['moved']):.3f}"
        )


def _inside(point: np.ndarray, box: tuple[float, ...], margin: float) -> bool:
    return box[0] - margin <= point[0] <= box[2] + margin and box[1] - margin <= point[1] <= box[3] + margin


def measure_sound(pipe, path: Path, frame_fn, wavs: list[np.ndarray], rows: dict) -> None:
    import torch

    from rewas.energy import control_target, waveform_energy
    from rewas.soundtrack import Layer, render

    truth = [control_target(waveform_energy(torch.from_numpy(w))[None], pipe.config)[0].numpy() for w in wavs]
    drawn = balls(frame_fn(0.0))
    kinds = {
        "tight": [tuple(np.clip(box + np.array([-0.02, -0.02, 0.02, 0.02]), 0, 1)) for _, box in drawn],
        "half": [(0.0, 0.0, 0.5, 1.0), (0.5, 0.0, 1.0, 1.0)],
    }
    for kind, boxes in kinds.items():
        layers = [Layer(PROMPT, region=Region(box), name=side) for box, side in zip(boxes, ("left", "right"))]
        result = render(pipe, path, layers, seed=0)
        n = min(len(result.curves[0]), len(truth[0]))
        for k, side in enumerate(("left", "right")):
            heard = waveform_energy(torch.from_numpy(result.stems[k].sum(1)))[None].numpy()[0, :n]
            row = []
            for curve in (result.curves[k][:n], heard):
                row += [float(np.corrcoef(curve, truth[j][:n])[0, 1]) for j in (k, 1 - k)]
            power = [float(np.sum(result.stems[k][:, c].astype(np.float64) ** 2)) for c in (0, 1)]
            row.append(10 * np.log10(power[0] / power[1]) * (1 if k == 0 else -1))
            rows.setdefault((kind, side), []).append(row)


BLOTCH_KINDS = {  # the ball's centre (x, y pixels of the 320 x 160 picture) at t s
    "slow": lambda t: (60 + 100 * t, 80),
    "fast": lambda t: (40 + 250 * t, 80),
    "bounce": lambda t: (60 + 100 * t, 130 - 400 * (t % 1) * (1 - t % 1)),
    "zigzag": lambda t: (160 + 100 * np.sin(np.pi * t), 80 + 40 * np.sin(1.4 * np.pi * t)),
    "own colour": lambda t: (60 + 100 * t, 80),
    "shadow": lambda t: (60 + 100 * t, 80),
    "comes nearer": lambda t: (60 + 100 * t, 80),
    "crosses its twin": lambda t: (60 + 100 * t, 80),
    "colour balance drifts": lambda t: (60 + 100 * t, 80),
    "warm light": lambda t: (60 + 100 * t, 80),
    "rolls, striped": lambda t: (60 + 100 * t, 80),
}
BALL_COLOUR = np.array((230, 70, 60))
STRIPES = np.array((230, 200, 40)), np.array((40, 70, 200))


def blotches(clips: int) -> None:
    h, w = 160, 320
    yy, xx = np.mgrid[0:h, 0:w]
    with tempfile.TemporaryDirectory() as tmp:
        for kind, at in BLOTCH_KINDS.items():
            worst, off, tracks = 0.0, 0, 0
            for seed in range(clips):
                rng = np.random.default_rng([seed, 7])
                picture = samples.blotches(rng, h, w)
                if kind == "own colour":
                    own = np.kron(rng.random((21, 41)) < 0.08, np.ones((8, 8)))[:h, :w, None] > 0
                    picture = np.where(own, BALL_COLOUR, picture)

                def frame(t: float, picture=picture, at=at, kind=kind) -> np.ndarray:
                    image = picture.copy()
                    x, y = at(t)
                    if kind == "crosses its twin":  # going the other way, 10 px lower, behind the ball
                        image[(xx - 260 + 100 * t) ** 2 + (yy - 90) ** 2 < 12**2] = BALL_COLOUR
                    radius = 12 + 8 * t if kind == "comes nearer" else 12
                    ball = (xx - x) ** 2 + (yy - y) ** 2 < radius**2
                    if kind == "rolls, striped":  # 5 px bands, turning with the ball as it rolls
                        turned = (x - at(0.0)[0]) / radius
                        bands = np.floor(((xx - x) * np.cos(turned) + (yy - y) * np.sin(turned)) / 5) % 2 == 0
                        image[ball & bands], image[ball & ~bands] = STRIPES
                    else:
                        image[ball] = BALL_COLOUR
                    if kind == "shadow":
                        image[:, w // 2 + 20 :] *= 0.6
                    elif kind == "colour balance drifts":  # a camera's white balance, over the whole clip
                        image *= 1 + t / 2 * np.array((-0.3, 0.0, 0.36))
                    elif kind == "warm light":
                        image[:, w // 2 + 20 :] *= (1.45, 1.0, 0.55)
                    noise = np.random.default_rng(round(t * 1000)).normal(0, 4, image.shape)
                    return np.clip(image + noise, 0, 255).astype(np.uint8)

                path = Path(tmp) / f"{kind}_{seed}.mkv"
                samples.write_video(path, frame, 2.0, FPS, codec="ffv1")
                x, y = at(0.0)
                found = track(path, Region(((x - 16) / w, (y - 16) / h, (x + 16) / w, (y + 16) / h)), FPS)
                boxes = found.boxes * [w, h, w, h]
                centres = (boxes[:, :2] + boxes[:, 2:]) / 2
                truth = np.array([at(k / FPS) for k in range(len(centres))])
                inside = (truth[:, 0] > 12) & (truth[:, 0] < w - 12)
                error = np.abs(centres - truth).max(axis=1)[inside]
                worst, off, tracks = max(worst, error.max()), off + int((error > 8).sum()), tracks + (error > 8).any()
            print(f"{kind}: worst error {worst:.0f} px, frames off by over 8 px {off}, tracks off {tracks}/{clips}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, help="clips (seeds 0, 1, ...; default 3, 10 with --blotches)")
    parser.add_argument("--sound", action="store_true", help="also each ball's layer on the default model")
    parser.add_argument("--size", default="160x320", help="the picture's HEIGHTxWIDTH in pixels (default 160x320)")
    parser.add_argument("--radius", type=int, help="the balls' radius in pixels (default 1/12 of the height)")
    parser.add_argument("--bus", action="store_true", help="boxes on a large object's parts instead of the balls")
    parser.add_argument("--blotches", action="store_true", help="a ball moving across a blotchy picture instead")
    args = parser.parse_args()
    if args.blotches:
        blotches(10 if args.clips is None else args.clips)
        return 0
    args.clips = 3 if args.clips is None else args.clips
    if args.bus:
        bus(args.clips)
        return 0
    size = tuple(int(v) for v in args.size.lower().split("x"))
    radius = (args.radius or max(4, size[0] // 12)) / size[0]
    pipe = None
    if args.sound:
        from rewas import ReWaSPipeline

        pipe = ReWaSPipeline.from_pretrained("default")
    sound: dict = {}
    ball = next(c for c in CLASSES if c.name == "ball_bounce")
    results = {
        kind: {
            "error": [],
            "lost": 0,
            "far": 0,
            "tight": 0,
            "held": [],
            "crossed": 0,
            "loose": 0,
            "moved": [],
            "empty": 0,
        }
        for kind in ("plain", "filmed")
    }
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.clips):
            events, wavs = [], []
            for k in range(2):
                rng = np.random.default_rng([seed, k, 5])
                wav, onsets = ball.make(rng, ball.params(rng), SECONDS)
                events.append(onsets)
                wavs.append(np.asarray(wav, np.float32))
            plain = samples.two_objects_frames(*events, size=size, radius=args.radius)
            for kind, frame_fn in (("plain", plain), ("filmed", filmed(plain, seed))):
                path = Path(tmp) / f"{kind}_{seed}.mkv"  # lossless: x264 did not encode the noise the same twice
                samples.write_video(path, frame_fn, SECONDS, FPS, codec="ffv1")
                measure(path, plain, results[kind], radius)  # the truth comes from the plain frames
                if pipe is not None and kind == "plain":
                    measure_sound(pipe, path, plain, wavs, sound)
    for kind, s in results.items():
        error = np.concatenate(s["error"])
        print(
            f"{kind}: tight boxes (x{s['tight']}): error worst {error.max():.3f}, median {np.median(error):.4f}, "
            f"tracks that left the ball {s['lost']} (off by over {FAR:g}: {s['far']}); "
            f"loose boxes (x{s['loose']}): ball held in "
            f"{100 * min(s['held']):.0f}-{100 * statistics.median(s['held']):.0f}% of frames (worst-median), "
            f"crossed to the other half {s['crossed']}; empty boxes (x{s['empty']}): moved by over 2% "
            f"{sum(m > 0.02 for m in s['moved'])}, the most {max(s['moved'], default=0):.3f}"
        )
    if sound:
        print("box, layer | curve r, own ball | other ball | stem energy r, own | other | own side louder (dB)")
        for (kind, side), rows in sound.items():
            spans = [f"{min(v):.2f} to {max(v):.2f}" for v in zip(*rows)]
            print(f"{kind}, {side} | " + " | ".join(spans))
    return 0


if __name__ == "__main__":
    sys.exit(main())
