"""What runs only on another platform (docs/platforms.md): CUDA, MPS, Windows. Each test is marked and skipped
where its platform is absent; `pytest -m cuda` (or mps, windows) runs them on a machine that has it."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from rewas import ReWaSPipeline, files


def _generate(device: str, dtype: str, video) -> tuple[np.ndarray, torch.Tensor]:
    pipe = ReWaSPipeline.from_pretrained("default", device=device, dtype=dtype)
    result = pipe(video, prompt="a rubber ball bouncing", steps=10, seed=0)
    return result.waveform, result.latent


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp16"])
def test_cuda_generation_matches_the_cpu(media, dtype):
    """The embedded model on a GPU: finite, the video's length, and its latent near the CPU's fp32 one."""
    wave_cpu, latent_cpu = _generate("cpu", "fp32", media["v25"])
    wave, latent = _generate("cuda", dtype, media["v25"])
    assert np.isfinite(wave).all() and wave.shape == wave_cpu.shape
    tolerance = 0.02 if dtype == "fp32" else 0.15  # kernels differ; half precision keeps 8 or 11 bits
    assert float((latent - latent_cpu).norm() / latent_cpu.norm()) < tolerance


@pytest.mark.mps
def test_mps_generation_matches_the_cpu(media):
    wave_cpu, latent_cpu = _generate("cpu", "fp32", media["v25"])
    wave, latent = _generate("mps", "fp32", media["v25"])
    assert np.isfinite(wave).all() and wave.shape == wave_cpu.shape
    assert float((latent - latent_cpu).norm() / latent_cpu.norm()) < 0.02


@pytest.mark.windows
def test_windows_cleanup_leaves_a_live_process_alive(tmp_path):
    """On Windows the stale-temp cleanup must not signal: os.kill(pid, 0) would terminate the process."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        temp = tmp_path / f"{files.temp_prefix(child.pid)}x.mp4"
        temp.write_bytes(b"partial")
        assert files.remove_stale_temps(tmp_path) == [] and temp.exists()
        assert child.poll() is None  # still running
    finally:
        child.kill()
        child.wait()
    assert files.remove_stale_temps(tmp_path) == [temp]


def test_the_markers_are_registered_and_documented():
    """A marker the docs do not list (or pytest does not know) would run, or skip, silently."""
    from conftest import PLATFORMS

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    doc = open(os.path.join(root, "docs", "platforms.md")).read()
    for marker in PLATFORMS:
        assert f"`{marker}`" in doc, marker
