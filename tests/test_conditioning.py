"""Conditioning of the live debug pipeline: prompt, energy, guidance and control_scale reach the sampled latent, and
the denoiser's CFG is exactly the formula of the paper (unconditional branch: empty prompt AND all-zero hint)."""

from unittest import mock

import numpy as np
import pytest
import torch

import rewas.pipeline
from rewas.timeline import sample_timelines

CURVE = np.where(np.arange(200) % 100 < 20, -2.0, -9.0)  # 2 s of energy: two bursts
OTHER_CURVE = np.where(np.arange(200) % 50 < 10, -2.0, -9.0)  # four shorter bursts
# Changes are asserted on the sampled latent: the debug VAE decoder and vocoder are random and map very different
# latents to nearly the same waveform, so the waveform would hide a lost condition. Between calls with different
# conditions the latent moves by >= 1.7% (mean |difference| / mean |latent|, measured: the prompt moves it least,
# the random text encoder gives every prompt a similar embedding), float32 rounding differences ~1e-6.
CHANGED = 5e-3


def generate(pipe, *args, **kwargs):
    """pipe(*args, **kwargs) -> (result, the sampled latent timeline (1, z, L, F))."""
    latents = []

    def recording(*a, **k):
        latents.append(sample_timelines(*a, **k)[0])
        return [latents[-1]]

    with mock.patch.object(rewas.pipeline, "sample_timelines", recording):
        result = pipe(*args, **kwargs)
    return result, latents[-1]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean |a - b| relative to the mean |b|."""
    return float((a - b).abs().mean() / b.abs().mean())


def test_prompt_energy_and_guidance_each_change_the_latent(debug_pipe):
    call = dict(energy=CURVE, prompt="a dog barking", guidance=3.0, steps=2, seed=0)
    base, latent = generate(debug_pipe, **call)
    # another prompt (the empty one is refused); the debug model's byte-level text encoder sets a one-letter prompt
    # far from a sentence (measured 0.013; two sentences can be as close as 0.003)
    for change in (dict(prompt="x"), dict(energy=OTHER_CURVE), dict(guidance=1.0)):
        other, other_latent = generate(debug_pipe, **{**call, **change})
        assert rel(other_latent, latent) > CHANGED, list(change)
        assert not np.array_equal(other.waveform, base.waveform), list(change)


@pytest.fixture(scope="module")
def inputs(debug_pipe):
    """A noisy latent, a timestep, the prompt and empty embeddings and a real (VAE-encoded) hint latent."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, *debug_pipe.config.latent_shape, generator=generator)
    cond, empty = debug_pipe.text_encoder.encode(["a dog barking", ""]).chunk(2)
    curve = torch.from_numpy(np.resize(CURVE, debug_pipe.config.audio.window_frames)).float()[None]
    hint = debug_pipe.encode_energy(curve, generator)
    return x, torch.tensor(501), cond, empty, hint


def branch(pipe, x, t, text, hint, scale=1.0):
    """One branch by hand: the UNet with the adapter's residuals (times `scale`) for this prompt and hint."""
    t = t.reshape(1)
    control = [scale * c for c in pipe.adapter(x, hint, t, text)]
    return pipe.unet(x, t, text, control=control)


@torch.no_grad()
def test_guidance_one_is_the_conditional_branch(debug_pipe, inputs, monkeypatch):
    x, t, cond, empty, hint = inputs
    eps = debug_pipe.denoiser(cond, empty, 1.0)(x, t, hint)
    torch.testing.assert_close(eps, branch(debug_pipe, x, t, cond, hint))
    halves = []  # (uncond, cond) as the batched CFG call splits them
    monkeypatch.setattr(rewas.pipeline, "classifier_free_guidance", lambda u, c, s: halves.append((u, c)) or u)
    debug_pipe.denoiser(cond, empty, 3.0)(x, t, hint)
    uncond_half, cond_half = halves[0]
    torch.testing.assert_close(cond_half, eps, atol=1e-4, rtol=1e-4)  # batch of 2 vs 1: float-level differences
    assert rel(uncond_half, eps) > 100 * 1e-4  # the halves are far apart: a swap cannot pass the line above


@torch.no_grad()
def test_cfg_is_the_unconditional_branch_plus_guidance_times_the_difference(debug_pipe, inputs):
    x, t, cond, empty, hint = inputs
    c = branch(debug_pipe, x, t, cond, hint)
    u = branch(debug_pipe, x, t, empty, torch.zeros_like(hint))  # empty prompt AND no energy
    for g in (3.0, 0.5):
        expected = u + g * (c - u)
        torch.testing.assert_close(debug_pipe.denoiser(cond, empty, g)(x, t, hint), expected, atol=1e-4, rtol=1e-4)
    # each plausible mistake lands far outside that tolerance, so the comparison above can tell them apart
    for wrong_u in (branch(debug_pipe, x, t, empty, hint), branch(debug_pipe, x, t, cond, torch.zeros_like(hint))):
        assert rel(wrong_u + 3 * (c - wrong_u), u + 3 * (c - u)) > 1e-2
    assert rel(c + 3 * (u - c), u + 3 * (c - u)) > 1e-2  # halves swapped


@torch.no_grad()
def test_without_energy_guidance_the_unconditional_branch_keeps_the_hint(debug_pipe, inputs, monkeypatch):
    """SamplerConfig.guide_energy=False: guidance steers the prompt alone (both branches have the hint)."""
    import dataclasses

    x, t, cond, empty, hint = inputs
    sampler = dataclasses.replace(debug_pipe.config.sampler, guide_energy=False)
    monkeypatch.setattr(debug_pipe, "config", dataclasses.replace(debug_pipe.config, sampler=sampler))
    c, u = branch(debug_pipe, x, t, cond, hint), branch(debug_pipe, x, t, empty, hint)
    torch.testing.assert_close(debug_pipe.denoiser(cond, empty, 3.0)(x, t, hint), u + 3 * (c - u), atol=1e-4, rtol=1e-4)
    released = branch(debug_pipe, x, t, empty, torch.zeros_like(hint))
    assert rel(released + 3 * (c - released), u + 3 * (c - u)) > 1e-2  # the release's branch is far from it


@torch.no_grad()
def test_control_scale_scales_the_adapter_residuals(debug_pipe, inputs, monkeypatch):
    x, t, cond, empty, hint = inputs
    for s in (0.5, 2.0):
        eps = debug_pipe.denoiser(cond, empty, 1.0, control_scale=s)(x, t, hint)
        torch.testing.assert_close(eps, branch(debug_pipe, x, t, cond, hint, s))
        assert rel(eps, branch(debug_pipe, x, t, cond, hint)) > 1e-2  # far from scale 1
    c = branch(debug_pipe, x, t, cond, hint, 0.5)
    u = branch(debug_pipe, x, t, empty, torch.zeros_like(hint), 0.5)
    torch.testing.assert_close(
        debug_pipe.denoiser(cond, empty, 3.0, control_scale=0.5)(x, t, hint), u + 3 * (c - u), atol=1e-4, rtol=1e-4
    )
    monkeypatch.setattr(debug_pipe.adapter, "forward", lambda *a, **k: pytest.fail("adapter run at control_scale 0"))
    eps = debug_pipe.denoiser(cond, empty, 1.0, control_scale=0.0)(x, t, hint)
    torch.testing.assert_close(eps, debug_pipe.unet(x, t.reshape(1), cond), rtol=0, atol=0)
