"""What a soundtrack of layers costs against one layer, measured side by side in one process.

    python scripts/bench_layers.py                       # 10 s, the embedded model, 5 runs of each
    python scripts/bench_layers.py --seconds 10 --runs 5 --batch-sizes 4 12

The clip is `samples.two_objects_frames` (two balls landing at their own times). "1 layer" is the whole picture
with one prompt, as `rewas generate --prompt`; "3 layers" is each ball's region (tracked) and a flat ambience, as
`rewas generate --layer ... --layer ... --layer ...`. Runs alternate between the two so that the machine's drift
falls on both. Prints the median seconds of each, their ratio, and the stages of the last run of each.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from rewas import samples
from rewas.pipeline import ReWaSPipeline
from rewas.soundtrack import Layer, render
from rewas.tracking import Region

LEFT = [0.6, 1.5, 2.9, 3.6, 5.3, 6.1, 7.7, 9.0, 10.4, 11.2]
RIGHT = [1.0, 2.3, 4.2, 4.8, 6.6, 8.3, 9.5, 10.9, 11.6]


def boxes(frame: np.ndarray) -> list[tuple[float, float, float, float]]:
    """Each ball's box on the first frame (found by its colour), as fractions of the picture."""
    h, w = frame.shape[:2]
    out = []
    for channel in (0, 2):
        ys, xs = np.nonzero(frame[..., channel] == 230)
        out.append((xs.min() / w - 0.02, ys.min() / h - 0.02, xs.max() / w + 0.02, ys.max() / h + 0.02))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--model", default="default")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu, as the CLI's)")
    p.add_argument("--dtype", default="auto", help="the diffusion model's precision (default: auto, as the CLI's)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[None], help="denoiser batch sizes to compare")
    args = p.parse_args()
    torch.set_grad_enabled(False)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipe = ReWaSPipeline.from_pretrained(args.model, device=device, dtype=args.dtype)
    frame_fn = samples.two_objects_frames(LEFT, RIGHT)
    left, right = boxes(frame_fn(0.0))
    prompt = "a rubber ball bouncing on a wooden floor"
    three = [
        Layer(prompt, region=Region(left), name="left"),
        Layer(prompt, region=Region(right), name="right"),
        Layer("wind blowing through trees", level=-6.0, gain_db=-6, name="wind"),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "two.mp4"
        samples.write_video(video, frame_fn, args.seconds, 25)
        pipe(video, prompt=prompt, seed=0)  # warm-up: first-call costs fall on neither side
        for batch_size in args.batch_sizes:
            one, many, alone, last = [], [], None, None
            for run in range(args.runs):
                start = time.perf_counter()
                alone = pipe(video, prompt=prompt, seed=run, batch_size=batch_size)
                one.append(time.perf_counter() - start)
                start = time.perf_counter()
                last = render(pipe, video, three, seed=run, batch_size=batch_size)
                many.append(time.perf_counter() - start)
            a, b = statistics.median(one), statistics.median(many)
            print(
                f"{pipe.device.type}, {pipe.dtype}, batch size {batch_size or 'default'}: 1 layer {a:.2f} s, "
                f"3 layers {b:.2f} s (medians of {args.runs}), ratio {b / a:.2f}"
            )
            print("  1 layer, last run: " + ", ".join(f"{k} {v:.2f} s" for k, v in alone.timings.items()))
            print("  3 layers, last run: " + ", ".join(f"{k} {v:.2f} s" for k, v in last.timings.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
