import json
import os
import subprocess
import sys

import numpy as np
import pytest

from rewas.cli import main

from avcheck import durations, ffmpeg_audio, ffmpeg_decodes_video, pyav_audio, streams


def run(args, capsys):
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", ["v25", "v2997", "v60", "long12"])
def test_generate_end_to_end(media, tmp_path, capsys, name):
    out = tmp_path / "out.mp4"
    code, _, err = run(["generate", media[name], "--prompt", "a ball bouncing", "-o", out, "--model", "debug",
                        "--steps", "2", "--seed", "0", "--wav", tmp_path / "a.wav", "--energy-out", tmp_path / "e.csv"], capsys)
    assert code == 0, err
    from rewas.frames import probe

    info = probe(media[name])
    frame = 1 / info.fps
    assert streams(out) == ["video", "audio"]
    assert ffmpeg_decodes_video(out) == round(info.duration * info.fps)
    v_dur, a_dur = durations(out)
    assert abs(v_dur - info.duration) < 1e-3 and abs(a_dur - v_dur) <= frame
    offset, samples, _ = pyav_audio(out)
    assert abs(offset) <= 0.005 and len(samples) / 16000 >= info.duration - frame
    assert abs(len(ffmpeg_audio(out)) / 16000 - info.duration) <= frame
    import soundfile as sf

    wav, sr = sf.read(tmp_path / "a.wav", dtype="float32")
    assert sr == 16000 and wav.ndim == 1 and len(wav) == round(info.duration * 16000)
    lines = (tmp_path / "e.csv").read_text().splitlines()
    assert lines[0] == "time_s,energy" and len(lines) - 1 == len(wav) // 160
    assert "wrote" in err and "seed 0" in err


def test_generate_uses_the_embedded_default_model(media, tmp_path, capsys):
    out = tmp_path / "o.mp4"
    code, _, err = run(["generate", media["v25"], "--prompt", "a ball bouncing", "-o", out, "--steps", "2", "--seed", "0"], capsys)
    assert code == 0, err
    assert streams(out) == ["video", "audio"]


@pytest.mark.parametrize("name", ["missing", "directory", "not_video", "zero_frames", "audio_only"])
def test_bad_inputs_exit_2_with_one_line_and_no_output(media, tmp_path, capsys, name):
    source = {"missing": tmp_path / "missing.mp4", "directory": tmp_path}.get(name) or media[name]
    out = tmp_path / "out.mp4"
    code, _, err = run(["generate", source, "--prompt", "x", "-o", out, "--model", "debug", "--steps", "1"], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("rewas: error:") and "Traceback" not in err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".rewas")]


def test_bad_options_exit_2(media, tmp_path, capsys):
    cases = [
        ["generate", media["v25"], "-o", media["v25"], "--model", "debug"],  # would overwrite the input
        ["generate", media["v25"], "-o", tmp_path / "o.gif", "--model", "debug"],
        ["generate", media["v25"], "-o", tmp_path / "o.mp4", "--model", "debug", "--wav", tmp_path / "a.mp3"],
        ["generate", media["v25"], "-o", tmp_path / "o.mp4", "--model", "debug", "--steps", "0"],
        ["generate", media["v25"], "-o", tmp_path / "o.mp4", "--model", tmp_path / "no_model"],
        ["generate", media["v25"], "-o", tmp_path / "o.mp4", "--model", "debug", "--energy-in", media["not_video"]],
        ["generate", media["v25"], "-o", tmp_path / "o.mp4", "--model", "debug", "--device", "cuda:7"],
        ["generate", media["v25"], "-o", tmp_path / "o.mp4", "--model", "debug", "--scheduler", "euler"],
        ["info", "nonexistent-model"],
        ["frobnicate"],
    ]
    before = media["v25"].read_bytes()
    for args in cases:
        code, _, err = run(args, capsys)
        assert code == 2, (args, err)
        assert len(err.strip().splitlines()) == 1, err
    assert media["v25"].read_bytes() == before and not (tmp_path / "o.mp4").exists()


def test_energy_in_steers_generation(media, tmp_path, capsys):
    curve = tmp_path / "curve.csv"
    curve.write_text("time_s,energy\n0,-9\n1.0,-1\n2.0,-9\n")
    code, _, err = run(["generate", media["v25"], "-o", tmp_path / "o.mp4", "--model", "debug", "--steps", "1",
                        "--energy-in", curve, "--energy-out", tmp_path / "used.csv", "-q"], capsys)
    assert code == 0, err
    used = np.loadtxt(tmp_path / "used.csv", delimiter=",", skiprows=1)
    assert used[100, 1] == pytest.approx(-1.0) and used[0, 1] == pytest.approx(-9.0) and used[-1, 1] == pytest.approx(-9.0)


def test_energy_command(media, tmp_path, capsys):
    import soundfile as sf

    t = np.arange(32000) / 16000
    sf.write(tmp_path / "tone.wav", (np.sin(2 * np.pi * 440 * t) * (t > 1)).astype(np.float32), 16000)
    code, _, err = run(["energy", tmp_path / "tone.wav", "--out", tmp_path / "e.csv", "--plot", tmp_path / "e.png"], capsys)
    assert code == 0, err
    rows = np.loadtxt(tmp_path / "e.csv", delimiter=",", skiprows=1)
    assert rows.shape == (200, 2) and rows[-1, 0] == pytest.approx(1.99)
    assert rows[150, 1] > rows[50, 1] + 1  # the tone starts at 1 s (silence sits at log(1e-5))
    assert (tmp_path / "e.png").read_bytes()[:4] == b"\x89PNG"
    code, _, _ = run(["energy", media["with_audio"], "--out", tmp_path / "v.csv"], capsys)  # a video's soundtrack
    assert code == 0 and len((tmp_path / "v.csv").read_text().splitlines()) == 201
    code, _, err = run(["energy", media["v25"], "--out", tmp_path / "x.csv"], capsys)  # no audio stream
    assert code == 2 and "no audio" in err and not (tmp_path / "x.csv").exists()


def test_info_paper_json_from_the_console_script():
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    res = subprocess.run([sys.executable, "-m", "rewas", "info", "paper", "--json"], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    params = json.loads(res.stdout)["parameters"]
    assert {"unet", "adapter", "phi", "vae", "vocoder", "text_encoder"} <= set(params)
    assert all(isinstance(v, int) for v in params.values())
    assert abs(params["unet"] / 416.0e6 - 1) < 0.005 and abs(params["adapter"] / 182.5e6 - 1) < 0.01
    assert abs(params["phi"] / 22.0e6 - 1) < 0.05


def test_console_script_bad_input_has_no_traceback(tmp_path):
    res = subprocess.run([sys.executable, "-m", "rewas", "generate", str(tmp_path / "none.mp4"), "-o",
                          str(tmp_path / "o.mp4"), "--model", "debug"], capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr


def test_info_text(capsys):
    code, out, _ = run(["info", "debug"], capsys)
    assert code == 0 and "unet" in out and "adapter" in out
