"""Shared fixtures: every test makes its own media (synthetic videos, click tracks) and tiny models."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from rewas import samples

# converted models (OpenVINO) go to a cache of this test process's own: not the user's, nor another worker's (a test of
# the default location must delenv it; a worker killed outright leaves its folder in the temp dir)
os.environ["REWAS_CACHE"] = tempfile.mkdtemp(prefix="rewas-test-cache-")
atexit.register(shutil.rmtree, os.environ["REWAS_CACHE"], True)

MANIFESTS = Path(__file__).resolve().parents[1] / "rewas" / "assets" / "manifests"  # the released files' keys, shapes

PLATFORMS = {  # marker -> (present here, why skipped); docs/platforms.md lists what each covers
    "cuda": (torch.cuda.is_available(), "no CUDA GPU on this machine"),
    "mps": (torch.backends.mps.is_available(), "no MPS backend on this machine"),
    "windows": (__import__("os").name == "nt", "not Windows"),
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        for marker, (present, why) in PLATFORMS.items():
            if marker in item.keywords and not present:
                item.add_marker(pytest.mark.skip(reason=why))


@pytest.fixture(scope="session")
def media(tmp_path_factory):
    """Videos at several frame rates, one long, one rotated, one variable-rate, one with audio, plus non-videos."""
    d = tmp_path_factory.mktemp("media")
    flashes = [0.5, 1.5]
    out = {}
    for name, fps, duration in [("v25", 25, 3.0), ("v2997", 29.97, 3.0), ("v60", 60, 2.0), ("long12", 25, 12.0)]:
        out[name] = d / f"{name}.mp4"
        samples.write_video(out[name], samples.flash_frames(flashes), duration, fps)
    out["vfr"] = d / "vfr.mp4"
    samples.write_video(out["vfr"], samples.flash_frames([1.0]), 2.0, times=[0, 0.03, 0.1, 0.5, 0.52, 1.0, 1.04, 1.9])
    out["rotated"] = d / "rotated.mp4"
    gradient = np.tile(np.linspace(0, 255, 160, dtype=np.uint8)[None, :, None], (120, 1, 3))
    samples.write_video(out["rotated"], lambda t: gradient, 1.0, 25, rotation=90)
    out["with_audio"] = d / "with_audio.mp4"
    samples.write_video(out["with_audio"], samples.flash_frames([0.5]), 2.0, 25, audio=samples.click_track(2.0, [0.5]))
    out["mpeg4_avi"] = d / "clip.avi"
    samples.write_video(out["mpeg4_avi"], samples.flash_frames([0.5]), 1.0, 25, codec="mpeg4")
    out["raw_mkv"] = d / "raw.mkv"  # a codec MP4 cannot hold
    samples.write_video(out["raw_mkv"], samples.flash_frames([0.5]), 1.0, 25, codec="rawvideo")
    out["audio_only"] = d / "tone.m4a"
    _write_audio_only(out["audio_only"])
    out["not_video"] = d / "notes.mp4"
    out["not_video"].write_text("this is not a video\n")
    out["zero_frames"] = d / "empty.mkv"
    _write_zero_frames(out["zero_frames"])
    return out


def _write_audio_only(path):
    import av

    t = np.arange(16000) / 16000
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None], format="flt", layout="mono"
        )
        frame.sample_rate, frame.pts = 16000, 0
        for p in s.encode(frame):
            c.mux(p)
        c.mux(s.encode(None))


def _write_zero_frames(path):
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        c.start_encoding()  # a header with a video track, and no frame


def make_live(pipe, seed: int = 0):
    """Give a random-weight pipeline's zero-initialised parameters in the UNet and adapter small random values, in
    place. With the paper's zero inits the UNet predicts exactly 0 (its output conv), its residual and attention
    branches add 0 (so the text changes nothing) and the adapter adds 0: prompt, energy, guidance and control_scale
    could not change the audio, and no test of them could fail. The vocoder too (below)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in (pipe.unet, pipe.adapter):
            for p in module.parameters():
                if not p.any():
                    p.copy_(torch.randn(p.shape, generator=generator) * 0.1)
        # A HiFi-GAN at PyTorch's default init shrinks its input layer by layer, so that its waveform is its biases:
        # another prompt moved it by 2e-5 (RMS 0.33), and waveform tests could not see conditioning. At unit gain
        # and zero bias the waveform follows the mel (another prompt: 0.6% of the RMS, as the mel moves 0.5%).
        for m in pipe.vocoder.modules():
            if isinstance(m, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)):
                w = m.weight  # Conv1d (out, in, k); ConvTranspose1d (in, out, k), each input reaching k / stride taps
                fan_in = w.shape[1] * w.shape[2] if isinstance(m, torch.nn.Conv1d) else w.shape[0] * w.shape[2]
                fan_in //= 1 if isinstance(m, torch.nn.Conv1d) else m.stride[0]
                w.copy_(torch.randn(w.shape, generator=generator) * fan_in**-0.5)
                if m.bias is not None:
                    m.bias.zero_()
    return pipe


def prompt_reading_phi_pipe(live: bool = True):
    """The debug preset with a phi that reads the prompt (`PhiConfig.text_dim`). live: phi's weights redrawn at a
    scale where its curve moves with the prompt (the preset's tiny phi is nearly constant at init)."""
    import dataclasses

    from rewas import ReWaSPipeline
    from rewas.config import PRESETS

    cfg = PRESETS["debug"]()
    pipe = ReWaSPipeline.from_config(cfg.replace(phi=dataclasses.replace(cfg.phi, text_dim=cfg.text.proj_dim)))
    if live:
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in pipe.phi.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.3)
    return pipe


@pytest.fixture(scope="session")
def default_pipe():
    """The embedded default model, loaded once (tests must not change it)."""
    from rewas import ReWaSPipeline

    return ReWaSPipeline.from_pretrained("default")


@pytest.fixture(scope="session")
def debug_pipe():
    """The debug preset with live output layers (see make_live): conditioning changes the audio."""
    from rewas import ReWaSPipeline

    return make_live(ReWaSPipeline.from_pretrained("debug"))


@pytest.fixture(scope="session")
def debug_model_dir(debug_pipe, tmp_path_factory):
    """debug_pipe saved as a model folder, for the CLI (`--model DIR`)."""
    return debug_pipe.save_pretrained(tmp_path_factory.mktemp("models") / "debug_live")


@pytest.fixture(scope="session")
def manifests():
    import json

    return {
        name: json.loads((MANIFESTS / f"{name}.json").read_text())["state_dict"]
        for name in ("rewas_ldm", "phi", "synchformer_vfeat")
    }


def shapes(module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in module.state_dict().items()}


def manifest_part(manifest: dict, prefix: str, skip: tuple[str, ...] = ()) -> dict[str, list[int]]:
    return {k[len(prefix) :]: v for k, v in manifest.items() if k.startswith(prefix) and not any(s in k for s in skip)}


def run_cli(args, capsys) -> tuple[int, str]:
    """`rewas ARGS` in this process -> (exit code, stderr); argparse's own exits count as exit codes."""
    from rewas.cli import main

    try:
        code = main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err
