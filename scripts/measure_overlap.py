"""How well a long soundtrack holds together: overlap agreement and seams, measured on the windows of a generation.

    python scripts/measure_overlap.py                       # 4 prompts x 2 seeds, 20 s, a flat energy curve
    python scripts/measure_overlap.py --seconds 12 --model DIR --prompts "a dog barking" --seeds 0

For each run, every window's decoded log-mel is recorded before the windows are joined. Printed, one JSON line per
run, then a summary line:
* overlap_r: the Pearson correlation of two neighbouring windows' log-mels over the frames they share (one value
  per overlap). Two unrelated sounds give about 0; one continuous sound gives about 1.
* novelty_peak_over_median: on the joined soundtrack, the distance between the mean log-mel profiles of the 2 s
  before and after each instant (10 ms steps); its peak over its median. A seam or a texture that changes at the
  window stride raises the peak.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import numpy as np
import torch

from rewas import ReWaSPipeline
from rewas.audio import log_mel
from rewas.frames import window_starts
from rewas.pipeline import MIN_OVERLAP_S

PROMPTS = ["steady heavy rain", "a car engine idling", "a dog barking", "wind blowing through trees"]


def novelty_peak_over_median(mel: np.ndarray, frame_rate: float, span_s: float = 2.0) -> float:
    """mel (frames, n_mels) -> peak / median of |mean profile after t - mean profile before t|, t every frame."""
    n = round(span_s * frame_rate)
    if mel.shape[0] < 2 * n + 1:
        return float("nan")
    csum = np.concatenate([np.zeros((1, mel.shape[1])), np.cumsum(mel, axis=0)])
    t = np.arange(n, mel.shape[0] - n)
    before = (csum[t] - csum[t - n]) / n
    after = (csum[t + n] - csum[t]) / n
    novelty = np.linalg.norm(after - before, axis=1)
    return float(novelty.max() / np.median(novelty))


def measure(pipe: ReWaSPipeline, prompt: str, seed: int, seconds: float, level: float, steps: int | None) -> dict:
    cfg = pipe.config
    windows = []
    decode_mel = pipe.decode_mel

    def recording(latent):  # every window's log-mel, as decoded, before the crossfade
        mel = decode_mel(latent)
        windows.append(mel[0, 0].float().cpu().numpy())
        return mel

    pipe.decode_mel = recording
    try:
        frames = round(seconds * cfg.audio.frame_rate)
        result = pipe(energy=np.full(frames, level), prompt=prompt, seed=seed, steps=steps)
    finally:
        del pipe.decode_mel
    rate = cfg.audio.frame_rate
    starts = sorted(
        {round(s * cfg.video.fps) for s in window_starts(result.duration, cfg.audio.window_seconds, MIN_OVERLAP_S)}
    )
    offsets = [round(s * rate / cfg.video.fps) for s in starts]
    overlap_r = []
    for i in range(len(windows) - 1):
        shared = offsets[i] + len(windows[i]) - offsets[i + 1]
        a = windows[i][len(windows[i]) - shared :]
        b = windows[i + 1][:shared]
        overlap_r.append(float(np.corrcoef(a.ravel(), b.ravel())[0, 1]))
    mel = log_mel(torch.from_numpy(result.waveform)[None], cfg.audio)[0].numpy().T  # (frames, n_mels)
    return {
        "prompt": prompt,
        "seed": seed,
        "seconds": seconds,
        "windows": len(windows),
        "overlap_r": [round(r, 3) for r in overlap_r],
        "novelty_peak_over_median": round(novelty_peak_over_median(mel, rate), 3),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default")
    p.add_argument("--prompts", nargs="+", default=PROMPTS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--level", type=float, default=-6.0, help="the flat energy curve's value (mean log-mel)")
    p.add_argument("--steps", type=int, help="sampler steps (default: the model's)")
    args = p.parse_args()
    pipe = ReWaSPipeline.from_pretrained(args.model)
    rows = []
    for prompt in args.prompts:
        for seed in args.seeds:
            rows.append(measure(pipe, prompt, seed, args.seconds, args.level, args.steps))
            print(json.dumps(rows[-1]), flush=True)
    every_r = [r for row in rows for r in row["overlap_r"]]
    summary = {
        "runs": len(rows),
        "overlap_r_median": round(statistics.median(every_r), 3) if every_r else None,
        "overlap_r_min": round(min(every_r), 3) if every_r else None,
        "novelty_peak_over_median_median": round(statistics.median(r["novelty_peak_over_median"] for r in rows), 3),
    }
    print(json.dumps({"summary": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
