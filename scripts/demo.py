"""`make demo`: render a sample clip, give it a soundtrack with `rewas generate`, write demo_output/*.mp4.

It runs the small default model embedded in the package (offline, a few seconds on a CPU). Pass --model DIR to
use another model, e.g. the paper model converted from the released weights.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rewas import samples
from rewas.cli import main as rewas_main

OUT = Path(__file__).resolve().parents[1] / "demo_output"


def run() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="default", help="model folder or preset (default: the embedded model)")
    parser.add_argument("--steps", help="sampler steps (default: the model's)")
    args = parser.parse_args()

    OUT.mkdir(exist_ok=True)
    clip = OUT / "bouncing_ball.mp4"
    samples.write_video(clip, samples.bouncing_ball_frames(bounce_period=0.8), duration=6.0, fps=25)
    print(f"rendered {clip} (6 s, 25 fps: a ball hitting the floor every 0.8 s)")
    out = OUT / "bouncing_ball_with_sound.mp4"
    code = rewas_main(
        [
            "generate",
            str(clip),
            "--prompt",
            "a rubber ball bouncing on a wooden floor",
            "-o",
            str(out),
            "--wav",
            str(OUT / "bouncing_ball.wav"),
            "--energy-out",
            str(OUT / "energy.csv"),
            "--model",
            args.model,
            "--seed",
            "0",
            *(["--steps", args.steps] if args.steps else []),
        ]
    )
    if code == 0:
        print(f"done: {out}")
    return code


if __name__ == "__main__":
    sys.exit(run())
