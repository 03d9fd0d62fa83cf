"""The figures of docs/studio.md: how the embedded default model follows the studio's controls.

    python scripts/measure_controls.py [--model default] [--seeds 4] [--steps 20] [--parts mute,energy,negative]

* mute: the level of 1.0-2.5 s of a 4 s bouncing-ball take with and without the range muted, for the model alone
  (the silent range given as the curve itself) and with `--mute` (the curve edit plus the output gate);
* energy-from: the correlation of a take's energy with a held-out recording's (5 s, and stretched onto 8 s);
* negative prompt: the cosine similarity of a take's timbre (centred mean log-mel) to the negative concept's
  (4 takes of the negative prompt itself), without and with `negative_prompt`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rewas import ReWaSPipeline, samples  # noqa: E402
from rewas.audio import log_mel, write_wav  # noqa: E402
from rewas.config import AudioConfig  # noqa: E402
from rewas.edits import parse  # noqa: E402
from rewas.energy import reference_curve, waveform_energy  # noqa: E402

SR = 16000


def level_db(wav: np.ndarray, a: float, b: float) -> float:
    return float(10 * np.log10(np.mean(wav[round(a * SR) : round(b * SR)] ** 2) + 1e-12))


def profile(wav: np.ndarray) -> np.ndarray:
    p = log_mel(torch.from_numpy(wav).double()[None], AudioConfig())[0].mean(dim=1).numpy()
    return p - p.mean()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--parts", default="mute,energy,negative", help="which tables, comma-separated")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    pipe = ReWaSPipeline.from_pretrained(args.model)
    seeds, steps = range(args.seeds), args.steps
    work = Path(tempfile.mkdtemp(prefix="rewas-controls-"))
    ball, still = work / "ball.mp4", work / "still.mp4"
    samples.write_video(ball, samples.bouncing_ball_frames(bounce_period=0.8), duration=4.0, fps=25)
    samples.write_video(still, samples.flash_frames([], size=(64, 64)), 5.0, 25)

    if "mute" in parts:
        mute_table(pipe, ball, seeds, steps)
    if "energy" in parts:
        energy_table(pipe, work, still, seeds, steps)
    if "negative" in parts:
        negative_table(pipe, still, seeds, steps)


def mute_table(pipe, ball, seeds, steps) -> None:
    print("## mute 1.0-2.5 s: dB quieter than the same take without it")
    print("| prompt | model alone, per seed | with --mute (gate), per seed |\n|---|---|---|")
    curve = pipe.prepare(ball).curve[0].numpy()
    silent_curve = pipe.prepare(ball, energy=curve, edits=[parse("mute", "1.0-2.5")]).curve[0].numpy()
    for prompt in ("wood knocks", "a siren wailing", "rain falling", "engine running"):
        alone, gated = [], []
        for seed in seeds:
            plain = pipe(ball, prompt=prompt, energy=curve, seed=seed, steps=steps).waveform
            quiet = pipe(ball, prompt=prompt, energy=silent_curve, seed=seed, steps=steps).waveform
            muted = pipe(ball, prompt=prompt, edits=[parse("mute", "1.0-2.5")], seed=seed, steps=steps).waveform
            base = pipe(ball, prompt=prompt, seed=seed, steps=steps).waveform
            alone.append(level_db(plain, 1.0, 2.5) - level_db(quiet, 1.0, 2.5))
            gated.append(level_db(base, 1.0, 2.5) - level_db(muted, 1.0, 2.5))
        print(f"| {prompt} | {', '.join(f'{d:.0f}' for d in alone)} | {', '.join(f'{d:.0f}' for d in gated)} |")


def energy_table(pipe, work, still, seeds, steps) -> None:
    print("\n## energy-from a held-out recording: r of the take's energy with the reference's")
    print("| prompt | 5 s onto 5 s | 5 s stretched onto 8 s |\n|---|---|---|")
    ref = work / "ref.wav"
    write_wav(ref, samples.knocks_and_swell(5.0, np.random.default_rng(12345), SR), SR)
    long_still = work / "still8.mp4"
    samples.write_video(long_still, samples.flash_frames([], size=(64, 64)), 8.0, 25)
    for prompt in ("wood knocks", "footsteps", "rain falling", "engine running"):
        cells = []
        for video, seconds in ((still, 5.0), (long_still, 8.0)):
            times, target = reference_curve(ref, seconds)
            rs = []
            for seed in seeds:
                energy = waveform_energy(
                    pipe(video, prompt=prompt, energy=(times, target), seed=seed, steps=steps).waveform
                )
                energy = energy.numpy()
                rs.append(np.corrcoef(energy, np.interp(np.arange(len(energy)) / 100, times, target))[0, 1])
            cells.append(f"{np.min(rs):.2f}-{np.max(rs):.2f}")
        print(f"| {prompt} | {cells[0]} | {cells[1]} |")


def negative_table(pipe, still, seeds, steps) -> None:
    print("\n## negative prompt: timbre's cosine similarity to the negative concept, mean over seeds")
    print("| prompt | negative | without | with | seeds that moved away |\n|---|---|---|---|---|")
    pairs = [("engine running", "a high whistle"), ("rain falling", "a siren wailing"),
             ("a bell ringing", "wind blowing"), ("footsteps", "metal clang")]  # fmt: skip
    for prompt, negative in pairs:
        concept = np.mean([profile(pipe(still, prompt=negative, seed=100 + s, steps=steps).waveform) for s in seeds], 0)
        without = [cosine(profile(pipe(still, prompt=prompt, seed=s, steps=steps).waveform), concept) for s in seeds]
        with_neg = [
            cosine(profile(pipe(still, prompt=prompt, negative_prompt=negative, seed=s, steps=steps).waveform), concept)
            for s in seeds
        ]
        moved = sum(w < o for w, o in zip(with_neg, without))
        print(f"| {prompt} | {negative} | {np.mean(without):.3f} | {np.mean(with_neg):.3f} | {moved}/{len(seeds)} |")


if __name__ == "__main__":
    main()
