"""The embedded default model: shipped in the package, small, loads offline, and generates."""

import json

import numpy as np
import torch

from rewas import ReWaSPipeline
from rewas.pipeline import COMPONENTS, DEFAULT_MODEL_DIR, load_config


def test_it_ships_inside_the_package_within_40_mb():
    files = [DEFAULT_MODEL_DIR / "config.json", *(DEFAULT_MODEL_DIR / f"{n}.safetensors" for n in COMPONENTS)]
    assert all(f.is_file() for f in files)
    assert sum(f.stat().st_size for f in DEFAULT_MODEL_DIR.iterdir()) <= 40e6
    cfg = load_config("default")
    assert cfg.video_encoder.kind == "motion" and cfg.text.kind == "minilm"  # nothing to download
    assert json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())["model"]["name"] == cfg.name


def test_weights_are_trained_not_random(default_pipe):
    fresh = ReWaSPipeline.from_pretrained("small")
    assert (
        default_pipe.config.vocoder.kind == "griffinlim"
    )  # its phase needs no weights (see docs/default_model.md for why)
    for name in ("unet", "adapter", "vae", "phi", "vocoder"):  # the vocoder: its magnitude net
        a, b = getattr(default_pipe, name).state_dict(), getattr(fresh, name).state_dict()
        assert any(not torch.allclose(a[k].float(), b[k].float()) for k in a), name
    assert float(default_pipe.vae.scale_factor) != 1.0  # set from the trained VAE's latents
    # the adapter's zero-initialised output convolutions have moved: the energy control does something
    zero = [k for k in fresh.adapter.state_dict() if "zero_conv" in k or "middle_block_out" in k]
    assert zero and any(default_pipe.adapter.state_dict()[k].abs().max() > 0 for k in zero)


def test_it_generates_a_soundtrack_that_follows_the_energy(default_pipe):
    """Loud where the control curve is high, quiet where it is low (a 2 s curve: silence, then sound)."""
    curve = np.full(200, -9.0, dtype=np.float32)
    curve[100:] = -3.0
    result = default_pipe(energy=curve, prompt="an engine idling", steps=8, seed=0)
    wav = result.waveform
    assert len(wav) == 32000 and np.isfinite(wav).all() and np.abs(wav).max() > 1e-3
    quiet, loud = np.sqrt(np.mean(wav[1600:14400] ** 2)), np.sqrt(np.mean(wav[17600:30400] ** 2))
    assert loud > 3 * quiet, (quiet, loud)


def test_decoding_a_wild_latent_gives_finite_audio(default_pipe, monkeypatch):
    """Far off its training data the small VAE decoder can overshoot (a decoded log-mel of 47 was seen, e^47 after
    exp): the decoded mel is clamped to what a log-mel can be, so the vocoder never returns inf/NaN."""
    shape = default_pipe.config.latent_shape

    def overshooting(z):
        mel = torch.full((1, 1, shape[1] * 4, default_pipe.config.audio.n_mels), -11.5)
        mel[..., 100:140, 10:30] = 60.0
        return mel

    monkeypatch.setattr(default_pipe.vae, "decode", overshooting)
    wav = default_pipe.decode(torch.zeros(1, *shape))
    assert torch.isfinite(wav).all() and float(wav.abs().max()) > 0
