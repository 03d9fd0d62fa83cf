"""Re-train the embedded default model (`rewas/assets/default`) from nothing: one command, every stage.

    python scripts/train_default.py WORKDIR                 # all stages, in order (resumes where it stopped)
    python scripts/train_default.py WORKDIR --only phi      # one stage
    python scripts/train_default.py WORKDIR --jobs 2        # run independent stages side by side (2-core CPU)

Stages (each is a `rewas` CLI call; its log goes to WORKDIR/<stage>.log):

    corpus      procedural sounds + Debian's CC0 sonic-pi-samples, with rendered videos, each also drawn in a random
                style (`rewas corpus --debian --styles`)
    cache       video motion features, energies, MiniLM caption embeddings, log-mels, waveforms (train + test;
                phi_train: the training clips as rendered and in their random styles)
    vae         the mel VAE (random 1.28 s crops); sets scale_factor = 1 / std of the latents
    latents     re-encodes the cache's latents with the trained VAE
    unet        the text-to-audio UNet on those latents (text dropout 0.1 for classifier-free guidance); with `--gpu`
                continued by a second run (`unet-ft`: fresh optimizer, cosine LR to 0, weight EMA 0.999)
    adapter     the energy adapter on the frozen UNet (text dropout 0.3, as the paper)
    phi         video motion features -> energy, on the real timeline (on cache_phi_train)
    vocoder     the Griffin-Lim vocoder's magnitude net: mel -> STFT magnitude (the phase needs no weights), on true
                log-mels, then fine-tuned on the trained VAE's decodings (what it hears at inference)
    classifier  the sound-class classifier used by the evaluation (not part of the model)
    assemble    one model folder with every trained part, stored in fp16 -> WORKDIR/default (copy it to
                rewas/assets/default to ship it)

`vae -> latents -> unet -> adapter -> vocoder` is a chain (the vocoder's fine-tuning needs the VAE's latents);
`phi` and `classifier` only need the cache, so `--jobs 2` runs them beside the chain. The runs and their flags are
data: recipes/default_model.toml. Its step counts are the 2-core CPU recipe; `--gpu` swaps in the GPU recipes of
the UNet and the adapter, which is how the shipped ones were trained (see docs/training.md for the times);
`--scale K` multiplies every step count.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import torch

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "default_model.toml"


def load_recipe(path: Path = RECIPE) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    with open(path, "rb") as f:
        return tomllib.load(f)


STAGES = ["corpus", "cache", "vae", "latents", "unet", "adapter", "phi", "vocoder", "classifier", "assemble"]


def rewas(args: list[str], log: Path) -> None:
    print(f"[{log.stem}] rewas {' '.join(args)}", flush=True)
    with open(log, "a") as f:
        code = subprocess.call([sys.executable, "-m", "rewas", *args], stdout=f, stderr=subprocess.STDOUT)
    if code:
        raise SystemExit(f"[{log.stem}] failed (exit {code}); see {log}")


def runs_of(stage: str, gpu: bool, recipe: dict | None = None) -> list[str]:
    """The runs of a stage, in order: each follow-up run starts from the one before it; the last is the stage's
    model."""
    recipe = recipe or load_recipe()
    stages = {**recipe.get("stages", {}), **(recipe.get("gpu", {}).get("stages", {}) if gpu else {})}
    return list(stages.get(stage, [stage]))


def run_flags(run: str, gpu: bool, scale: float, recipe: dict) -> tuple[str | None, list[str]]:
    """-> (the model the run starts from as the recipe names it, its CLI flags with the step count scaled)."""
    table = recipe["runs"][run]
    flags = recipe.get("gpu", {}).get("runs", {}).get(run) if gpu else None
    flags = {k: v for k, v in (flags or table).items() if k not in ("model", "stage")}
    flags["steps"] = max(1, round(int(flags["steps"]) * scale))
    return table.get("model"), [item for key, value in flags.items() for item in (f"--{key}", str(value))]


def model_of(work: Path, run: str) -> str:
    return "small" if run == "small" else str(work / run / "model")


def run_stage(stage: str, work: Path, scale: float, gpu: bool = False) -> None:
    log = work / f"{stage}.log"
    cache = work / "cache_train"
    if stage == "corpus":
        if not (work / "corpus" / "manifest.jsonl").is_file():
            rewas(["corpus", str(work / "corpus"), "--clips-per-class", "60", "--debian", "--styles"], log)
    elif stage == "cache":
        corpus = work / "corpus"
        phi_manifest = corpus / "phi_train.jsonl"  # phi sees each training clip as rendered and in a random style
        if not phi_manifest.is_file():
            styled = corpus / "styled_train.jsonl"
            if not styled.is_file():
                raise SystemExit(f"[cache] {styled} is missing: draw the styled renders with `rewas corpus --styles`")
            phi_manifest.write_text((corpus / "train.jsonl").read_text() + styled.read_text())
        for split in ("train", "test", "phi_train"):
            if not (work / f"cache_{split}" / "cache.json").is_file():
                rewas(
                    [
                        "train",
                        "cache",
                        str(work / "corpus" / f"{split}.jsonl"),
                        "--model",
                        "small",
                        "-o",
                        str(work / f"cache_{split}"),
                    ],
                    log,
                )
    elif stage == "latents":
        rewas(["train", "latents", str(cache), "--model", model_of(work, "vae")], log)
    else:
        recipe = load_recipe()
        for run in runs_of(stage, gpu, recipe):
            base, flags = run_flags(run, gpu, scale, recipe)
            if base is not None and base != "small" and base != stage:  # another stage's model: its last run
                base = runs_of(base, gpu, recipe)[-1]
            model = [] if base is None else ["--model", model_of(work, base)]
            data = work / "cache_phi_train" if stage == "phi" else cache
            rewas(["train", stage, str(data), *model, "-o", str(work / run), *flags], log)


def assemble(work: Path) -> None:
    """The adapter run holds vae + unet + adapter; phi and the vocoder (its VAE fine-tuning) come from their own
    runs."""
    from rewas.pipeline import ReWaSPipeline

    pipe = ReWaSPipeline.from_pretrained(work / "adapter" / "model")
    others = {
        name: ReWaSPipeline.from_pretrained(work / runs_of(name, False)[-1] / "model") for name in ("phi", "vocoder")
    }

    def architecture(cfg):  # the VAE's mel_ceiling is its training data's, not a shape: phi's run never sets it
        return dataclasses.replace(cfg, vae=dataclasses.replace(cfg.vae, mel_ceiling=()))

    if any(architecture(other.config) != architecture(pipe.config) for other in others.values()):
        raise SystemExit("the runs were trained with different configurations")
    parts = {name: getattr(pipe, name) for name in ("video_encoder", "text_encoder", "unet", "adapter", "vae")}
    final = ReWaSPipeline(pipe.config, {**parts, **{name: getattr(run, name) for name, run in others.items()}})
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
    parser.add_argument(
        "--jobs", type=int, default=1, help="2: run phi and the classifier beside the vae->vocoder chain"
    )
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every step count")
    parser.add_argument("--gpu", action="store_true", help="the GPU recipes of the UNet and the adapter (as shipped)")
    args = parser.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    stages = args.only or STAGES
    chain = [s for s in ("corpus", "cache", "vae", "latents", "unet", "adapter", "vocoder") if s in stages]
    side = [s for s in ("phi", "classifier") if s in stages]
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
        assemble(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
