"""One contract for every entry point (docs/contract.md): the Python API raises UserError (a ValueError) that names
the argument, never a raw IndexError, TypeError or torch assertion, for the bad-input classes the CLI refuses
with one line and exit 2; the same rule everywhere (the empty prompt included); manifests that pass between
commands; the CLI's help and version."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli

from rewas import ReWaSPipeline, samples
from rewas.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("contract") / "ball.mp4"
    samples.write_video(path, samples.bouncing_ball_frames(bounce_period=0.5), 1.0, 25)
    return path


# --------------------------------------------------------------------------------------------- the Python API

BAD_CALLS = {  # kwargs of a call -> what the error must name
    "prompt None": (dict(prompt=None), "prompt is missing"),
    "prompt not text": (dict(prompt=["a", "b"]), "prompt must be a string"),
    "prompt empty": (dict(prompt="  "), "prompt is empty"),
    "negative prompt not text": (dict(negative_prompt=3), "negative_prompt must be a string"),
    "guidance negative": (dict(guidance=-1.0), "guidance must be between 0 and 100"),
    "guidance NaN": (dict(guidance=float("nan")), "guidance must be a finite number"),
    "control_scale negative": (dict(control_scale=-3.0), "control_scale must be between 0 and 100"),
    "steps zero": (dict(steps=0), "steps must be a whole number >= 1 (got 0)"),
    "steps float": (dict(steps=2.5), "steps must be a whole number"),
    "batch_size zero": (dict(batch_size=0), "batch_size must be a whole number >= 1"),
    "eta negative": (dict(eta=-0.5), "eta must be between 0 and 1"),
    "seed text": (dict(seed="x"), "seed must be a whole number"),
    "seed too large": (dict(seed=2**63), "seed must be a whole number"),
    "scheduler unknown": (dict(scheduler="euler"), "euler"),
    "edit misspelt": (dict(edits=["mute 1-2", "mutr 3-4"]), "'mutr 3-4' is not an edit"),
    "edit malformed": (dict(edits=["mute one-two"]), "--mute 'one-two': expected START-END"),
    "edit not an edit": (dict(edits=[3]), "3 is not an edit"),
    "edits not a list": (dict(edits=5), "edits must be a list"),
    "device missing": (dict(device="cuda:7" if torch.cuda.is_available() else "cuda"), "device"),
    "device nonsense": (dict(device="toaster"), "not a torch device"),
    "dtype unknown": (dict(dtype="int8"), "dtype 'int8'"),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_the_api_refuses_bad_arguments_with_a_user_error_naming_them(debug_pipe, clip, case):
    kwargs, message = BAD_CALLS[case]
    call = dict(prompt="a click", steps=1, seed=0) | kwargs
    with pytest.raises(UserError) as info:
        debug_pipe(clip, **call)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert debug_pipe.device.type == "cpu" and debug_pipe.dtype == torch.float32  # a refused call moved nothing


BAD_INPUTS = {  # a call's inputs -> what the error must name
    "frames and a video": (dict(frames=np.zeros((25, 64, 64, 3), np.uint8), video="CLIP"), "not both"),
    "frames of one channel": (dict(frames=np.zeros((25, 64, 64), np.uint8)), "(T, H, W, 3)"),
    "frames empty": (dict(frames=np.zeros((0, 64, 64, 3), np.uint8)), "T, H, W >= 1"),
    "frames over 1 as float": (dict(frames=np.full((25, 64, 64, 3), 200.0)), "in [0, 1]"),
    "frames of int64 over 255": (
        dict(frames=np.full((25, 64, 64, 3), 300, np.int64)),
        "whole-number frames must be 0-255",
    ),
    "frames of bools": (dict(frames=np.zeros((25, 64, 64, 3), bool)), "uint8 (0-255) or float (0-1)"),
    "energy with NaN": (dict(energy=np.array([-5.0, np.nan, -4.0])), "NaN"),
    "energy times reversed": (dict(energy=(np.array([2.0, 1.0, 0.0]), np.array([-5.0, -4, -3]))), "increase"),
    "energy lengths differ": (dict(energy=(np.array([0.0, 1.0]), np.array([-5.0, -4, -3]))), "2 times and 3"),
    "energy empty": (dict(energy=np.array([])), "non-empty"),
    "energy of text": (dict(energy=["loud", "soft"]), "must be numbers"),
    "timeline not prepared": (dict(timeline="CLIP"), "timeline must come from prepare()"),
    "video not a path": (dict(video=123), "video must be a path"),
    "energy as rows": (dict(energy=[[0.0, 1.0], [-5.0, -4.0]]), "a (times_s, values) tuple"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_the_api_refuses_bad_inputs_with_a_user_error(debug_pipe, clip, case):
    kwargs, message = BAD_INPUTS[case]
    kwargs = {k: str(clip) if isinstance(v, str) and v == "CLIP" else v for k, v in kwargs.items()}
    with pytest.raises(UserError, match=None) as info:
        debug_pipe(prompt="a click", steps=1, seed=0, **kwargs)
    assert message in str(info.value)


def test_float_frames_in_0_1_are_the_uint8_frames(debug_pipe, clip):
    """Before: float frames in [0, 1] were cast to uint8 and came out black."""
    from rewas.frames import iter_frames

    frames = np.stack(list(iter_frames(clip, debug_pipe.config.video)))
    a = debug_pipe(frames=frames, prompt="a click", steps=1, seed=0)
    b = debug_pipe(frames=frames / 255.0, prompt="a click", steps=1, seed=0)
    np.testing.assert_allclose(b.energy, a.energy, atol=1e-4)


def test_a_refused_move_moves_nothing():
    """A half precision pipeline off the CPU asked onto the CPU: fp16 is refused there, and the pipeline stays
    where it was (before: its device said cpu while its weights stayed put)."""
    pipe = ReWaSPipeline.from_pretrained("debug").to("meta", "fp16")  # stands in for a CUDA device here
    with pytest.raises(UserError, match="fp16 on a CPU"):
        pipe(energy=np.full(50, -5.0), prompt="x", device="cpu")  # the call moves the pipeline, in its dtype
    assert pipe.device.type == "meta" and pipe.dtype == torch.float16 and next(pipe.unet.parameters()).is_meta


@pytest.mark.parametrize(
    "edit",
    [("mute", 1.0, 2.0, 0.0), ("mute",), ("gain", 2.0, float("inf"), 3.0), ("gain", 0.0, 1.0, 1e-07),
     ("scale", 1e-05, 1.0, 0.5), ("smooth", 0.0, float("inf"), 1e06), ("scale", 1.0, 2.5, 0.25)],
)  # fmt: skip
def test_every_edit_reads_back_as_it_is_written(edit):
    """`str(Edit)` is the spelling the API and the CLI take back (ranges open at the end, %g's exponents)."""
    from rewas.edits import Edit
    from rewas.validate import edits

    original = Edit(*edit)
    assert edits([str(original)]) == [original]


def test_edits_spelt_as_on_the_command_line(debug_pipe, clip):
    from rewas.edits import parse

    a = debug_pipe(clip, prompt="a click", steps=1, seed=0, edits=[parse("mute", "0.2-0.6"), parse("gain", "-3dB")])
    b = debug_pipe(clip, prompt="a click", steps=1, seed=0, edits=["mute 0.2-0.6", "gain -3dB"])
    assert np.array_equal(a.waveform, b.waveform)


def test_dtype_and_device_as_the_cli_spells_them():
    pipe = ReWaSPipeline.from_pretrained("debug", dtype="bf16", device="cpu")
    assert pipe.unet.dtype == torch.bfloat16
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            ReWaSPipeline.from_pretrained("debug", device="cuda")


def test_an_energy_curve_alone_lasts_as_long_written_as_read(debug_pipe, tmp_path):
    """A curve's times are the starts of 10 ms frames, as `--energy-out` writes them: a written curve read back as
    (times, values) lasts as long as the clip it came from (its last frame starts 10 ms before the end)."""
    from rewas.energy import read_csv, write_csv

    r = debug_pipe(energy=np.full(150, -5.0), prompt="a click", steps=1, seed=0)
    write_csv(tmp_path / "e.csv", r.energy, debug_pipe.config.audio)
    again = debug_pipe(energy=read_csv(tmp_path / "e.csv"), prompt="a click", steps=1, seed=0)
    assert r.duration == again.duration == pytest.approx(1.5) and again.waveform.shape == (24000,)


def test_a_timeline_records_its_prompt_and_another_prompt_warns(default_pipe, clip):
    """phi reads the prompt: the curve prepared for one prompt differs from a direct call's with another (up to
    1.31 nats). Prepared with the prompt, the result is the direct call's; with another, a warning says so."""
    assert default_pipe.config.phi.text_dim  # the embedded model's phi reads the prompt
    direct = default_pipe(clip, prompt="a rubber ball bouncing", steps=2, seed=0)
    timeline = default_pipe.prepare(clip, prompt="a rubber ball bouncing")
    assert timeline.prompt == "a rubber ball bouncing"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = default_pipe(timeline=timeline, prompt="a rubber ball bouncing", steps=2, seed=0)
    assert np.array_equal(same.waveform, direct.waveform)
    with pytest.warns(UserWarning, match="predicted by phi for the prompt 'a rubber ball bouncing'"):
        default_pipe(timeline=timeline, prompt="rain on a roof", steps=2, seed=0)
    assert default_pipe.prepare(clip, energy=np.full(100, -5.0)).prompt is None  # a given curve reads no prompt


def test_save_pretrained_keeps_the_storage_precision_and_the_audio(default_pipe, clip, tmp_path):
    """Before: the fp16 embedded model was saved in fp32 (twice the size), and a reload's audio moved by 3e-5
    (weights read from the file at unaligned addresses take other CPU kernels)."""
    import rewas

    folder = default_pipe.save_pretrained(tmp_path / "copy")
    shipped = Path(rewas.__file__).parent / "assets" / "default" / "unet.safetensors"
    assert (folder / "unet.safetensors").stat().st_size == shipped.stat().st_size
    again = ReWaSPipeline.from_pretrained(folder)
    a = default_pipe(clip, prompt="a rubber ball bouncing", steps=2, seed=0)
    b = again(clip, prompt="a rubber ball bouncing", steps=2, seed=0)
    assert np.array_equal(a.waveform, b.waveform)
    assert default_pipe.save_pretrained(tmp_path / "fp32", dtype="fp32") and (
        (tmp_path / "fp32" / "unet.safetensors").stat().st_size > 1.9 * shipped.stat().st_size
    )


def test_iter_frames_takes_the_models_video_config():
    """Its old default was the paper's 256/224 crop: fed to the default model, another curve (r 0.78)."""
    import inspect

    from rewas.frames import iter_frames

    assert inspect.signature(iter_frames).parameters["cfg"].default is inspect.Parameter.empty


# ----------------------------------------------------------------------------------- the same rule everywhere


def test_an_empty_prompt_is_refused_by_every_entry_point(debug_pipe, clip, tmp_path, capsys):
    from rewas import batch
    from rewas.studio import Session, Studio

    with pytest.raises(UserError, match="prompt is empty"):
        debug_pipe(clip, prompt="", steps=1)
    code, err = run_cli(["generate", clip, "--prompt", " ", "-o", tmp_path / "o.mp4", "--model", "debug"], capsys)
    assert code == 2 and "--prompt is empty" in err and not (tmp_path / "o.mp4").exists()
    rows = batch.run(debug_pipe, [batch.Item(name="a", video=str(clip), prompt="")], tmp_path / "b", batch.Options())
    assert rows[0]["status"] == "failed" and "prompt is empty" in rows[0]["error"]
    studio = Studio(["debug"])
    try:
        session = studio.open_video(Session(), str(clip), "debug")
        with pytest.raises(UserError, match="prompt is empty"):
            studio.generate(session, "")
    finally:
        studio.close()


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--guidance", "-1", "--guidance must be between 0 and 100"),
        ("--control-scale", "-3", "--control-scale must be between 0 and 100"),
        ("--steps", "0", "--steps must be a whole number >= 1 (got 0)"),
        ("--seed", "-4", "--seed must be a whole number from 0"),
        ("--dtype", "fp16", "--dtype fp16 on a CPU"),
    ],
)
def test_the_cli_applies_the_apis_rules(clip, tmp_path, capsys, flag, value, message):
    if flag == "--dtype" and torch.cuda.is_available():
        pytest.skip("fp16 is refused on a CPU only")
    out = tmp_path / "o.mp4"
    code, err = run_cli(["generate", clip, "--prompt", "x", "-o", out, "--model", "debug", flag, value], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and not out.exists()


def test_batch_manifest_numbers_follow_the_same_rules(tmp_path, clip, capsys):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"video": str(clip), "prompt": "x", "guidance": -2}) + "\n")
    code, err = run_cli(["batch", manifest, "-o", tmp_path / "out", "--model", "debug"], capsys)
    assert (
        code == 2
        and "m.jsonl:1: 'guidance' must be between 0 and 100 (got -2.0)" in err
        and not (tmp_path / "out").exists()
    )


