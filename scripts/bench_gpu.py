"""A 5 s clip through each model on a GPU, fp32 and bf16, with stage clocks: docs/speed.md's GPU table.

    python scripts/bench_gpu.py                          # the default and the paper model, 3 runs each
    python scripts/bench_gpu.py --models default --runs 5

The paper model is built with random weights in its shapes when no folder is given (the same cost as the released
ones) and reads prompts with a byte tokenizer (RoBERTa's files are not needed to time it). Each model and dtype is
loaded, warmed up once, then run with seeds 1, 2, ...; the script prints the median total, the median of each stage
(`GenerationResult.timings`, CUDA-synchronised) and the peak GPU memory. Without a GPU it runs on the CPU, slowly:
use scripts/bench_cpu.py there.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from rewas import samples
from rewas.pipeline import ReWaSPipeline
from rewas.text_encoder import ByteTokenizer

STEPS = {"paper": 25}  # the paper model at the step count issue 28 times; the others at their own
PROMPT = "a rubber ball bouncing on a wooden floor"


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["default", "paper"])
    p.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5.0)
    args = p.parse_args()
    torch.set_grad_enabled(False)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device: {torch.cuda.get_device_name() if device == 'cuda' else 'cpu'}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "ball.mp4"
        samples.write_video(clip, samples.bouncing_ball_frames(), args.seconds, 25)
        for model in args.models:
            for dtype in args.dtypes:
                start = time.perf_counter()
                pipe = ReWaSPipeline.from_pretrained(model, device=device, dtype=dtype)
                if getattr(pipe.text_encoder, "tokenizer", True) is None:  # random paper weights: byte tokens
                    pipe.text_encoder.tokenizer = ByteTokenizer(getattr(pipe.config.text, "max_length", 77))
                load = time.perf_counter() - start
                ask = dict(prompt=PROMPT, steps=STEPS.get(model))
                pipe(clip, seed=0, **ask)  # warm-up: first-call costs fall on no run
                totals, stages = [], []
                for seed in range(1, args.runs + 1):
                    synchronize()
                    start = time.perf_counter()
                    result = pipe(clip, seed=seed, **ask)
                    synchronize()
                    totals.append(time.perf_counter() - start)
                    stages.append(result.timings)
                peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
                median = {k: round(statistics.median(t[k] for t in stages), 3) for k in stages[0]}
                print(
                    f"{model} {dtype}: load {load:.1f} s, total {statistics.median(totals):.3f} s (median of "
                    f"{args.runs}), stages {median}, peak GPU memory {peak:.1f} GiB",
                    flush=True,
                )
                del pipe
                if device == "cuda":
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
