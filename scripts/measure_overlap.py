"""How well a long soundtrack holds together, for the pipeline's sampler and the alternatives that were tried.

    python scripts/measure_overlap.py                          # 4 prompts x 2 seeds, 20 s, flat energy, the default
    python scripts/measure_overlap.py --method multidiffusion  # one of METHODS
    python scripts/measure_overlap.py --square                 # a square-wave energy curve: is it still followed?

For each run, every decoding window's log-mel is recorded before the windows are joined. Printed, one JSON line per
run, then a summary line:
* overlap_r: the Pearson correlation of two neighbouring windows' log-mels over the frames they share (one value
  per overlap). Two unrelated sounds give about 0; one continuous sound gives about 1.
* novelty_peak_over_median: on the joined soundtrack, the distance between the mean log-mel profiles of the 2 s
  before and after each instant (10 ms steps); its peak over its median. A seam or a texture that changes at the
  window stride raises the peak.
* control_r (with --square): the Pearson correlation of the given curve and the energy of the generated audio.

Methods (docs/long_videos.md has the results):
* shifted-context: the pipeline's (rewas/timeline.py): shifted tiles, each predicted from a window with margins.
* shifted: the same without margins (SpotDiffusion): windows cut the timeline into non-overlapping tiles.
* multidiffusion / multidiffusion-triangular: fixed overlapping windows, their predictions averaged every step
  (uniform or triangular weights; Bar-Tal et al. 2023).
* continuation: windows one after another; each holds its overlap with what is already generated to it at every
  step (the known latent re-noised to the current level, RePaint-style) and continues it.
* one-pass: the denoiser on the whole timeline at once (possible for the small model; not for the paper's, whose
  attention is trained on 5.12 s).
* independent: the windows of the previous release, each from its own noise, crossfaded (run it at that commit:
  `git worktree add /tmp/old 3035fc4`, then this script as it was there).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import numpy as np
import torch

import rewas.pipeline as pipeline_mod
from rewas import ReWaSPipeline
from rewas.audio import log_mel
from rewas.diffusion import randn
from rewas.energy import waveform_energy
from rewas.evaluate.continuity import novelty_peak_over_median, overlap_agreement
from rewas.timeline import sample_timeline
from rewas.windows import fade_weights, window_starts

PROMPTS = ["steady heavy rain", "a car engine idling", "a dog barking", "wind blowing through trees"]
METHODS = ("shifted-context", "shifted", "multidiffusion", "multidiffusion-triangular", "continuation", "one-pass")


# ------------------------------------------------------------------ the alternatives, with sample_timeline's signature


def _averaged(triangular: bool):
    def run(denoise, sampler, shape, hint, window, *, steps, context, batch_size, generator, eta, device, dtype,
            callback):  # fmt: skip
        length = shape[2]
        starts = window_starts(length, window, window // 2)
        sampler.set_timesteps(steps, device=device)
        x = randn(shape, generator, device) * sampler.init_noise_sigma
        for i, t in enumerate(sampler.timesteps):
            total, weights = torch.zeros_like(x), torch.zeros(length)
            for s in starts:
                pred = denoise(x[:, :, s : s + window].to(dtype), t, hint[:, :, s : s + window].to(dtype)).float()
                w = (
                    fade_weights(window, window // 2, window // 2).float()
                    if triangular and len(starts) > 1
                    else torch.ones(window)
                )
                total[:, :, s : s + window] += pred * w.view(1, 1, -1, 1)
                weights[s : s + window] += w
            x = sampler.step(total / weights.view(1, 1, -1, 1), t, x, eta=eta, generator=generator)
            if callback:
                callback(i + 1, steps)
        return x

    return run


def _continuation(denoise, sampler, shape, hint, window, *, steps, context, batch_size, generator, eta, device, dtype,
                  callback):  # fmt: skip
    length = shape[2]
    starts = window_starts(length, window, round(pipeline_mod.MIN_OVERLAP_S * 25))
    out = torch.zeros(shape)
    done = 0  # timeline frames generated so far
    for s in starts:
        known = done - s  # leading frames of this window that are already generated
        sampler.set_timesteps(steps, device=device)
        x = randn((1, shape[1], window, shape[3]), generator, device)
        fixed_noise = randn((1, shape[1], max(known, 0), shape[3]), generator, device)
        h = hint[:, :, s : s + window].to(dtype)
        for t in sampler.timesteps:
            if known > 0:  # the known part at the current noise level
                alpha_bar = sampler.schedule.alphas_cumprod[t]
                x[:, :, :known] = alpha_bar.sqrt() * out[:, :, s:done] + (1 - alpha_bar).sqrt() * fixed_noise
            x = sampler.step(denoise(x.to(dtype), t, h).float(), t, x, eta=eta, generator=generator)
        if known > 0:
            x[:, :, :known] = out[:, :, s:done]
        out[:, :, s : s + window] = x
        done = s + window
        if callback:
            callback(steps, steps)
    return out


def _one_pass(denoise, sampler, shape, hint, window, *, steps, context, batch_size, generator, eta, device, dtype,
              callback):  # fmt: skip
    return sample_timeline(denoise, sampler, shape, hint, shape[2], steps=steps, context=0, batch_size=1,
                           generator=generator, eta=eta, device=device, dtype=dtype, callback=callback)  # fmt: skip


def _shifted(denoise, sampler, shape, hint, window, *, context, **kwargs):
    return sample_timeline(denoise, sampler, shape, hint, window, context=0, **kwargs)


def as_timelines(method):
    """A single-timeline method in the place of the pipeline's `sample_timelines` (one clip at a time)."""

    def run(denoise, samplers, shapes, hints, window, *, generators, texts=None, negatives=None, **kwargs):
        return [method(denoise, samplers[0], shapes[0], hints[0], window, generator=generators[0], **kwargs)]

    return run


