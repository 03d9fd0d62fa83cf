"""Clicks, dropouts and overs in what the model really makes (`rewas.evaluate.defects`).

    python scripts/measure_defects.py --out WORK/defects                       # long steady clips, end to end
    python scripts/measure_defects.py --out WORK/defects --seconds 20 --seeds 0 1 2 3
    python scripts/measure_defects.py --out WORK/dec --decoded WORK/cache_test  # the vocoder alone, decoded mels

Steady mode: each prompt of PROMPTS x each seed x each curve (a flat one at -4.5 nats, and a slow one from -6
to -3 with a period of 10 s), SECONDS long, generated through the Python API without a video (the curve sets
the duration). Decoded mode: every latent of a `rewas train cache` folder (real clips' latents, encoded by the
model's VAE) decoded by the model and vocoded, to count how often the vocoder goes over full scale on the mels
the decoder really gives.

Each clip's waveform before the peak limiter is kept to count overs; OUT/clips.jsonl has one line per clip, and
OUT/summary.json the totals. `--save-latents` also writes each clip's latent (OUT/latents/*.pt), so a change to
the decoder or the vocoder can be measured again without sampling (`--from-latents`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from rewas.audio import limit_peaks, write_wav
from rewas.evaluate.defects import detect
from rewas.pipeline import ReWaSPipeline
from rewas.vocoder import vocode

PROMPTS = [
    "an engine humming",
    "steady heavy rain",
    "wind blowing through trees",
    "a crackling fire",
    "insects buzzing",
    "an ambient drone",
]
CURVES = {
    "flat": lambda t: np.full_like(t, -4.5),
    "slow": lambda t: -4.5 + 1.5 * np.sin(2 * np.pi * t / 10.0),
}


def decode_both(pipe: ReWaSPipeline, latent: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(1, z, L, F) latent -> (waveform as heard, the same before the peak limiter), both (L * 4 * hop,)."""
    mel = pipe.decode_latent_mel(latent)  # (1, n_mels, frames)
    audio = pipe.config.audio
    raw = vocode(pipe.vocoder, mel, audio.hop_length, sample_rate=audio.sample_rate, limit=False)
    heard = limit_peaks(raw, audio.sample_rate)  # what vocode(limit=True) gives: Griffin-Lim's phase is seeded
    return heard[0].numpy(), raw[0].numpy()


def steady(pipe, args, out: Path) -> list[dict]:
    rows = []
    times = np.arange(0, args.seconds + 0.01, 0.01)
    (out / "latents").mkdir(parents=True, exist_ok=True)
    for curve_name in args.curves:
        values = CURVES[curve_name](times)
        for prompt in args.prompts:
            for seed in args.seeds:
                name = f"{curve_name}_{prompt.replace(' ', '_')}_{seed}"
                path = out / "latents" / f"{name}.pt"
                start = time.perf_counter()
                if args.from_latents and path.is_file():
                    latent = torch.load(path)
                else:
                    latent = pipe(prompt=prompt, energy=(times, values), seed=seed, steps=args.steps).latent
                    if args.save_latents:
                        torch.save(latent, path)
                heard, raw = decode_both(pipe, latent)
                heard, raw = heard[: round(args.seconds * 16000)], raw[: round(args.seconds * 16000)]
                found = detect(heard, unlimited=raw)
                if args.wav:
                    write_wav(out / f"{name}.wav", heard)
                rows.append(
                    {
                        "clip": name,
                        "prompt": prompt,
                        "seed": seed,
                        "curve": curve_name,
                        **found.summary(),
                        "dropout_times": found.dropouts[:20],
                        "click_times": found.clicks[:20],
                        "seconds": round(time.perf_counter() - start, 2),
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    return rows


def decoded(pipe, args, out: Path) -> list[dict]:
    from rewas.train.cache import CachedClips

    data = CachedClips(args.decoded)
    rows = []
    limit = len(data) if args.limit is None else min(len(data), args.limit)
    for i in range(limit):
        item = data[i]
        latent = torch.as_tensor(np.asarray(item["latents"]), dtype=torch.float32)[None]
        heard, raw = decode_both(pipe, latent)
        found = detect(heard, unlimited=raw)
        rows.append({"clip": i, **found.summary()})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--dtype", default="fp32", help="the diffusion model's precision: fp32, bf16 or auto")
    parser.add_argument("--out", required=True)
    parser.add_argument("--prompts", nargs="+", default=PROMPTS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3])
    parser.add_argument("--curves", nargs="+", choices=sorted(CURVES), default=sorted(CURVES))
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--steps", type=int, help="sampler steps (default: the model's)")
    parser.add_argument("--wav", action="store_true", help="also write each clip as heard")
    parser.add_argument("--save-latents", action="store_true")
    parser.add_argument("--from-latents", action="store_true", help="reuse OUT/latents/*.pt where present")
    parser.add_argument("--decoded", help="a `rewas train cache` folder: vocode its latents' decodings instead")
    parser.add_argument("--limit", type=int, help="at most this many clips of --decoded")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_grad_enabled(False)
    pipe = ReWaSPipeline.from_pretrained(args.model, dtype=args.dtype)
    rows = decoded(pipe, args, out) if args.decoded else steady(pipe, args, out)
    if not rows:
        print("no clips measured", file=sys.stderr)
        return 2
    (out / "clips.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = {
        "clips": len(rows),
        "with_dropouts": sum(r["dropouts"] > 0 for r in rows),
        "with_more_than_one_click": sum(r["clicks"] > 1 for r in rows),
        "max_dropouts": max(r["dropouts"] for r in rows),
        "max_clicks": max(r["clicks"] for r in rows),
        "with_overs": sum(r["overs"] > 0 for r in rows),
        "share_without_overs": round(sum(r["overs"] == 0 for r in rows) / max(1, len(rows)), 4),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
