"""The default model's CPU speed, end to end: a 5 s video -> `rewas generate` -> muxed MP4, as a user runs it.

    python scripts/bench_cpu.py                # 5 runs of the command, median wall time
    python scripts/bench_cpu.py --runs 3 --model DIR --seconds 10

Each run is a fresh `python -m rewas generate` process (start-up, imports, model loading, frames, energy,
diffusion, decoding, muxing: everything the user waits for), timed from outside. Prints one JSON line per run
and the median; the target for the default model on a 2-core CPU is 10 s for a 5 s clip.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rewas import samples


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--steps", type=int, help="sampler steps (default: the model's)")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        samples.write_video(clip, samples.bouncing_ball_frames(), args.seconds, 25)
        command = [
            sys.executable,
            "-m",
            "rewas",
            "generate",
            str(clip),
            "--prompt",
            "a rubber ball bouncing on the floor",
            "--model",
            args.model,
            "--seed",
            "0",
            "-q",
        ] + (["--steps", str(args.steps)] if args.steps else [])
        times = []
        for run in range(args.runs):
            out = Path(tmp) / f"out{run}.mp4"
            start = time.perf_counter()
            res = subprocess.run(command + ["-o", str(out)], capture_output=True, text=True, env={**os.environ})
            elapsed = time.perf_counter() - start
            if res.returncode or not out.is_file():
                print(res.stderr, file=sys.stderr)
                return 1
            times.append(elapsed)
            print(json.dumps({"run": run, "wall_s": round(elapsed, 2)}), flush=True)
    print(
        json.dumps(
            {
                "model": args.model,
                "clip_s": args.seconds,
                "runs": args.runs,
                "cpus": os.cpu_count(),
                "median_wall_s": round(statistics.median(times), 2),
                "min_wall_s": round(min(times), 2),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