# ------------------------------------------------------------------------------------ manifests between commands


def test_batch_results_feed_evaluate_from_another_working_directory(tmp_path, clip):
    """`rewas batch vids ... -o bvid`, then `rewas evaluate bvid/results.jsonl` from elsewhere. Before: the
    results named `vids/ball.mp4` relative to where batch ran, evaluate looked for it beside results.jsonl, and
    said `3 clips (3 failed)` with exit 0."""
    vids = tmp_path / "work" / "vids"
    vids.mkdir(parents=True)
    for name in ("a", "b"):
        (vids / f"{name}.mp4").write_bytes(clip.read_bytes())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rewas = [sys.executable, "-m", "rewas"]
    run = subprocess.run(
        [*rewas, "batch", "vids", "--prompt", "wood knocks", "-o", "bvid", "--model", "debug", "--steps", "1", "-q"],
        cwd=tmp_path / "work",
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    rows = [json.loads(x) for x in (tmp_path / "work" / "bvid" / "results.jsonl").read_text().splitlines()]
    assert {r["video"] for r in rows} == {"../vids/a.mp4", "../vids/b.mp4"}  # relative to the results' folder
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    manifest = tmp_path / "work" / "bvid" / "results.jsonl"
    run = subprocess.run(
        [*rewas, "evaluate", os.path.relpath(manifest, elsewhere), "--out", "r.json", "--metrics", "av_align", "-q"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0 and "2 clips (0 failed)" in run.stderr, run.stderr
    assert all("av_align" in item for item in json.loads((elsewhere / "r.json").read_text())["items"])


def test_evaluate_exits_non_zero_when_a_clip_fails(tmp_path, clip, capsys):
    from rewas.audio import write_wav

    write_wav(tmp_path / "a.wav", samples.click_track(1.0, [0.5]))
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        json.dumps({"video": str(clip), "audio": "a.wav"}) + "\n" + json.dumps({"audio": "missing.wav"}) + "\n"
    )
    code, err = run_cli(["evaluate", manifest, "--out", tmp_path / "r.json", "--metrics", "av_align", "-q"], capsys)
    assert code == 1 and "2 clips (1 failed)" in err
    items = json.loads((tmp_path / "r.json").read_text())["items"]
    assert "av_align" in items[0] and "missing.wav" in items[1]["error"]


# ------------------------------------------------------------------------------------------------- the CLI


def test_convert_refuses_a_file_that_is_not_a_checkpoint(tmp_path, capsys):
    bad = tmp_path / "notes.ckpt"
    bad.write_text("hello\n")
    code, err = run_cli(["convert", "--rewas-ckpt", bad, "-o", tmp_path / "m", "--allow-partial"], capsys)
    assert code == 2 and "not a PyTorch checkpoint" in err and "internal error" not in err
    assert not (tmp_path / "m").exists()


def test_download_offline_says_what_to_fetch_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    import socket

    def offline(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(socket, "create_connection", offline)
    code, err = run_cli(["download", tmp_path / "files"], capsys)
    assert code == 1 and err.startswith("rewas: error: cannot reach") and len(err.strip().splitlines()) == 1
    assert "/resolve/main/" in err and "/blob/" not in err  # links that fetch the file, not a web page
    assert "[CC BY-NC-SA 4.0]" in err and "[MIT]" in err  # each file's licence, before anything is fetched
    assert "only if the ReWaS file lacks the VAE, HiFi-GAN or CLAP weights: vae_mel_16k_64bins.ckpt" in err
    assert not (tmp_path / "files").exists()


def test_help_version_and_defaults(capsys):
    from rewas.cli import build_parser
    from rewas.pipeline import load_config

    code, err = run_cli(["nope"], capsys)
    assert code == 2 and "(see rewas --help)" in err
    code, err = run_cli(["convert", "-o", "x", "--bogus"], capsys)  # names the command that was run
    assert code == 2 and err.strip() == "rewas: error: unrecognized arguments: --bogus (see rewas convert --help)"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--version"])
    assert capsys.readouterr().out.strip() == f"rewas {__import__('rewas').__version__}"
    parser = build_parser()
    helps = {a.dest: a.help for a in parser._subparsers._group_actions[0].choices["generate"]._actions}
    sampler = load_config("default").sampler
    assert f"{sampler.steps} for the default model" in helps["steps"]
    assert f"{sampler.scheduler} for the default model" in helps["scheduler"]
    subs = parser._subparsers._group_actions[0].choices
    model_help = next(a.help for a in subs["info"]._actions if a.dest == "model")
    assert "'default'" in model_help and "small" in model_help
    assert all(a.help for p in subs.values() for a in p._actions if a.dest != "help")  # every option explained


def test_energy_says_what_it_wrote(tmp_path, capsys):
    from rewas.audio import write_wav

    write_wav(tmp_path / "a.wav", samples.click_track(1.0, [0.5]))
    code, err = run_cli(["energy", tmp_path / "a.wav", "--out", tmp_path / "e.csv"], capsys)
    assert code == 0 and "100 frames (1.00 s)" in err and str(tmp_path / "e.csv") in err


def test_a_bad_energy_csv_is_the_items_error_in_batch(debug_pipe, clip, tmp_path):
    from rewas import batch

    bad = tmp_path / "e.csv"
    bad.write_text("time_s,energy\n0,-5\n1,nan\n")
    items = [batch.Item(name="a", video=str(clip), prompt="x", energy_in=str(bad))]
    row = batch.run(debug_pipe, items, tmp_path / "b", batch.Options(steps=1))[0]
    assert row["status"] == "failed" and "\n" not in row["error"] and "internal error" not in row["error"]