ALTERNATIVES = {
    "shifted": _shifted,
    "multidiffusion": _averaged(False),
    "multidiffusion-triangular": _averaged(True),
    "continuation": _continuation,
    "one-pass": _one_pass,
}


# ------------------------------------------------------------------ measuring


def measure(pipe: ReWaSPipeline, prompt: str, seed: int, seconds: float, curve: np.ndarray, steps) -> dict:
    cfg = pipe.config
    windows = []
    decode_mel = pipe.decode_mel

    def recording(latent):  # every decoding window's log-mel, before the windows are joined
        mel = decode_mel(latent)
        windows.append(mel[0, 0].float().cpu().numpy())
        return mel

    pipe.decode_mel = recording
    try:
        result = pipe(energy=curve, prompt=prompt, seed=seed, steps=steps)
    finally:
        del pipe.decode_mel
    d = cfg.vae.downsample
    starts = pipe.decode_windows(pipe.timeline_length(len(result.waveform)))[0]
    overlap_r = overlap_agreement(windows, [s * d for s in starts])
    wav = torch.from_numpy(result.waveform)[None]
    mel = log_mel(wav, cfg.audio)[0].numpy().T  # (frames, n_mels)
    made = waveform_energy(wav, cfg.audio)[0].numpy()
    n = min(len(made), len(curve))
    control_r = float(np.corrcoef(made[:n], curve[:n])[0, 1]) if np.ptp(curve) > 0 else None
    return {
        "prompt": prompt,
        "seed": seed,
        "seconds": seconds,
        "windows": len(windows),
        "overlap_r": [round(r, 3) for r in overlap_r],
        "novelty_peak_over_median": round(novelty_peak_over_median(mel, cfg.audio.frame_rate), 3),
        "control_r": None if control_r is None else round(control_r, 3),
        "seconds_taken": round(result.timings["total"], 2),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default")
    p.add_argument("--method", default="shifted-context", choices=METHODS)
    p.add_argument("--prompts", nargs="+", default=PROMPTS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--level", type=float, default=-6.0, help="the flat energy curve's value (mean log-mel)")
    p.add_argument("--square", action="store_true", help="a square wave (-4 / -10, period 2 s) instead of flat")
    p.add_argument("--steps", type=int, help="sampler steps (default: the model's)")
    p.add_argument("--context", type=float, help="seconds of context around each tile (default: the pipeline's)")
    p.add_argument("--margin", type=float, help="seconds sampled past both ends (default: the pipeline's)")
    args = p.parse_args()
    if args.context is not None:
        pipeline_mod.TILE_CONTEXT_S = args.context
    if args.margin is not None:
        pipeline_mod.END_MARGIN_S = args.margin
    if args.method in ALTERNATIVES:
        pipeline_mod.sample_timelines = as_timelines(ALTERNATIVES[args.method])
    pipe = ReWaSPipeline.from_pretrained(args.model)
    rate = pipe.config.audio.frame_rate
    frames = round(args.seconds * rate)
    if args.square:
        curve = np.where((np.arange(frames) // round(rate)) % 2 == 0, -4.0, -10.0)
    else:
        curve = np.full(frames, args.level)
    rows = []
    for prompt in args.prompts:
        for seed in args.seeds:
            rows.append(measure(pipe, prompt, seed, args.seconds, curve, args.steps))
            print(json.dumps(rows[-1]), flush=True)
    every_r = [r for row in rows for r in row["overlap_r"]]
    summary = {
        "method": args.method,
        "context_s": pipeline_mod.TILE_CONTEXT_S,
        "margin_s": pipeline_mod.END_MARGIN_S,
        "runs": len(rows),
        "overlap_r_median": round(statistics.median(every_r), 3) if every_r else None,
        "overlap_r_min": round(min(every_r), 3) if every_r else None,
        "novelty_peak_over_median_median": round(statistics.median(r["novelty_peak_over_median"] for r in rows), 3),
        "novelty_peak_over_median_max": round(max(r["novelty_peak_over_median"] for r in rows), 3),
        "control_r_median": round(statistics.median(r["control_r"] for r in rows), 3) if args.square else None,
        "seconds_per_run_median": round(statistics.median(r["seconds_taken"] for r in rows), 2),
    }
    print(json.dumps({"summary": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
