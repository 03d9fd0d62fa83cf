"""Does the generated audio follow the control curve on real camera footage? (issue 19's third measurement)

    python scripts/measure_real_footage.py CLIP [CLIP ...] [--model default] [--prompts "a dog barking" "heavy rain"]
        [--seeds 0 1] [--seconds 10] [--out results.json]

For each clip (its first --seconds), prompt and seed: the pipeline generates as `rewas generate` does (phi's curve
from the video is the control) and the printed r is the Pearson correlation, over the clip, of that control curve
(what `--energy-out` writes) with the energy of the generated audio. The clips docs/default_model.md reports on are
not in the repository; where each comes from, and its licence, is listed there.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rewas import ReWaSPipeline  # noqa: E402
from rewas.energy import waveform_energy  # noqa: E402
from rewas.frames import iter_frames, probe  # noqa: E402

PROMPTS = ["a dog barking", "heavy rain"]


def first_seconds(path: str, pipe: ReWaSPipeline, seconds: float) -> np.ndarray:
    """The clip's first `seconds` as the model sees it: (T, crop, crop, 3) uint8 at its frame rate."""
    cfg = pipe.config.video
    frames = itertools.islice(iter_frames(path, cfg, probe(path)), round(seconds * cfg.fps))
    return np.stack(list(frames))


def control_r(pipe: ReWaSPipeline, frames: np.ndarray, prompt: str, seed: int) -> float:
    result = pipe(frames=frames, prompt=prompt, seed=seed)
    made = waveform_energy(torch.from_numpy(result.waveform)[None], pipe.config.audio)[0].numpy()
    n = min(len(made), len(result.energy))
    return float(np.corrcoef(made[:n], result.energy[:n])[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clips", nargs="+")
    parser.add_argument("--model", default="default")
    parser.add_argument("--prompts", nargs="+", default=PROMPTS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--out", help="also write the rows and the summary here (JSON)")
    args = parser.parse_args()
    pipe = ReWaSPipeline.from_pretrained(args.model)
    rows = []
    for clip in args.clips:
        frames = first_seconds(clip, pipe, args.seconds)
        for prompt in args.prompts:
            for seed in args.seeds:
                rows.append({"clip": Path(clip).name, "prompt": prompt, "seed": seed})
                rows[-1]["r"] = round(control_r(pipe, frames, prompt, seed), 3)
                print(json.dumps(rows[-1]), flush=True)
    per_clip_prompt = {}
    for row in rows:
        per_clip_prompt.setdefault((row["clip"], row["prompt"]), []).append(row["r"])
    summary = {
        "model": args.model,
        "runs": len(rows),
        "r_mean": round(statistics.mean(r["r"] for r in rows), 3),
        "r_by_clip_and_prompt": {f"{c} | {p}": round(statistics.mean(v), 3) for (c, p), v in per_clip_prompt.items()},
    }
    print(json.dumps({"summary": summary}))
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
