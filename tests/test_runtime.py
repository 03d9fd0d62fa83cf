"""OpenVINO as the runtime of the video encoder and the denoiser on a CPU (issue 28): its quality guard against
PyTorch fp32 (a whole sampling's final latent, the paper-size video encoder's features), its cache of converted
models, what `auto` chooses and says, and the command line."""

from __future__ import annotations

import copy
import os
import shutil
import sys
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import openvino  # the [openvino] extra, in what `make install` sets up: a missing install fails here, not skips
import pytest
import torch
import torch.nn as nn

from rewas import ReWaSPipeline, runtime, samples
from rewas._optional import MissingExtraError
from rewas.cli import main
from rewas.errors import UserError


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("REWAS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "openvino"


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def _live_outputs(pipe: ReWaSPipeline) -> ReWaSPipeline:
    """Random weights whose zero-initialised output layers are not zero: otherwise every path gives the same latent."""
    with torch.no_grad():
        for module in (pipe.unet, pipe.adapter):
            for p in module.parameters():
                if p.dim() > 1 and not p.any():
                    p.normal_(0, 0.02)
    return pipe


def test_openvino_stays_near_torch_fp32_through_a_whole_sampling():
    """The small preset (the paper's kinds of part, smaller), 5 steps with CFG: OpenVINO fp32 is PyTorch fp32 to
    float precision; OpenVINO bf16 within the bound that PyTorch bf16 is held to (tests/test_speed.py)."""
    pipe = _live_outputs(ReWaSPipeline.from_pretrained("small"))
    ask = {"energy": np.linspace(-8, -3, 200), "prompt": "a ball", "seed": 1, "steps": 5}
    reference = pipe(**ask).latent
    fast = copy.deepcopy(pipe)
    assert fast.use_runtime("openvino") == "asked for" and fast.runtime == "openvino"
    assert _rel(fast(**ask).latent, reference) < 1e-4
    fast.to("cpu", "bf16")  # compiled again for the new precision
    assert fast.runtime == "openvino" and fast.dtype == torch.bfloat16
    assert 0 < _rel(fast(**ask).latent, reference) < 0.05


def test_openvino_video_encoder_at_the_papers_size():
    from rewas.config import paper
    from rewas.video_encoder import build_video_encoder

    torch.manual_seed(0)
    encoder = build_video_encoder(paper().video_encoder).eval()
    segments = torch.rand(1, 2, 16, 3, 224, 224) * 2 - 1
    with torch.no_grad():
        reference = encoder(segments)
        for dtype, bound in ((torch.float32, 1e-4), (torch.bfloat16, 0.02)):
            low = copy.deepcopy(encoder).to(dtype)
            low.segment_runner = runtime.compile_video_encoder(low, dtype)
            out = low(segments.to(dtype))
            assert out.shape == reference.shape and out.dtype == dtype
            assert _rel(out, reference) < bound, (dtype, _rel(out, reference))


def test_converted_models_are_cached_by_their_weights(cache, monkeypatch):
    pipe = ReWaSPipeline.from_pretrained("debug")
    pipe.use_runtime("openvino")
    (first,) = cache.glob("step-*/model.xml")
    convert = openvino.convert_model

    def refused(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(openvino, "convert_model", refused)
    again = ReWaSPipeline.from_pretrained("debug")
    again.use_runtime("openvino", keep_torch=True)  # same weights: from the cache
    assert again.runtime == "openvino"
    monkeypatch.setattr(openvino, "convert_model", convert)
    monkeypatch.setattr(runtime, "KEEP", 1)
    with torch.no_grad():
        again.unet.out[-1].bias.add_(0.5)  # other weights: converted anew, and the older entry goes
    again.use_runtime("openvino", keep_torch=True)
    (entry,) = cache.glob("step-*/model.xml")  # the older one evicted, no half-written folder left
    assert entry != first and not list(cache.glob(".*"))
    channels, _, freq = pipe.config.latent_shape
    x = torch.randn(2, channels, 16, freq)
    t, text = torch.tensor([10, 10]), torch.randn(2, pipe.config.unet.film_dim)
    with torch.no_grad():
        torch_out = again.unet(x, t, text, control=again.adapter(x, x, t, text))
    assert _rel(again._step(x, t, text, x, 1.0), torch_out) < 1e-5  # the new weights, not the cached old ones


def test_a_cache_entry_that_cannot_be_read_is_converted_again(cache, caplog):
    ask = {"energy": np.linspace(-8, -3, 100), "prompt": "a ball", "seed": 0, "steps": 2}
    first = ReWaSPipeline.from_pretrained("debug", runtime="openvino")
    expected = first(**ask).waveform
    (weights,) = cache.glob("step-*/model.bin")
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # cut short outside rewas
    with caplog.at_level("WARNING", logger="rewas.runtime"):
        again = ReWaSPipeline.from_pretrained("debug", runtime="openvino")
    assert "cannot be read" in caplog.text and "converting it again" in caplog.text
    assert weights.stat().st_size > 0 and np.array_equal(again(**ask).waveform, expected)
    weights.unlink()  # its PyTorch weights freed, a model compiled again for another dtype needs the file
    with pytest.raises(UserError, match="cannot be read any more .* load the model again"):
        again.to("cpu", "bf16")
    assert again.dtype == torch.float32 and again._step.dtype == torch.float32  # refused: nothing moved
    assert np.array_equal(again(**ask).waveform, expected)  # its compiled nets still map the unlinked file


def test_a_model_converted_by_two_processes_at_once_keeps_the_entry_that_landed_first(cache, monkeypatch):
    """Two processes (ranks of `rewas batch`, workers) that convert the same weights at once: the one that finishes
    second keeps the first one's entry, which a caller may be reading, and drops its own. Before 2026-12-06 it removed
    that entry to put its own in place."""
    net, key = nn.Linear(4, 3).eval(), "same-weights"
    store, other = runtime._store_fp16, cache / f"step-{key}"

    def the_other_lands_first(xml):
        store(xml)
        shutil.copytree(xml.parent, other)  # as the other process's rename would
        (other / "theirs").touch()

    monkeypatch.setattr(runtime, "_store_fp16", the_other_lands_first)
    xml = runtime._convert("step", net, (torch.randn(1, 4),), [[-1, 4]], key)
    assert xml == other / "model.xml" and (other / "theirs").is_file() and (other / "model.bin").is_file()
    assert [p.name for p in cache.iterdir()] == [other.name]  # ours dropped, nothing half-made left


def test_an_entry_half_removed_is_replaced_whole(tmp_path):
    """What is left of an entry whose removal was killed (its .bin gone) is moved aside and removed, and the new entry
    lands in its place; nothing else is left in the cache. A whole entry is never replaced; leftovers of killed
    conversions are swept once a day old."""
    ours, folder = tmp_path / ".step-tmp", tmp_path / "step-key"
    for path, files in ((ours, ("model.xml", "model.bin")), (folder, ("model.xml",))):
        path.mkdir()
        for name in files:
            (path / name).write_text(path.name)
    runtime._land(ours, folder)
    assert (folder / "model.bin").read_text() == ".step-tmp" and [p.name for p in tmp_path.iterdir()] == ["step-key"]
    theirs = tmp_path / ".step-ours"  # a whole entry is there: it is kept, ours is left to be dropped
    shutil.copytree(folder, theirs)
    (theirs / "model.bin").write_text("ours")
    runtime._land(theirs, folder)
    assert (folder / "model.bin").read_text() == ".step-tmp" and theirs.is_dir()
    old = tmp_path / ".step-killed"  # what a conversion killed a day ago left is swept with the old entries
    old.mkdir()
    os.utime(old, (0, 0))
    runtime._evict(tmp_path, "step")
    assert not old.exists() and theirs.is_dir()  # a fresh one may be a conversion running


def test_auto_takes_openvino_for_large_models_on_a_cpu(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert runtime.resolve("auto", cpu, 26_000_000)[0] == "torch"  # the embedded model
    assert runtime.resolve("auto", cpu, 490_000_000) == (
        "openvino",
        "auto: OpenVINO is installed and the model has 490 M parameters",
    )
    assert runtime.resolve("auto", cuda, 490_000_000)[0] == "torch"
    assert runtime.resolve("torch", cpu, 490_000_000)[0] == "torch"
    with pytest.raises(UserError, match="runs on a CPU"):
        runtime.resolve("openvino", cuda, 1)
    with pytest.raises(UserError, match="choose one of"):
        runtime.resolve("tensorrt", cpu, 1)
    monkeypatch.setattr(runtime, "installed", lambda: False)
    chosen, why = runtime.resolve("auto", cpu, 490_000_000)
    assert chosen == "torch" and 'pip install "rewas[openvino]"' in why
    monkeypatch.setitem(sys.modules, "openvino", None)  # not installed: an explicit request says how to get it
    with pytest.raises(MissingExtraError, match=r"--runtime openvino needs the \[openvino\] extra"):
        runtime.resolve("openvino", cpu, 1)


def test_the_cli_takes_and_says_the_runtime(tmp_path, capsys):
    clip = tmp_path / "ball.mp4"
    samples.write_video(clip, samples.bouncing_ball_frames(), 1.0, 25)
    args = ["generate", str(clip), "--prompt", "a ball", "--model", "debug", "--steps", "2", "--seed", "0", "-q", "-v"]
    assert main([*args, "-o", str(tmp_path / "a.mp4"), "--runtime", "openvino", "--dtype", "fp32"]) == 0
    assert "the video encoder and the denoiser on openvino (asked for)" in capsys.readouterr().err
    assert main([*args, "-o", str(tmp_path / "b.mp4"), "--dtype", "fp32"]) == 0
    assert "on torch (auto: torch for a model of" in capsys.readouterr().err
    assert (tmp_path / "a.mp4").stat().st_size > 0 and (tmp_path / "b.mp4").stat().st_size > 0
    with pytest.raises(SystemExit) as e:
        main([*args, "-o", str(tmp_path / "c.mp4"), "--runtime", "tensorrt"])
    assert e.value.code == 2 and not (tmp_path / "c.mp4").exists()
    assert main(["info", "paper"]) == 0
    assert "--runtime auto its video encoder and denoiser on openvino (auto: OpenVINO" in capsys.readouterr().out


def test_openvino_frees_the_torch_weights_and_refuses_what_needs_them(tmp_path, monkeypatch):
    pipe = ReWaSPipeline.from_pretrained("debug", runtime="openvino")
    assert all(p.is_meta for m in (pipe.unet, pipe.adapter) for p in m.parameters())
    ask = {"energy": np.linspace(-8, -3, 100), "prompt": "a ball", "seed": 0, "steps": 2}
    fp32 = pipe(**ask).waveform
    pipe.to("cpu", "bf16")  # compiled again from the converted file: no weights needed
    assert pipe.runtime == "openvino" and pipe._step.dtype == torch.bfloat16
    assert np.isfinite(pipe(**ask).waveform).all()
    assert np.isfinite(fp32).all() and np.abs(fp32).max() > 0
    with pytest.raises(UserError, match="load the model again to run them with PyTorch"):
        pipe.use_runtime("torch")
    with pytest.raises(UserError, match="load the model again to save it"):
        pipe.save_pretrained(tmp_path / "model")
    assert not (tmp_path / "model").exists()
    monkeypatch.setattr("rewas.validate.device", lambda value, name="device": torch.device("cuda"))
    with pytest.raises(UserError, match="load the model again for cuda"):
        pipe.to("cuda")
    assert pipe.device.type == "cpu" and pipe.runtime == "openvino"


def _resident_kib(path: str) -> int:
    """KiB of `path`'s mappings in this process's resident memory (Linux)."""
    total, inside = 0, False
    for line in open("/proc/self/smaps"):
        head = line.split()
        if "-" in head[0] and ":" not in head[0]:  # a mapping's first line: address range, perms, ..., path
            inside = head[-1] == path
        elif inside and head[0] == "Rss:":
            total += int(head[1])
    return total


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")
def test_openvino_gives_back_the_pages_of_the_converted_weights_it_has_packed():
    """OpenVINO reads the converted file while it packs its own copy of the weights for new input shapes; those
    pages are then unmapped (the paper model's 880 MiB in bf16), and calls after that give the same outputs. In bf16
    it reads next to nothing of the file again (the debug model: 5%); in fp32 it computes with some of it in place."""
    from rewas.validate import auto_dtype

    pipe = ReWaSPipeline.from_pretrained("debug", runtime="openvino", dtype="bf16")
    path = str(pipe._step.xml.with_suffix(".bin"))
    channels, _, freq = pipe.config.latent_shape
    torch.manual_seed(0)
    for length in (16, 32):  # a new length: packed again, given back again
        x, t = torch.randn(2, channels, length, freq), torch.tensor([10, 10])
        text = torch.randn(2, pipe.config.unet.film_dim)
        first = pipe._step(x, t, text, x, 1.0)
        assert _resident_kib(path) == 0
        assert torch.equal(pipe._step(x, t, text, x, 1.0), first)
        if auto_dtype(torch.device("cpu"))[0] == torch.bfloat16:  # bf16 computed natively, not emulated in fp32
            assert _resident_kib(path) <= 0.1 * Path(path).stat().st_size / 1024


def test_a_compiled_net_called_from_several_threads_answers_each_as_alone():
    """The studio and `rewas batch` call the compiled networks from several threads, each with its own request,
    while new shapes are packed and their pages given back: every answer is the one a lone call gives."""
    from concurrent.futures import ThreadPoolExecutor

    pipe = ReWaSPipeline.from_pretrained("debug", runtime="openvino")
    (channels, _, freq), film = pipe.config.latent_shape, pipe.config.unet.film_dim
    generator = torch.Generator().manual_seed(0)
    asks = [
        (
            torch.randn(b, channels, length, freq, generator=generator),
            torch.full((b,), 10 * i),
            torch.randn(b, film, generator=generator),
        )
        for i, (b, length) in enumerate([(2, 16), (1, 32), (4, 16), (2, 48)] * 3)
    ]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda a: pipe._step(a[0], a[1], a[2], a[0], 1.0), asks))
    alone = ReWaSPipeline.from_pretrained("debug", runtime="openvino")._step  # fresh: packs each shape anew
    for (x, t, text), out in zip(asks, together):
        assert torch.equal(out, alone(x, t, text, x, 1.0))


def test_a_call_that_names_where_the_pipeline_already_is_compiles_nothing_again():
    pipe = ReWaSPipeline.from_pretrained("debug", runtime="openvino")
    step, ask = pipe._step, {"energy": np.linspace(-8, -3, 100), "prompt": "a ball", "seed": 0, "steps": 2}
    first = pipe(**ask, device="cpu", dtype="fp32").waveform
    assert pipe._step is step and len(pipe._text_cache) == 1  # not compiled again, the prompt's embedding kept
    assert np.array_equal(pipe(**ask, device="cpu").waveform, first) and pipe._step is step
    pipe(**ask, dtype="bf16")  # another precision: compiled for it
    assert pipe._step is not step and pipe._step.dtype == torch.bfloat16


def test_channels_last_weights_convert_as_the_default_layout_does(tmp_path, monkeypatch):
    """On an AMX CPU in bf16 PyTorch runs the denoiser with channels-last weights (tests/test_speed.py). Converted
    as they were, OpenVINO misread them and the network gave NaNs."""
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    pipe = _live_outputs(ReWaSPipeline.from_pretrained("debug", dtype="bf16"))
    ask = {"energy": np.linspace(-8, -3, 100), "prompt": "a ball", "seed": 0, "steps": 2}
    plain = copy.deepcopy(pipe)
    pipe._arrange()  # as PyTorch ran it
    assert pipe.unet.input_blocks[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    monkeypatch.setenv("REWAS_CACHE", str(tmp_path / "first"))
    assert pipe.use_runtime("openvino", keep_torch=True) == "asked for"
    monkeypatch.setenv("REWAS_CACHE", str(tmp_path / "second"))
    assert plain.use_runtime("openvino", keep_torch=True) == "asked for"
    assert torch.equal(pipe(**ask).latent, plain(**ask).latent)
    pipe.use_runtime("torch")  # PyTorch again: channels-last again once it runs
    pipe(**ask)
    assert pipe.unet.input_blocks[0][0].weight.is_contiguous(memory_format=torch.channels_last)


def test_the_studio_takes_the_runtime_and_refuses_one_it_cannot_run_before_it_starts(monkeypatch, capsys):
    launched = []
    monkeypatch.setattr("rewas.studio.launch", lambda *args, **kwargs: launched.append(kwargs))
    assert main(["ui", "--runtime", "openvino"]) == 0
    assert launched[-1]["runtime"] == "openvino"
    monkeypatch.setitem(sys.modules, "openvino", None)
    assert main(["ui", "--runtime", "openvino"]) == 2
    assert "--runtime openvino needs the [openvino] extra" in capsys.readouterr().err and len(launched) == 1


def test_auto_falls_back_to_torch_when_openvino_fails_and_an_explicit_request_says_why(monkeypatch, cache, tmp_path):
    monkeypatch.setattr(runtime, "AUTO_MIN_PARAMETERS", 0)  # auto would take OpenVINO for the debug model

    def broken(*args, **kwargs):
        raise RuntimeError("no kernel for this op\nmore lines")

    monkeypatch.setattr(runtime, "compile_step", broken)
    pipe = ReWaSPipeline.from_pretrained("debug", runtime="auto")
    assert pipe.runtime == "torch" and pipe.runtime_reason.startswith("auto: OpenVINO failed (no kernel for this op")
    assert not any(p.is_meta for p in pipe.unet.parameters())  # nothing freed: it still generates on PyTorch
    assert np.isfinite(pipe(energy=np.linspace(-8, -3, 100), prompt="a", seed=0, steps=1).waveform).all()
    with pytest.raises(RuntimeError, match="no kernel"):
        pipe.use_runtime("openvino")
    assert pipe.runtime == "torch"
    monkeypatch.undo()
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("REWAS_CACHE", str(blocked))  # a cache that cannot be written: one line, no traceback
    with pytest.raises(UserError, match="cannot keep converted models there"):
        pipe.use_runtime("openvino")
    assert pipe.runtime == "torch" and not any(p.is_meta for p in pipe.unet.parameters())


def test_a_move_whose_compile_fails_leaves_a_pipeline_that_runs_what_it_says(monkeypatch):
    """`to()` a new precision on OpenVINO with PyTorch weights kept: a compile that fails leaves it on PyTorch in
    the new dtype (before, its old compiled networks kept running under the new dtype's name)."""
    pipe = ReWaSPipeline.from_pretrained("debug")
    pipe.use_runtime("openvino", keep_torch=True)

    def broken(*args, **kwargs):
        raise RuntimeError("no kernel for this op")

    monkeypatch.setattr(runtime, "compile_step", broken)
    with pytest.raises(RuntimeError, match="no kernel"):
        pipe.to("cpu", "bf16")
    assert pipe.runtime == "torch" and pipe._step is None and pipe.dtype == torch.bfloat16
    assert next(pipe.unet.parameters()).dtype == torch.bfloat16
    assert np.isfinite(pipe(energy=np.linspace(-8, -3, 100), prompt="a", seed=0, steps=1).waveform).all()


def test_a_bf16_model_converted_computes_in_f32_when_asked_from_fp16_weights(cache):
    """A bf16 model is traced in bf16 (casting it to fp32 for that held the paper's weights twice more): its graph
    is made to compute in f32 from fp16 weights marked for decompression, as OpenVINO's own fp16 compression
    gives. So compiled again for fp32 it is PyTorch fp32 on the same weights (a graph left in bf16: 0.012 off)."""
    pipe = _live_outputs(ReWaSPipeline.from_pretrained("debug", dtype="bf16"))
    unet, adapter = copy.deepcopy(pipe.unet).float(), copy.deepcopy(pipe.adapter).float()
    pipe.use_runtime("openvino")
    layers = list(ElementTree.parse(pipe._step.xml).getroot().iter("layer"))
    kinds = [x.find("data").get("element_type") for x in layers if x.get("type") == "Const"]
    casts = [x for x in layers if x.get("name").startswith(runtime.DECOMPRESS)]
    assert "bf16" not in kinds and len(casts) == kinds.count("f16") > 0
    assert all(x.find("rt_info/attribute[@name='decompression']") is not None for x in casts)
    pipe.to("cpu", "fp32")  # compiled again from the converted file
    channels, _, freq = pipe.config.latent_shape
    torch.manual_seed(0)
    x, t, text = torch.randn(2, channels, 16, freq), torch.tensor([10, 10]), torch.randn(2, pipe.config.unet.film_dim)
    with torch.no_grad():
        reference = unet(x, t, text, control=adapter(x, x, t, text))
    assert _rel(pipe._step(x, t, text, x, 1.0), reference) < 1e-4


def test_an_openvino_without_its_decoder_converts_by_tracing_the_network(cache, monkeypatch):
    """Where OpenVINO's TorchScript decoder takes no tracing options (older OpenVINO), the network and its example go
    to `convert_model`, which traces it (with `torch.jit.trace`'s check): the same outputs as the decoder's."""
    from openvino.frontend.pytorch import ts_decoder

    class Older(ts_decoder.TorchScriptPythonDecoder):  # the signature before `trace_kwargs`
        def __init__(self, pt_module, graph_element=None, example_input=None, alias_db=None, shared_memory=True,
                     skip_freeze=False, constant_cache=None, module_extensions=None):  # fmt: skip
            super().__init__(
                pt_module, graph_element, example_input, alias_db, shared_memory, skip_freeze, constant_cache,
                module_extensions,
            )  # fmt: skip

    pipe = ReWaSPipeline.from_pretrained("debug", dtype="bf16")
    channels, _, freq = pipe.config.latent_shape
    x, t, text = torch.randn(2, channels, 16, freq), torch.tensor([10, 10]), torch.randn(2, pipe.config.unet.film_dim)
    expected = runtime.compile_step(pipe.unet, pipe.adapter, torch.bfloat16)(x, t, text, x, 1.0)
    monkeypatch.setattr(ts_decoder, "TorchScriptPythonDecoder", Older)
    monkeypatch.setenv("REWAS_CACHE", str(cache.parent.parent / "other"))  # converted anew
    assert set(runtime._source(pipe.unet, ())) == {"input_model", "example_input"}
    assert torch.equal(runtime.compile_step(pipe.unet, pipe.adapter, torch.bfloat16)(x, t, text, x, 1.0), expected)


def test_converting_gives_back_the_same_weights():
    """Converting traces the networks as they are and leaves their weights untouched (PyTorch falls back on them)."""
    pipe = ReWaSPipeline.from_pretrained("debug", dtype="bf16")
    nets = {"unet": pipe.unet, "adapter": pipe.adapter}
    before = {f"{n}.{k}": v.clone() for n, m in nets.items() for k, v in m.state_dict().items()}
    pipe.use_runtime("openvino", keep_torch=True)
    after = {f"{n}.{k}": v for n, m in nets.items() for k, v in m.state_dict().items()}
    assert all(after[k].dtype == v.dtype and torch.equal(after[k], v) for k, v in before.items())


class _Weights(nn.Module):
    """One weight of each kind the conversion treats apart: ordinary (stored in fp16), tiny (fp16 would drop their
    low bits: kept), beyond fp16's range (kept), zero (stored in fp16), and an f32 buffer (`same`: its bytes)."""

    def __init__(self, same: str = "zeros"):
        super().__init__()
        torch.manual_seed(0)
        self.normal = nn.Parameter(torch.randn(64, 64) * 0.1)
        self.tiny = nn.Parameter(torch.randn(64, 64) * 1e-6)
        self.big = nn.Parameter(torch.randn(64, 64) * 0.1)
        self.zero = nn.Parameter(torch.zeros(64))
        with torch.no_grad():
            self.big[0, 0] = 1e6
        self.to(torch.bfloat16)
        buffer = self.normal.detach()[0].clone().view(torch.float32) if same == "weight" else torch.zeros(32)
        self.register_buffer("buffer", buffer)  # 128 bytes, as `zero`'s and `normal[0]`'s: saving may share them

    def forward(self, x):
        rows = (x @ self.normal + self.zero, x @ self.tiny, x @ self.big, x @ self.normal[:1].T)
        return torch.cat([r.float() for r in rows] + [self.buffer.expand(x.shape[0], 32)], 1)


def _kinds(xml: Path) -> dict[str, str]:
    layers = ElementTree.parse(xml).getroot().iter("layer")
    return {x.get("name"): x.find("data").get("element_type") for x in layers if x.get("type") == "Const"}


def test_weights_fp16_cannot_hold_stay_exact_and_zeros_may_share_bytes_with_a_buffer():
    """A bf16 weight is stored in fp16 unless OpenVINO's own rule for its fp16 compression keeps it: 75% of its
    values would lose bits (before: all stored, 1.6% off for weights of about 1e-6), or one is beyond fp16's range.
    A zero bias whose bytes saving shares with a zero f32 buffer converts (before: refused as shared bytes)."""
    net = _Weights()
    x = torch.randn(4, 64)
    with torch.no_grad():
        reference = copy.deepcopy(net).float()(x)
    xml = runtime._convert("step", net, (x.to(torch.bfloat16),), [[-1, 64]], "weights")
    kinds = list(_kinds(xml).values())
    assert kinds.count("f16") == 3 and kinds.count("bf16") == 2  # normal, its first row and zero; tiny and big
    out = runtime.CompiledNet(xml, torch.float32)(x)
    for part in torch.split(torch.arange(out.shape[1]), [64, 64, 64, 1, 32]):
        assert torch.allclose(out[:, part], reference[:, part], rtol=1e-5, atol=0), part[0]


def test_a_weight_whose_bytes_another_constant_shares_is_not_rewritten():
    """Saving stores equal bytes once: rewritten as fp16, a bf16 weight would change an f32 constant that shares
    its bytes. Such a conversion fails (and `auto` runs on PyTorch) rather than answer wrong."""
    net = _Weights(same="weight")
    with pytest.raises(RuntimeError, match="shared with another constant"):
        runtime._convert("step", net, (torch.randn(4, 64, dtype=torch.bfloat16),), [[-1, 64]], "shared")
    assert runtime._shared({(0, 8): {True}, (8, 4): {True, False}, (12, 8): {True}, (16, 2): {False}}) == {
        (8, 4),
        (12, 8),
        (16, 2),
    }


def test_a_move_asks_for_the_runtime_again_as_it_was_asked(monkeypatch):
    """`to()` chooses the runtime again with `use_runtime`'s arguments (before: `keep_torch` was forgotten, so the
    first move freed the PyTorch weights, and `auto` was taken for openvino, so a failed compile raised)."""
    pipe = ReWaSPipeline.from_pretrained("debug")
    pipe.use_runtime("openvino", keep_torch=True)
    pipe.to("cpu", "bf16")
    assert pipe.runtime == "openvino" and not runtime.released(pipe.unet)
    assert next(pipe.unet.parameters()).dtype == torch.bfloat16

    monkeypatch.setattr(runtime, "AUTO_MIN_PARAMETERS", 0)
    pipe.use_runtime("auto", keep_torch=True)
    assert pipe.runtime == "openvino"

    def broken(*args, **kwargs):
        raise RuntimeError("no kernel for this op")

    monkeypatch.setattr(runtime, "compile_step", broken)
    pipe.to("cpu", "fp32")  # auto falls back to PyTorch, as it does when first asked
    assert pipe.runtime == "torch" and "OpenVINO failed" in pipe.runtime_reason
    assert np.isfinite(pipe(energy=np.linspace(-8, -3, 100), prompt="a", seed=0, steps=1).waveform).all()
