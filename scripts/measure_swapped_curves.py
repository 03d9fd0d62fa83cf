"""Does the model follow a curve that is not its class's own? The "swapped curves" measurement of the issue on the
embedded model's control (docs/default_model.md).

    python scripts/measure_swapped_curves.py --corpus WORK/corpus --out WORK/swapped [--per-class 3]

Every test clip of the corpus (sources never heard in training) is generated from its own video and caption, but
steered by the control curve of a clip of another class: the clips are taken class by class, and clip i gets the
curve of clip i + n/2 (n clips), so that every curve comes from another class. The curve is what the adapter is
trained on (`energy.control_target` of that clip's real audio, first 5.12 s). Twice, at the same seed: with the
control, and with it removed (`control_scale=0`). Printed and written to OUT/summary.json:

* r: the Pearson correlation, per clip, of the generated audio's energy with the curve it was given; the mean
  over clips;
* the control ratio: energy MAE to the given curve with the control over the same without it (lower: closer).

`--own` gives every clip its own real curve instead: what the model would do with a perfect φ, the bound on the
control ratio that the adapter, the decoder and the vocoder leave.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rewas import ReWaSPipeline  # noqa: E402
from rewas.energy import control_target, waveform_energy  # noqa: E402
from rewas.evaluate.metrics import window_energy  # noqa: E402
from rewas.train.cache import read_manifest  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--corpus", required=True, help="folder made by `rewas corpus` (its test.jsonl)")
    parser.add_argument("--split", default="test", choices=["test", "val"])
    parser.add_argument("--out", required=True)
    parser.add_argument("--per-class", type=int, default=3, help="clips per class (0: all)")
    parser.add_argument("--steps", type=int, help="sampler steps (default: the model's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--own", action="store_true", help="steer every clip by its own real curve (a perfect φ)")
    args = parser.parse_args()

    pipe = ReWaSPipeline.from_pretrained(args.model)
    cfg = pipe.config
    items, seen = [], {}
    for item in sorted(read_manifest(Path(args.corpus) / f"{args.split}.jsonl"), key=lambda it: it["class"]):
        seen[item["class"]] = seen.get(item["class"], 0) + 1
        if not args.per_class or seen[item["class"]] <= args.per_class:
            items.append(item)
    n = len(items)
    frames = cfg.audio.window_frames

    def curve_of(item) -> np.ndarray:
        return control_target(window_energy(item["audio"], cfg.audio)[None], cfg)[0].numpy()

    rows = []
    for i, item in enumerate(items):
        donor = item if args.own else items[(i + n // 2) % n]
        curve = curve_of(donor)
        row = {"clip": Path(item["video"]).stem, "class": item["class"], "curve_from": donor["class"]}
        for name, scale in (("control", 1.0), ("no_control", 0.0)):
            result = pipe(item["video"], prompt=item["caption"], energy=curve, seed=args.seed, steps=args.steps,
                          control_scale=scale)  # fmt: skip
            energy = waveform_energy(torch.from_numpy(result.waveform[: cfg.audio.window_samples]).float(), cfg.audio)
            energy = energy.numpy()[:frames]
            m = min(len(energy), len(curve))
            row[f"r_{name}"] = float(np.corrcoef(energy[:m], curve[:m])[0, 1])
            row[f"mae_{name}"] = float(np.mean(np.abs(energy[:m] - curve[:m])))
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {
        "clips": n,
        "r_control_mean": float(np.nanmean([r["r_control"] for r in rows])),
        "r_no_control_mean": float(np.nanmean([r["r_no_control"] for r in rows])),
        "control_ratio": float(
            np.mean([r["mae_control"] for r in rows]) / np.mean([r["mae_no_control"] for r in rows])
        ),
        "model": args.model,
        "split": args.split,
        "per_class": args.per_class,
        "curves": "own" if args.own else "swapped",
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
