"""The shipped model's output, recorded: refactoring must not change a single sample.

tests/data/reference_generation.npz was written by this file's `record()` (run `python tests/test_reference_output.py
--record`) at the commit that added it, before the architecture change that moves sampling to rewas/diffusion.py.
Re-record only when a change is meant to alter the audio, and say so in its commit message.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REFERENCE = Path(__file__).resolve().parent / "data" / "reference_generation.npz"
PROMPT = "a ball bouncing on a wooden floor"
RUNS = {  # name -> generation options; DDIM with eta 1 draws noise at every step, DPM-Solver++ is the default
    "ddim": dict(scheduler="ddim", steps=6, eta=1.0),
    "dpmsolver": dict(scheduler="dpmsolver++", steps=6),
}


def _generate(video) -> dict[str, np.ndarray]:
    import torch

    from rewas import ReWaSPipeline

    torch.set_num_threads(1)  # the same reduction order on every machine with this build
    pipe = ReWaSPipeline.from_pretrained("default")
    out = {}
    for name, options in RUNS.items():
        result = pipe(video, prompt=PROMPT, seed=0, **options)
        out[f"{name}_waveform"], out[f"{name}_energy"] = result.waveform, result.energy
    return out


def _video(folder: Path) -> Path:
    from rewas import samples

    path = folder / "ball.mp4"
    samples.write_video(path, samples.bouncing_ball_frames(), 3.0, 25)
    return path


def record() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        np.savez_compressed(REFERENCE, **_generate(_video(Path(tmp))))
    print(f"wrote {REFERENCE}")


def test_the_default_model_generates_the_recorded_audio(tmp_path):
    import torch

    threads = torch.get_num_threads()
    try:
        got = _generate(_video(tmp_path))
    finally:
        torch.set_num_threads(threads)
    expected = np.load(REFERENCE)
    assert sorted(got) == sorted(expected.files)
    for key in expected.files:
        diff = float(np.abs(got[key] - expected[key]).max()) if got[key].shape == expected[key].shape else None
        assert np.array_equal(got[key], expected[key]), f"{key}: shape {got[key].shape}, max |diff| {diff}"


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit("usage: python tests/test_reference_output.py --record")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    record()
