"""Does phi beat the naive motion cue? Per clip, the Pearson r with the true energy of phi's curve and of plain
frame differencing, on a corpus split (issue 19's second measurement).

    python scripts/measure_phi_vs_motion.py --corpus WORK/corpus [--split test] [--per-class 0]
    python scripts/measure_phi_vs_motion.py --corpus WORK/corpus --split camera_test
    python scripts/measure_phi_vs_motion.py --corpus WORK/corpus --split novel_test

The novel_* splits are the same clips drawn in held-out styles that phi's training renders never use
(`rewas corpus --styles`, or `rewas.train.corpus.style_corpus(..., novel=True)`: other shapes, backgrounds,
sizes, hues, floors, speeds and heights).

The camera_* splits are the same clips filmed again "with a real camera" (`rewas corpus --camera`, or
`rewas.train.corpus.film_corpus` on a built corpus: textured background, a silent moving distractor, hand-held
pan, zoom and shake, flicker, blur, noise, one more H.264 generation).

The true energy is what phi is trained towards: `energy.control_target` of the clip's real audio (first 5.12 s).
Frame differencing: the mean absolute difference of consecutive frames as the model sees them (25 fps, its crop),
each value placed at the time between the two frames and interpolated onto the 10 ms energy frames; r is given for
the difference and for its logarithm, and the better of the two is the cue phi has to beat. phi is given the
clip's caption, as generation gives it the prompt (`--no-prompt`: the empty prompt); mae_phi is its curve's
distance to the true one in nats per frame.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rewas import ReWaSPipeline  # noqa: E402
from rewas.energy import control_target  # noqa: E402
from rewas.evaluate.metrics import window_energy  # noqa: E402
from rewas.frames import iter_frames, probe  # noqa: E402
from rewas.train.cache import read_manifest  # noqa: E402


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    return float(np.corrcoef(a, b)[0, 1]) if np.std(a) > 0 and np.std(b) > 0 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--corpus", required=True)
    parser.add_argument(
        "--split", default="test", help="test, val, camera_test, novel_test, styled_test, ...: CORPUS/<split>.jsonl"
    )
    parser.add_argument("--per-class", type=int, default=0, help="clips per class (0: all)")
    parser.add_argument("--out", help="write the rows and the summary here (JSON)")
    parser.add_argument("--no-prompt", action="store_true", help="phi without the caption (a phi that reads it)")
    args = parser.parse_args()

    pipe = ReWaSPipeline.from_pretrained(args.model)
    cfg = pipe.config
    frames_n, rate = cfg.audio.window_frames, cfg.audio.frame_rate
    rows, seen = [], {}
    for item in read_manifest(Path(args.corpus) / f"{args.split}.jsonl"):
        seen[item["class"]] = seen.get(item["class"], 0) + 1
        if args.per_class and seen[item["class"]] > args.per_class:
            continue
        truth = control_target(window_energy(item["audio"], cfg.audio)[None], cfg)[0].numpy()
        path = item["video"]
        phi = pipe.prepare(path, prompt="" if args.no_prompt else item["caption"]).curve[0, :frames_n].numpy()
        video = np.stack(list(iter_frames(path, cfg.video, probe(path)))).astype(np.float32)
        diff = np.abs(np.diff(video.mean(axis=-1), axis=0)).mean(axis=(1, 2))  # (T - 1,) between frames
        times = (np.arange(len(diff)) + 1.0) / cfg.video.fps
        centres = (np.arange(frames_n) + 0.5) / rate
        motion = np.interp(centres, times, diff)
        row = {
            "clip": Path(item["video"]).stem,
            "class": item["class"],
            "r_phi": pearson(phi, truth),
            "mae_phi": float(np.mean(np.abs(phi - truth[: len(phi)]))),
            "r_frame_diff": pearson(motion, truth),
            "r_log_frame_diff": pearson(np.log(motion + 1e-3), truth),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    naive = "r_frame_diff" if np.nanmean([r["r_frame_diff"] for r in rows]) >= np.nanmean(
        [r["r_log_frame_diff"] for r in rows]
    ) else "r_log_frame_diff"  # fmt: skip
    summary = {
        "clips": len(rows),
        "r_phi_mean": float(np.nanmean([r["r_phi"] for r in rows])),
        "mae_phi_mean": float(np.mean([r["mae_phi"] for r in rows])),
        "r_frame_diff_mean": float(np.nanmean([r["r_frame_diff"] for r in rows])),
        "r_log_frame_diff_mean": float(np.nanmean([r["r_log_frame_diff"] for r in rows])),
        "phi_beats_the_better_naive_cue_on": float(np.nanmean([r["r_phi"] > r[naive] for r in rows])),
        "split": args.split,
        "prompt": not args.no_prompt,
    }
    if args.out:
        Path(args.out).write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
