"""Does the embedded default model do its job? The three checks of its model card (docs/default_model.md), on the
corpus's test split.

    python scripts/evaluate_default.py --corpus WORK/corpus --classifier WORK/classifier/model --out WORK/eval

For every test clip (sources never heard in training) the model generates the clip's soundtrack from its video and
caption twice, with the same seed: with the energy control predicted from the video, and with the control removed
(`control_scale=0`: the UNet follows the caption alone). Then:

* control: energy MAE between each generated clip and the control curve the pipeline used (phi's curve from the
  video), with control vs without (same curve) -- the "with" figure should be at most half the "without";
* text: the corpus classifier's accuracy on the generated clips (prompted class) beside its accuracy on the real
  test clips, over every class of the test split and over the 20 procedural classes;
* video: AV-Align (`rewas evaluate`'s definition) of the test video with each generated clip;
* sound: how many samples of each clip went over full scale before the vocoder's peak limiter.

`--split val` runs the same on the validation split, to choose settings without looking at the test split.
`--dtype bf16` measures a speed path against fp32; `--seed 1` gives the seed-to-seed noise it is judged by.

Writes OUT/summary.json and OUT/summary.md (and the generated WAVs, OUT/<condition>/*.wav).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from rewas.audio import load_audio, write_wav
from rewas.energy import waveform_energy
from rewas.evaluate import metrics
from rewas.evaluate.embedders import ClassifierBundle
from rewas.pipeline import ReWaSPipeline
from rewas.train.cache import read_manifest
from rewas.train.corpus import CLASSES
from rewas.vocoder import vocode

CONDITIONS = {"video_energy": 1.0, "no_control": 0.0}


def control_mae(wav: np.ndarray, curve: np.ndarray, cfg) -> float:
    """Mean |energy(generated) - control curve| over the first window (512 frames)."""
    energy = waveform_energy(torch.from_numpy(wav[: cfg.window_samples]).float(), cfg).numpy()
    n = min(len(energy), len(curve), cfg.window_frames)
    return float(np.mean(np.abs(energy[:n] - curve[:n])))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument(
        "--corpus",
        required=True,
        help="folder made by `rewas corpus` (uses its test.jsonl, or val.jsonl with --split val)",
    )
    parser.add_argument(
        "--split",
        default="test",
        choices=["test", "val"],
        help="val: the validation split, to choose settings without looking at the test split",
    )
    parser.add_argument("--classifier", required=True, help="folder made by `rewas train classifier`")
    parser.add_argument("--out", required=True)
    parser.add_argument("--per-class", type=int, default=0, help="at most this many clips per class (0: all)")
    parser.add_argument("--steps", type=int, help="sampler steps (default: the model's)")
    parser.add_argument("--seed", type=int, default=0, help="clip n is generated with seed SEED + n")
    parser.add_argument("--dtype", default="fp32", help="the diffusion model's precision: fp32, bf16 or auto")
    args = parser.parse_args()

    out = Path(args.out)
    items = read_manifest(Path(args.corpus) / f"{args.split}.jsonl")
    if args.per_class:
        seen = collections.Counter()
        items = [x for x in items if (seen.update([x["class"]]) or seen[x["class"]] <= args.per_class)]
    pipe = ReWaSPipeline.from_pretrained(args.model, dtype=args.dtype)
    cfg = pipe.config.audio
    classifier = ClassifierBundle.from_pretrained(args.classifier)
    procedural = {c.name for c in CLASSES}
    rows = []
    t0 = time.perf_counter()
    for n, item in enumerate(items):
        row = {"video": item["video"], "class": item["class"], "caption": item["caption"]}
        real = load_audio(item["audio"], cfg.sample_rate)
        row["real_predicted"] = classifier.predict(real)
        for cond, scale in CONDITIONS.items():
            result = pipe(
                item["video"], prompt=item["caption"], seed=args.seed + n, steps=args.steps, control_scale=scale
            )
            wav_path = out / cond / (Path(item["video"]).stem + ".wav")
            wav_path.parent.mkdir(parents=True, exist_ok=True)
            write_wav(wav_path, result.waveform, result.sample_rate)
            unlimited = vocode(pipe.vocoder, pipe.decode_latent_mel(result.latent), cfg.hop_length, limit=False)
            row[cond] = {
                "overs": int((unlimited.abs() > 1.0).sum()),  # samples over full scale before the peak limiter
                "control_mae": control_mae(result.waveform, result.energy, cfg),
                "energy_mae_vs_real": metrics.energy_mae(wav_path, item["audio"], cfg),
                "av_align": metrics.av_align(item["video"], wav_path),
                "predicted": classifier.predict(result.waveform),
                "seconds": result.timings["total"],
            }
        rows.append(row)
        print(
            f"[{n + 1}/{len(items)}] {item['class']}: "
            + ", ".join(
                f"{c} mae {row[c]['control_mae']:.3f} av {row[c]['av_align']} -> {row[c]['predicted']}"
                for c in CONDITIONS
            ),
            f"(real -> {row['real_predicted']}) {time.perf_counter() - t0:.0f} s",
            flush=True,
        )

    def mean(values):
        values = [v for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))]
        return float(np.mean(values)) if values else None

    def accuracy(subset, key):
        hits = [(r[key] if key == "real_predicted" else r[key]["predicted"]) == r["class"] for r in subset]
        return mean([float(h) for h in hits])

    subsets = {"all": rows, "procedural": [r for r in rows if r["class"] in procedural]}
    summary = {
        "model": args.model,
        "dtype": str(pipe.dtype).removeprefix("torch."),
        "seed": args.seed,
        "split": args.split,
        "items": len(rows),
        "classes": {k: len({r["class"] for r in v}) for k, v in subsets.items()},
        "control_mae": {c: mean([r[c]["control_mae"] for r in rows]) for c in CONDITIONS},
        "energy_mae_vs_real": {c: mean([r[c]["energy_mae_vs_real"] for r in rows]) for c in CONDITIONS},
        "av_align": {c: mean([r[c]["av_align"] for r in rows]) for c in CONDITIONS},
        "class_acc": {
            k: {"real": accuracy(v, "real_predicted"), **{c: accuracy(v, c) for c in CONDITIONS}}
            for k, v in subsets.items()
        },
        "seconds_per_clip": {c: mean([r[c]["seconds"] for r in rows]) for c in CONDITIONS},
        "share_without_overs": {c: mean([float(r[c]["overs"] == 0) for r in rows]) for c in CONDITIONS},
    }
    summary["control_mae_ratio"] = summary["control_mae"]["video_energy"] / summary["control_mae"]["no_control"]
    (out / "summary.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=2))
    lines = [
        f"{args.split.capitalize()} split: {len(rows)} clips, {summary['classes']['all']} classes "
        f"({summary['classes']['procedural']} procedural)",
        "",
        "| | with video energy | control removed |",
        "|---|---|---|",
    ]
    lines += [
        f"| energy MAE to the control curve ↓ | {summary['control_mae']['video_energy']:.3f} "
        f"| {summary['control_mae']['no_control']:.3f} |",
        f"| energy MAE to the real audio ↓ | {summary['energy_mae_vs_real']['video_energy']:.3f} "
        f"| {summary['energy_mae_vs_real']['no_control']:.3f} |",
        f"| AV-Align ↑ | {summary['av_align']['video_energy']:.3f} | {summary['av_align']['no_control']:.3f} |",
        "| clips with no sample over full scale before the limiter ↑ | "
        + " | ".join(f"{summary['share_without_overs'][c]:.1%}" for c in CONDITIONS)
        + " |",
    ]
    for k in subsets:
        acc = summary["class_acc"][k]
        lines.append(
            f"| classifier accuracy, {k} classes ({summary['classes'][k]}) ↑ (real clips: {acc['real']:.1%}) "
            f"| {acc['video_energy']:.1%} | {acc['no_control']:.1%} |"
        )
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
