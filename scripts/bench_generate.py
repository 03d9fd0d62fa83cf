"""Time `ReWaSPipeline` end to end on one clip: the paper model (random weights in the released layout) on a GPU.

    python scripts/bench_generate.py --device cuda --dtype bf16              # paper size, 5 s clip, 25 DDIM steps
    python scripts/bench_generate.py --preset debug --device cpu --runs 1    # smoke run anywhere

Prints one JSON line per run and the median, with the per-stage timings. Random weights cost the same time as
trained ones, so this measures speed, not quality. With --model DIR it times a converted model instead.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from rewas import ReWaSPipeline, samples
from rewas.config import PRESETS

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    p.add_argument("--model", help="a model folder instead of a preset")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--scheduler", default="ddim")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--tokenizer-dir", help="RoBERTa vocab.json + merges.txt (else bytes stand in: timing only)")
    args = p.parse_args()

    built = time.perf_counter()
    pipe = ReWaSPipeline.from_pretrained(args.model or args.preset, device=args.device, dtype=DTYPES[args.dtype])
    built = time.perf_counter() - built
    if pipe.text_encoder.tokenizer is None:
        from rewas.text_encoder import ByteTokenizer, load_tokenizer

        if args.tokenizer_dir:
            pipe.text_encoder.tokenizer = load_tokenizer(pipe.config.text, args.tokenizer_dir)
        else:  # random weights: any valid token ids time the same
            print("note: no RoBERTa tokenizer given; byte tokens stand in (fine for timing)", file=sys.stderr)
            pipe.text_encoder.tokenizer = ByteTokenizer(pipe.config.text.max_length)
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        samples.write_video(clip, samples.bouncing_ball_frames(), args.seconds, 25)
        totals = []
        for run in range(args.runs + 1):  # run 0 warms up (kernels, allocator)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            result = pipe(
                clip, prompt="a ball bouncing on a wooden floor", steps=args.steps, scheduler=args.scheduler, seed=run
            )
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            total = time.perf_counter() - start
            if run:
                totals.append(total)
            print(
                json.dumps(
                    {"run": run, "total_s": round(total, 3), **{k: round(v, 3) for k, v in result.timings.items()}}
                )
            )
    print(
        json.dumps(
            {
                "model": args.model or args.preset,
                "device": str(pipe.device),
                "dtype": args.dtype,
                "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
                "clip_s": args.seconds,
                "steps": args.steps,
                "build_s": round(built, 1),
                "median_total_s": round(statistics.median(totals), 3) if totals else None,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
