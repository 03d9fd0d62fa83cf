"""The CPU speed paths (issue 28): what `dtype="auto"` picks and says, the quality guard of bf16 against fp32 (the
final latent, the video features), and work done once (prompt embeddings across takes)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from rewas import ReWaSPipeline, samples, validate
from rewas.cli import main


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("speed") / "ball.mp4"
    samples.write_video(path, samples.bouncing_ball_frames(bounce_period=0.45), 2.0, 25)
    return path


@pytest.mark.parametrize("amx, avx512_bf16, expected", [(False, False, torch.float32), (False, True, torch.bfloat16),
                                                        (True, False, torch.bfloat16)])  # fmt: skip
def test_auto_is_bf16_only_where_the_cpu_computes_it(monkeypatch, amx, avx512_bf16, expected):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    cpu = torch.device("cpu")
    assert validate.dtype("auto", cpu) == validate.dtype("AUTO", cpu) == expected
    assert validate.dtype("fp32", cpu) == torch.float32 and validate.dtype("bf16", cpu) == torch.bfloat16  # asked wins
    assert validate.dtype(None, cpu) == torch.float32  # the API's default is unchanged
    assert ReWaSPipeline.from_pretrained("debug", dtype="auto").dtype == expected
    why = validate.auto_dtype(cpu)[1]
    assert why.startswith("this CPU computes bf16 natively") == (expected == torch.bfloat16)
    assert ("(AMX)" in why) == amx
    gpu = validate.auto_dtype(torch.device("cuda"))  # measured on an H200: bf16 no faster there
    assert gpu[0] == torch.float32 and "no faster" in gpu[1]


def test_the_cli_says_which_precision_and_why(clip, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    args = ["generate", str(clip), "--prompt", "a ball", "--model", "debug", "--steps", "1", "-q", "-v"]
    assert main([*args, "-o", str(tmp_path / "a.mp4"), "--dtype", "auto"]) == 0
    err = capsys.readouterr().err
    assert "the diffusion model in bfloat16 (auto: this CPU computes bf16 natively (AVX512-BF16))" in err, err
    assert "rewas: stages: frames" in err and "diffusion" in err
    assert main([*args, "-o", str(tmp_path / "b.mp4")]) == 0  # auto is the default
    assert "the diffusion model in bfloat16 (auto: this CPU computes bf16" in capsys.readouterr().err
    assert main([*args, "-o", str(tmp_path / "c.mp4"), "--dtype", "fp32"]) == 0
    assert "the diffusion model in float32 (--dtype fp32)" in capsys.readouterr().err
    assert main(["info", "default"]) == 0
    assert "--dtype auto runs it in bfloat16 (this CPU computes bf16 natively (AVX512-BF16))" in capsys.readouterr().out


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def test_bf16_stays_near_fp32_on_the_default_model(clip):
    """The embedded model: measured 0.009 (5 s, 20 steps)."""
    fp32 = ReWaSPipeline.from_pretrained("default")
    bf16 = ReWaSPipeline.from_pretrained("default", dtype="bf16")
    ask = {"prompt": "a rubber ball bouncing on a wooden floor", "seed": 3}
    a, b = fp32(str(clip), **ask), bf16(str(clip), **ask)
    assert 0 < _rel(b.latent, a.latent) < 0.03


def test_bf16_stays_near_fp32_on_random_weights_of_the_papers_kinds():
    """Random weights of the paper's kinds of part: its video encoder (a Motionformer at the paper's size, one
    segment) and a UNet + adapter whose output layers are not zero (the small preset), through a whole sampling."""
    from rewas.config import paper
    from rewas.video_encoder import build_video_encoder

    torch.manual_seed(0)
    encoder = build_video_encoder(paper().video_encoder).eval()
    segment = torch.randn(1, 1, 16, 3, 224, 224)
    with torch.no_grad():
        fp32 = encoder(segment)
        bf16 = copy.deepcopy(encoder).to(torch.bfloat16)(segment.bfloat16())
    assert 0 < _rel(bf16, fp32) < 0.02, _rel(bf16, fp32)

    pipe = ReWaSPipeline.from_pretrained("small")
    with torch.no_grad():
        for module in (pipe.unet, pipe.adapter):
            for p in module.parameters():
                if p.dim() > 1 and not p.any():  # zero-initialised outputs would make every path agree
                    p.normal_(0, 0.02)
    low = copy.deepcopy(pipe).to("cpu", "bf16")
    energy = np.linspace(-8, -3, 200)
    ask = {"energy": energy, "prompt": "a ball", "seed": 1, "steps": 5}
    assert 0 < _rel(low(**ask).latent, pipe(**ask).latent) < 0.05


def test_a_prompt_is_encoded_once_across_takes(clip, monkeypatch):
    pipe = ReWaSPipeline.from_pretrained("debug")
    calls = []
    real = pipe.text_encoder.encode
    monkeypatch.setattr(pipe.text_encoder, "encode", lambda prompts: calls.append(list(prompts)) or real(prompts))
    first = pipe(str(clip), prompt="a ball", seed=1, steps=1)
    again = pipe(str(clip), prompt="a ball", seed=1, steps=1)
    assert calls == [["a ball", ""]] and np.array_equal(first.waveform, again.waveform)
    pipe(str(clip), prompt="a ball", negative_prompt="music", seed=1, steps=1)
    assert calls[-1] == ["a ball", "music"]
    pipe.to("cpu")  # a move clears what was computed on the old device
    pipe(str(clip), prompt="a ball", seed=1, steps=1)
    assert calls[-1] == ["a ball", ""] and len(calls) == 3


def test_the_studio_takes_the_precision_too(tmp_path):
    from rewas.studio import Studio

    studio = Studio(["debug"], workdir=tmp_path, dtype="bf16")
    assert studio.pipeline("debug").dtype == torch.bfloat16


def _layout(pipe) -> set[bool]:
    """For each of the UNet's and adapter's convolution weights whose two layouts differ (a 1x1 kernel on one
    channel has one layout): is it channels-last?"""
    convs = [p for m in (pipe.unet, pipe.adapter) for p in m.parameters() if p.dim() == 4]
    last = [p.is_contiguous(memory_format=torch.channels_last) for p in convs]
    return {c for p, c in zip(convs, last) if c != p.is_contiguous()}


def _isa(monkeypatch, isa: str | None) -> None:
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: isa == "AMX")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: isa is not None)


def test_channels_last_where_it_was_measured_faster(monkeypatch):
    """docs/speed.md: a guided step in bf16 with channels-last weights took 0.88-0.98 of the default layout's time on
    an AVX512-BF16 CPU without AMX for UNets up to 384 channels wide (the default model's is 192), 1.00 at 576, 1.15
    at 960 and 1.08 for the paper preset (960); on an AMX CPU the default model's took 55 against 72 ms, the paper's
    0.92 of it."""
    cpu, bf16 = torch.device("cpu"), torch.bfloat16
    for isa, widths in (
        ("AMX", {192: True, 960: True}),
        ("AVX512-BF16", {192: True, 384: True, 576: False, 960: False}),
    ):
        _isa(monkeypatch, isa)
        assert {w: validate.channels_last(cpu, bf16, w) for w in widths} == widths
        assert not validate.channels_last(cpu, torch.float32, 192)
    _isa(monkeypatch, None)  # bf16 emulated: asked for, never laid out for it
    assert not validate.channels_last(cpu, bf16, 192)


@pytest.mark.parametrize("isa", ["AMX", "AVX512-BF16", None])
def test_channels_last_weights_are_laid_out_when_the_denoiser_is_made(monkeypatch, tmp_path, isa):
    """The small model (192 channels at its widest, as the default's) in bf16: channels-last on a CPU that computes
    bf16 natively. The layout is chosen when PyTorch's denoiser is made, for the device and dtype of that moment."""
    _isa(monkeypatch, isa)
    native = isa is not None
    pipe = ReWaSPipeline.from_pretrained("small", dtype="bf16")
    assert _layout(pipe) == {False}  # not laid out before it runs: it may go to OpenVINO first
    with torch.no_grad():
        for module in (pipe.unet, pipe.adapter):
            for p in module.parameters():
                if p.dim() > 1 and not p.any():  # zero-initialised outputs would make both layouts agree
                    p.normal_(0, 0.02)
    weights = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    ask = {"energy": np.linspace(-8, -3, 200), "prompt": "a ball", "seed": 1, "steps": 3}
    first = pipe(**ask).latent
    assert _layout(pipe) == {native}
    assert all(torch.equal(v, weights[k]) for k, v in pipe.unet.state_dict().items())  # only the layout changed
    _isa(monkeypatch, None)
    plain = pipe(**ask).latent  # the same pipeline, laid out again for a CPU without native bf16
    assert _layout(pipe) == {False}
    assert _rel(first, plain) < 0.03  # bf16's rounding, in another order
    _isa(monkeypatch, isa)
    pipe.to("cpu", "fp32")(**ask)
    assert _layout(pipe) == {False}  # fp32: the default layout
    pipe.to("cpu", "bf16")(**ask)
    assert _layout(pipe) == {native}
    saved = ReWaSPipeline.from_pretrained(pipe.save_pretrained(tmp_path / "model"), dtype="bf16")
    for a, b in zip(saved.unet.state_dict().values(), pipe.unet.state_dict().values()):
        assert torch.equal(a, b)
