"""The shipped model's output, recorded: refactoring must not change a single sample.

tests/data/reference_generation.npz was written by this file's `record()` (run `python tests/test_reference_output.py
--record`) at the commit that added it, before the architecture change that moves sampling to rewas/diffusion.py.
Re-record only when a change is meant to alter the audio, and say so in its commit message.

PyTorch's CPU kernels are chosen per processor (oneDNN's blocking follows the caches and the instruction set), so
the samples are exact only on the kind of processor that recorded them (tests/data/reference_generation.json holds
its description). Elsewhere the waveforms must agree to 1e-3 of their norm and the curves to 1e-5: an Intel Xeon
with AMX and the AMD EPYC that first recorded them differ by 1.2e-4 and 1e-7, where a change of the method moves a
waveform by far more (another seed: 1.08)."""

from __future__ import annotations

import json
import platform
import sys
import warnings
from pathlib import Path

import numpy as np

REFERENCE = Path(__file__).resolve().parent / "data" / "reference_generation.npz"
MACHINE = REFERENCE.with_suffix(".json")  # the processor and PyTorch that recorded it
AGREE = {"waveform": 1e-3, "energy": 1e-5}  # on another processor: each output within this much of its norm
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


def _machine() -> dict[str, str]:
    """What chooses PyTorch's CPU kernels here: the processor and the PyTorch build."""
    import torch

    cpu = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key in ("vendor_id", "model name", "cpu family", "model", "cache size") and key not in cpu:
                cpu[key] = value
    except OSError:  # not Linux
        cpu["processor"] = platform.processor()
    return {**cpu, "machine": platform.machine(), "torch": torch.__version__,
            "capability": torch.backends.cpu.get_cpu_capability()}  # fmt: skip


def record() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        np.savez_compressed(REFERENCE, **_generate(_video(Path(tmp))))
    MACHINE.write_text(json.dumps(_machine(), indent=2) + "\n")
    print(f"wrote {REFERENCE} and {MACHINE}")


def test_the_default_model_generates_the_recorded_audio(tmp_path):
    import torch

    threads = torch.get_num_threads()
    try:
        got = _generate(_video(tmp_path))
    finally:
        torch.set_num_threads(threads)
    expected = np.load(REFERENCE)
    assert sorted(got) == sorted(expected.files)
    exact = json.loads(MACHINE.read_text()) == _machine()
    if not exact:
        warnings.warn(
            f"{REFERENCE.name} was recorded on another processor or PyTorch: compared within tolerances", stacklevel=1
        )
    for key in expected.files:
        assert got[key].shape == expected[key].shape, f"{key}: shape {got[key].shape}, not {expected[key].shape}"
        diff = float(np.abs(got[key] - expected[key]).max())
        if exact:
            assert np.array_equal(got[key], expected[key]), f"{key}: max |diff| {diff} on the recording's processor"
        else:
            off = float(np.linalg.norm(got[key] - expected[key]) / np.linalg.norm(expected[key]))
            bound = AGREE[key.rsplit("_", 1)[1]]
            assert off <= bound, f"{key}: {off:.2e} of its norm off (max |diff| {diff}) on another processor"


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit("usage: python tests/test_reference_output.py --record")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    record()
