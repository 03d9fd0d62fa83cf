"""Re-train the embedded default model (`rewas/assets/default`) from nothing: one command, every stage.

    python scripts/train_default.py WORKDIR                 # all stages, in order (resumes where it stopped)
    python scripts/train_default.py WORKDIR --only vocoder  # one stage
    python scripts/train_default.py WORKDIR --jobs 2        # run independent stages side by side (2-core CPU)

Stages (each is a `rewas` CLI call; its log goes to WORKDIR/<stage>.log):

    corpus      procedural sounds + Debian's CC0 sonic-pi-samples, with rendered videos (`rewas corpus --debian`)
    cache       video motion features, energies, MiniLM caption embeddings, log-mels, waveforms (train + test)
    vae         the mel VAE (random 1.28 s crops); sets scale_factor = 1 / std of the latents
    latents     re-encodes the cache's latents with the trained VAE
    unet        the text-to-audio UNet on those latents (text dropout 0.1 for classifier-free guidance)
    adapter     the energy adapter on the frozen UNet (text dropout 0.3, as the paper)
    phi         video motion features -> energy, on the real timeline
    classifier  the sound-class classifier used by the evaluation (not part of the model)
    assemble    one model folder with every trained part, stored in fp16 -> WORKDIR/default (copy it to
                rewas/assets/default to ship it)

The default model's vocoder is weight-free (Griffin-Lim). `--only vocoder` trains the HiFi-GAN alternative on the
same cache (a `small` model with `vocoder.kind = "hifigan"`), and `assemble --hifigan` ships it instead.

`vae -> latents -> unet -> adapter` is a chain; `phi` and `classifier` (and `vocoder`) only need the cache, so
`--jobs 2` runs them beside the chain. The step counts in TRAIN are the 2-core CPU recipe; `--gpu` swaps in the
GPU recipe of the UNet (GPU below), which is how the shipped UNet was trained (see the README for the times);
`--scale K` multiplies every step count.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import torch

# stage -> (depends on, CLI arguments after `rewas train <what> <cache>`)
TRAIN = {
    "vae": ("cache", "small", ["--steps", "1000", "--checkpoint-every", "250", "--batch-size", "8", "--lr", "1e-3", "--warmup", "50", "--crop-frames", "128"]),
    "unet": ("latents", "vae", ["--steps", "2200", "--checkpoint-every", "200", "--batch-size", "16", "--lr", "3e-4", "--warmup", "100",
                                "--crop-frames", "128", "--text-dropout", "0.1"]),
    "adapter": ("unet", "unet", ["--steps", "1500", "--checkpoint-every", "250", "--batch-size", "16", "--lr", "3e-4", "--warmup", "50",
                                 "--crop-frames", "128", "--text-dropout", "0.3"]),
    "phi": ("cache", "small", ["--steps", "5000", "--checkpoint-every", "1000", "--batch-size", "32", "--lr", "1e-3", "--warmup", "100"]),
    "vocoder": ("cache", "small-hifigan", ["--steps", "4000", "--checkpoint-every", "500", "--batch-size", "8", "--lr", "5e-4", "--warmup", "100", "--crop-frames", "64"]),
    "classifier": ("cache", None, ["--steps", "700", "--batch-size", "16", "--lr", "1e-3", "--warmup", "100"]),
}
# `--gpu`: the shipped UNet was trained on one GPU (H200: 2.5 min) with bigger batches of longer crops; the other
# stages, the adapter included, ran on the 2-core CPU.
GPU = {
    "unet": ["--steps", "2000", "--checkpoint-every", "500", "--batch-size", "64", "--lr", "3e-4", "--warmup", "200",
             "--crop-frames", "256", "--text-dropout", "0.1", "--num-workers", "6", "--log-every", "100"],
}
STAGES = ["corpus", "cache", "vae", "latents", "unet", "adapter", "phi", "vocoder", "classifier", "assemble"]
DEFAULT_STAGES = [s for s in STAGES if s != "vocoder"]


def rewas(args: list[str], log: Path) -> None:
    print(f"[{log.stem}] rewas {' '.join(args)}", flush=True)
    with open(log, "a") as f:
        code = subprocess.call([sys.executable, "-m", "rewas", *args], stdout=f, stderr=subprocess.STDOUT)
    if code:
        raise SystemExit(f"[{log.stem}] failed (exit {code}); see {log}")


def model_of(work: Path, run: str) -> str:
    if run == "small":
        return "small"
    if run == "small-hifigan":  # the `small` preset with a trainable HiFi-GAN vocoder, written once as a folder
        folder = work / "small-hifigan"
        if not (folder / "config.json").is_file():
            from rewas.config import VocoderConfig, small
            from rewas.pipeline import ReWaSPipeline

            hifigan = VocoderConfig(upsample_initial_channel=128, resblock_kernel_sizes=(3, 7), resblock_dilations=((1, 3), (1, 3)))
            ReWaSPipeline.from_config(small().replace(vocoder=hifigan)).save_pretrained(folder)
        return str(folder)
    return str(work / run / "model")


def run_stage(stage: str, work: Path, scale: float, gpu: bool = False) -> None:
    log = work / f"{stage}.log"
    cache = work / "cache_train"
    if stage == "corpus":
        if not (work / "corpus" / "manifest.jsonl").is_file():
            rewas(["corpus", str(work / "corpus"), "--clips-per-class", "60", "--debian"], log)
    elif stage == "cache":
        for split in ("train", "test"):
            if not (work / f"cache_{split}" / "cache.json").is_file():
                rewas(["train", "cache", str(work / "corpus" / f"{split}.jsonl"), "--model", "small",
                       "-o", str(work / f"cache_{split}")], log)
    elif stage == "latents":
        rewas(["train", "latents", str(cache), "--model", model_of(work, "vae")], log)
    else:
        _, base, args = TRAIN[stage]
        args = list(GPU[stage] if gpu and stage in GPU else args)
        i = args.index("--steps")
        args[i + 1] = str(max(1, round(int(args[i + 1]) * scale)))
        model = [] if base is None else ["--model", model_of(work, base)]
        rewas(["train", stage, str(cache), *model, "-o", str(work / stage), *args], log)


def assemble(work: Path, hifigan: bool = False) -> None:
    """The adapter run holds vae + unet + adapter; phi comes from its own run, the vocoder from the `small` preset
    (Griffin-Lim) or, with `hifigan`, from the vocoder run."""
    from rewas.config import small
    from rewas.pipeline import ReWaSPipeline
    from rewas.vocoder import build_vocoder

    pipe = ReWaSPipeline.from_pretrained(work / "adapter" / "model")
    phi = ReWaSPipeline.from_pretrained(work / "phi" / "model")
    vocoder_run = ReWaSPipeline.from_pretrained(work / "vocoder" / "model") if hifigan else None
    config = pipe.config.replace(vocoder=vocoder_run.config.vocoder if hifigan else small().vocoder)
    for other in (phi, vocoder_run):
        if other is not None and other.config.replace(vocoder=config.vocoder) != config:
            raise SystemExit("the runs were trained with different configurations")
    parts = {**{name: getattr(pipe, name) for name in ("video_encoder", "text_encoder", "unet", "adapter", "vae")},
             "phi": phi.phi, "vocoder": vocoder_run.vocoder if hifigan else build_vocoder(config.vocoder, config.audio)}
    final = ReWaSPipeline(config, parts)
    out = work / "default"
    if out.exists():
        shutil.rmtree(out)
    final.save_pretrained(out, dtype=torch.float16)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"[assemble] wrote {out} ({size / 1e6:.1f} MB)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workdir")
    parser.add_argument("--only", choices=STAGES, action="append", help="run only these stages (repeatable)")
    parser.add_argument("--jobs", type=int, default=1, help="2: run vocoder/phi/classifier beside the vae->adapter chain")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every step count")
    parser.add_argument("--gpu", action="store_true", help="the GPU recipe of the UNet (as shipped)")
    parser.add_argument("--hifigan", action="store_true", help="assemble with the trained HiFi-GAN (stage vocoder)")
    args = parser.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    stages = args.only or DEFAULT_STAGES
    chain = [s for s in ("corpus", "cache", "vae", "latents", "unet", "adapter") if s in stages]
    side = [s for s in ("phi", "vocoder", "classifier") if s in stages]
    for stage in [s for s in chain if s in ("corpus", "cache")]:
        run_stage(stage, work, args.scale, args.gpu)
    chain = [s for s in chain if s not in ("corpus", "cache")]
    if args.jobs > 1 and side:
        worker = threading.Thread(target=lambda: [run_stage(s, work, args.scale, args.gpu) for s in side])
        worker.start()
        for stage in chain:
            run_stage(stage, work, args.scale, args.gpu)
        worker.join()
    else:
        for stage in chain + side:
            run_stage(stage, work, args.scale, args.gpu)
    if "assemble" in stages:
        assemble(work, args.hifigan)
    return 0


if __name__ == "__main__":
    sys.exit(main())
