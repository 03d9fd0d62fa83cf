import json
import os
import subprocess
import sys
import threading
import types
from pathlib import Path

import numpy as np
import pytest
from avcheck import durations, ffmpeg_audio, ffmpeg_decodes_video, pyav_audio, streams

from rewas import cli
from rewas.cli import main
from rewas.errors import UserError


def read_wav(path) -> np.ndarray:
    import soundfile as sf

    wav, sr = sf.read(path, dtype="float32")
    assert sr == 16000
    return wav


def rel_change(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


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
    code, _, err = run(
        [
            "generate",
            media[name],
            "--prompt",
            "a ball bouncing",
            "-o",
            out,
            "--model",
            "debug",
            "--steps",
            "2",
            "--seed",
            "0",
            "--wav",
            tmp_path / "a.wav",
            "--energy-out",
            tmp_path / "e.csv",
        ],
        capsys,
    )
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
    code, _, err = run(
        ["generate", media["v25"], "--prompt", "a ball bouncing", "-o", out, "--steps", "2", "--seed", "0"], capsys
    )
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
        ["generate", media["v25"], "-o", tmp_path / "o.mp4", "--model", "debug", "--batch-size", "0"],
        ["generate", media["v25"], "-o", tmp_path / "o.mp4", "--model", "debug", "--eta", "-0.5"],
        ["generate", media["v25"], "-o", tmp_path / "o.mp4", "--model", "debug", "--guidance", "nan"],
        ["generate", media["v25"], "-o", tmp_path / "o.mp4", "--model", tmp_path / "no_model"],
        ["generate", media["v25"], "-o", tmp_path / "o.mp4", "--model", "debug", "--energy-in", media["not_video"]],
        ["generate", media["v25"], "-o", tmp_path / "o.mp4", "--model", "debug", "--device", "cuda:7"],
        ["generate", media["v25"], "-o", tmp_path / "o.mp4", "--model", "debug", "--scheduler", "euler"],
        ["info", "nonexistent-model"],
        ["frobnicate"],
    ]
    # finite but huge numbers sampled a NaN latent, an internal error; a step count past the diffusion's own, or a
    # curve in dB (-60) taken as nats, are the user's mistakes too
    big = tmp_path / "big.csv"
    big.write_text("time_s,energy\n0,1e30\n0.5,-5\n")
    decibels = tmp_path / "db.csv"
    decibels.write_text("time_s,energy\n0,-60\n0.5,-5\n")
    sample = ["generate", media["v25"], "-o", tmp_path / "o.mp4", "--model", "debug"]
    for extra in (
        ["--guidance", "1e30"], ["--control-scale", "1e30"], ["--eta", "2"], ["--steps", "1000", "--prompt", "x"],
        ["--energy-in", big, "--prompt", "x"], ["--energy-in", decibels, "--prompt", "x"], ["--layer", "a;level=1e30"],
    ):  # fmt: skip
        cases.append([*sample, *extra])
    before = media["v25"].read_bytes()
    for args in cases:
        code, _, err = run(args, capsys)
        assert code == 2, (args, err)
        assert len(err.strip().splitlines()) == 1, err
    assert media["v25"].read_bytes() == before and not (tmp_path / "o.mp4").exists()


def test_energy_in_steers_generation(media, tmp_path, capsys, debug_model_dir):
    """Two --energy-in curves give two soundtracks (the model's control is live), and --energy-out is the curve given,
    interpolated to the 10 ms frames and held past its ends. Generation repeats exactly (see the sampling flags'
    test), so the bound only needs to clear zero: it sits ~10x under the measured change (rel. 3e-4)."""
    curves = {"mid": ([0.0, 1.0, 2.0], [-9.0, -1.0, -9.0]), "late": ([0.0, 2.0, 2.5], [-9.0, -9.0, -1.0])}
    wavs = {}
    for name, (times, values) in curves.items():
        (tmp_path / f"{name}.csv").write_text("time_s,energy\n" + "".join(f"{t},{v}\n" for t, v in zip(times, values)))
        code, _, err = run(
            [
                "generate",
                media["v25"],
                "--prompt",
                "a ball bouncing",
                "-o",
                tmp_path / f"{name}.mp4",
                "--model",
                debug_model_dir,
                "--steps",
                "2",
                "--seed",
                "0",
                "-q",
                "--energy-in",
                tmp_path / f"{name}.csv",
                "--energy-out",
                tmp_path / f"{name}_used.csv",
                "--wav",
                tmp_path / f"{name}.wav",
            ],
            capsys,
        )
        assert code == 0, err
        used = np.loadtxt(tmp_path / f"{name}_used.csv", delimiter=",", skiprows=1)
        assert len(used) == 300 and used[-1, 0] == pytest.approx(2.99)
        np.testing.assert_allclose(used[:, 1], np.interp(used[:, 0], times, values), atol=1e-3)
        wavs[name] = read_wav(tmp_path / f"{name}.wav")
    assert rel_change(wavs["mid"], wavs["late"]) > 2e-5


@pytest.fixture(scope="module")
def generate(media, debug_model_dir, tmp_path_factory):
    """generate(*flags) -> the --wav of `rewas generate` with the live debug model, seed 0, 2 steps (2, so that DDIM's
    eta has a step whose noise it scales); each set of flags runs once per module."""
    folder, done = tmp_path_factory.mktemp("flags"), {}

    def run_with(*flags, model=debug_model_dir):
        key = (str(model), *map(str, flags))
        if key not in done:
            out = folder / f"{len(done)}"
            code = main(
                [
                    str(a)
                    for a in [
                        "generate",
                        media["v60"],
                        "--prompt",
                        "a ball bouncing",
                        "-o",
                        f"{out}.mp4",
                        "--wav",
                        f"{out}.wav",
                        "--model",
                        model,
                        "--steps",
                        "2",
                        "--seed",
                        "0",
                        "-q",
                        "--device",
                        "cpu",
                        *flags,
                    ]
                ]
            )  # CUDA runs are not bit-reproducible
            assert code == 0, f"generate {' '.join(key[1:])}: exit {code} (the error line is in the captured stderr)"
            done[key] = read_wav(f"{out}.wav")
        return done[key]

    return run_with


@pytest.mark.parametrize("flag, other", [("--guidance", 1.0), ("--eta", 0.0), ("--control-scale", 0.0)])
def test_sampling_flags_change_the_audio(generate, debug_model_dir, flag, other):
    """The model's default spelled out gives the implicit default's audio bit for bit (two runs: generation is
    deterministic for a seed); another value gives other audio. CPU runs repeat exactly, so any difference is the
    flag's doing; the bounds sit ~10x under the measured changes (rel. 6e-4 guidance, 2e-5 eta, 9e-4 control)."""
    from rewas.pipeline import load_config

    sampler = load_config(debug_model_dir).sampler
    default = {"--guidance": sampler.guidance, "--eta": sampler.eta, "--control-scale": 1.0}[flag]
    assert default != other
    base = generate()
    assert np.array_equal(generate(flag, default), base)
    assert rel_change(generate(flag, other), base) > {"--guidance": 5e-5, "--eta": 2e-6, "--control-scale": 5e-5}[flag]


def test_bf16_dtype_is_close_to_fp32(generate):
    """--dtype bf16 runs the diffusion model and video encoder in bfloat16 (8 mantissa bits): the audio is not fp32's
    bit for bit, but it strays from it far less than turning guidance off moves it (measured: 5e-5 against 6e-4)."""
    base, bf16 = generate("--dtype", "fp32"), generate("--dtype", "bf16")
    assert np.isfinite(bf16).all() and not np.array_equal(bf16, base)
    assert rel_change(bf16, base) < 0.25 * rel_change(generate("--dtype", "fp32", "--guidance", 1.0), base)


@pytest.fixture(scope="module")
def bpe_model(debug_model_dir, tmp_path_factory):
    """The live debug model with a byte-level BPE text encoder, saved without tokenizer files (as `rewas convert` does
    without --roberta-dir), and three tokenizer folders: two vocabularies, and one without RoBERTa's <s> and </s>."""
    import dataclasses

    import torch
    from tokenizers import ByteLevelBPETokenizer

    from rewas import ReWaSPipeline
    from rewas.text_encoder import build_text_encoder

    d = tmp_path_factory.mktemp("bpe")
    pipe = ReWaSPipeline.from_pretrained(debug_model_dir)
    text = dataclasses.replace(pipe.config.text, tokenizer="roberta-bpe", vocab_size=300)
    pipe.config = pipe.config.replace(text=text)
    torch.manual_seed(0)
    pipe.text_encoder = build_text_encoder(text)
    pipe.save_pretrained(d / "model")
    assert not (d / "model" / "tokenizer").exists()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    for name, corpus, special in (
        ("ball", "a ball bouncing on the floor", specials),
        ("rain", "rain on a tin roof, dogs barking", specials),
        ("no_specials", "a ball", []),
    ):
        bpe = ByteLevelBPETokenizer()
        bpe.train_from_iterator([corpus] * 20, vocab_size=300, special_tokens=special)
        (d / name).mkdir()
        bpe.save_model(str(d / name))
    return d


def test_tokenizer_dir(media, tmp_path, capsys, generate, bpe_model):
    """A BPE model needs --tokenizer-dir: without it, or with a missing or invalid folder, one line and exit 2, and
    no output; with it, the tokenizer is the one used: another vocabulary splits the prompt differently, other audio."""
    for extra in ([], ["--tokenizer-dir", tmp_path / "none"], ["--tokenizer-dir", bpe_model / "no_specials"]):
        out = tmp_path / "o.mp4"
        code, _, err = run(
            [
                "generate",
                media["v60"],
                "--prompt",
                "a ball bouncing",
                "-o",
                out,
                "--model",
                bpe_model / "model",
                "--steps",
                "1",
                *extra,
            ],
            capsys,
        )
        assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("rewas: error:"), (extra, err)
        assert not out.exists()
    ball = generate("--tokenizer-dir", bpe_model / "ball", model=bpe_model / "model")
    rain = generate("--tokenizer-dir", bpe_model / "rain", model=bpe_model / "model")
    assert np.isfinite(ball).all() and rel_change(rain, ball) > 2e-6  # measured 2e-5: the prompt's pull is weak here


@pytest.fixture(scope="module")
def train_cache(media, tmp_path_factory):
    """A two-clip training cache from `rewas train cache`."""
    from rewas import samples
    from rewas.audio import write_wav

    d = tmp_path_factory.mktemp("train_cache")
    lines = []
    for i, (video, hits) in enumerate([("v60", [0.5, 1.5]), ("vfr", [1.0])]):
        write_wav(d / f"a{i}.wav", samples.click_track(2.0, hits))
        lines.append({"video": str(media[video]), "audio": f"a{i}.wav", "caption": f"clip {i}"})
    (d / "m.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert main(["train", "cache", str(d / "m.jsonl"), "--model", "debug", "-o", str(d / "cache")]) == 0
    return d / "cache"


def _train_phi(cache, out, capsys, *flags):
    code, _, err = run(
        [
            "train",
            "phi",
            cache,
            "--model",
            "debug",
            "-o",
            out,
            "--batch-size",
            "2",
            "--lr",
            "1e-3",
            "--warmup",
            "1",
            "--log-every",
            "1",
            *flags,
        ],
        capsys,
    )
    assert code == 0, err
    logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    return [x["step"] for x in logs if "loss" in x], [x for x in logs if "resumed" in x]


def test_train_restart_ignores_the_checkpoints(train_cache, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert _train_phi(train_cache, run_dir, capsys, "--steps", "2") == ([1, 2], [])
    steps, resumed = _train_phi(train_cache, run_dir, capsys, "--steps", "3")
    assert steps == [3] and resumed[0]["step"] == 2  # the control: without --restart the run goes on from step 2
    steps, resumed = _train_phi(train_cache, run_dir, capsys, "--steps", "3", "--restart")
    assert steps == [1, 2, 3] and resumed == []  # from step 0, though a step-3 checkpoint is there


@pytest.fixture
def reset_accelerate():
    """accelerate keeps one process-wide state and refuses a second Accelerator with another mixed precision; a CLI
    process trains once, a test process many times."""
    from accelerate.state import AcceleratorState

    def reset():
        AcceleratorState._reset_state(True)

    reset()
    yield reset
    reset()


def test_train_mixed_precision_reaches_the_trainer(train_cache, tmp_path, capsys, reset_accelerate):
    """bf16 autocast is available on CPU: the same run in bf16 ends with other (nearby) weights than in fp32."""
    from safetensors.torch import load_file

    weights = {}
    for precision in ("no", "bf16"):
        reset_accelerate()
        _train_phi(train_cache, tmp_path / precision, capsys, "--steps", "2", "--mixed-precision", precision)
        assert json.loads((tmp_path / precision / "train.json").read_text())["config"]["mixed_precision"] == precision
        weights[precision] = load_file(tmp_path / precision / "model" / "phi.safetensors")
    differ = [k for k in weights["no"] if not np.array_equal(weights["no"][k].numpy(), weights["bf16"][k].numpy())]
    assert differ
    # two Adam steps of lr 1e-3 move a weight by about 2e-3 at most: both runs stay near each other
    assert max(float((weights["no"][k] - weights["bf16"][k]).abs().max()) for k in differ) < 5e-3


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="fp16 autocast works on a CUDA machine")
def test_train_fp16_without_a_gpu_is_refused(train_cache, tmp_path, capsys):
    """accelerate takes fp16 on a CPU and trains in fp32 without a word; the user asked for something else."""
    code, _, err = run(
        [
            "train",
            "phi",
            train_cache,
            "--model",
            "debug",
            "-o",
            tmp_path / "run",
            "--steps",
            "1",
            "--mixed-precision",
            "fp16",
        ],
        capsys,
    )
    assert code == 2 and "fp16 needs a CUDA GPU" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def eval_manifest(media, tmp_path_factory):
    """A 3 s clip whose audio and reference both click at 0.5, 1.5 and 2.5 s."""
    from rewas import samples
    from rewas.audio import write_wav

    d = tmp_path_factory.mktemp("eval")
    write_wav(d / "clicks.wav", samples.click_track(3.0, [0.5, 1.5, 2.5]))
    line = {"video": str(media["v25"]), "audio": "clicks.wav", "reference": "clicks.wav"}
    (d / "m.jsonl").write_text(json.dumps(line) + "\n")
    return d / "m.jsonl"


def _evaluate(manifest, out, capsys, *flags):
    code, _, err = run(["evaluate", manifest, "--out", out, "-q", *flags], capsys)
    assert code == 0, err
    return json.loads(out.read_text())


def test_evaluate_metrics_restricts_the_report(eval_manifest, tmp_path, capsys):
    onset = {"onset_acc", "onset_detection_acc", "onset_ap"}
    full = _evaluate(eval_manifest, tmp_path / "all.json", capsys)
    assert set(full["mean"]) == {"energy_mae", "av_align"} | onset  # the control: every metric applies to the clip
    only = _evaluate(eval_manifest, tmp_path / "onset.json", capsys, "--metrics", "onset")
    assert set(only["mean"]) == onset and not {"energy_mae", "av_align"} & set(only["items"][0])
    two = _evaluate(eval_manifest, tmp_path / "two.json", capsys, "--metrics", "energy_mae, av_align")
    assert set(two["mean"]) == {"energy_mae", "av_align"}
    code, _, err = run(["evaluate", eval_manifest, "--out", tmp_path / "x.json", "--metrics", "fad"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and not (tmp_path / "x.json").exists()


def test_evaluate_onset_seconds_sets_the_onset_window(eval_manifest, tmp_path, capsys):
    whole = _evaluate(eval_manifest, tmp_path / "whole.json", capsys, "--metrics", "onset")["items"][0]
    first = _evaluate(eval_manifest, tmp_path / "first.json", capsys, "--metrics", "onset", "--onset-seconds", "1")[
        "items"
    ][0]
    assert (whole["onsets_target"], whole["onsets_generated"]) == (3, 3)
    assert (first["onsets_target"], first["onsets_generated"]) == (1, 1)  # only the click at 0.5 s


def test_energy_command(media, tmp_path, capsys):
    import soundfile as sf

    t = np.arange(32000) / 16000
    sf.write(tmp_path / "tone.wav", (np.sin(2 * np.pi * 440 * t) * (t > 1)).astype(np.float32), 16000)
    code, _, err = run(
        ["energy", tmp_path / "tone.wav", "--out", tmp_path / "e.csv", "--plot", tmp_path / "e.png"], capsys
    )
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
    res = subprocess.run(
        [sys.executable, "-m", "rewas", "info", "paper", "--json"], capture_output=True, text=True, env=env
    )
    assert res.returncode == 0, res.stderr
    params = json.loads(res.stdout)["parameters"]
    assert {"unet", "adapter", "phi", "vae", "vocoder", "text_encoder"} <= set(params)
    assert all(isinstance(v, int) for v in params.values())
    assert abs(params["unet"] / 416.0e6 - 1) < 0.005 and abs(params["adapter"] / 182.5e6 - 1) < 0.01
    assert abs(params["phi"] / 22.0e6 - 1) < 0.05


def test_console_script_bad_input_has_no_traceback(tmp_path):
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "rewas",
            "generate",
            str(tmp_path / "none.mp4"),
            "-o",
            str(tmp_path / "o.mp4"),
            "--model",
            "debug",
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr


def test_help_and_a_mistyped_command_answer_without_importing_torch():
    """Importing torch takes about 1 s: the command line's help and its argument errors must not wait for it."""
    probe = (
        "import sys\n"
        "from rewas.cli import main\n"
        "for argv in (['generate', 'v.mp4', '--bogus'], ['train', 'phi', '--help'], ['--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as e:\n"
        "        assert e.code in (0, 2), e.code\n"
        "print(sorted(m for m in ('torch', 'rewas.pipeline') if m in sys.modules))\n"
    )
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "[]"


def test_info_text(capsys):
    code, out, _ = run(["info", "debug"], capsys)
    assert code == 0 and "unet" in out and "adapter" in out


def test_a_generation_with_the_default_model_imports_no_compiler(media, tmp_path):
    """`rewas generate` on the default model never imports torch._dynamo (0.8 s here): building its text encoder on
    the meta device once did, through an nn.Embedding's initialisation there."""
    probe = (
        "import sys\n"
        "from rewas.cli import main\n"
        f"code = main(['generate', {str(media['v25'])!r}, '--prompt', 'a ball', '--steps', '1', '-q', '-o',"
        f" {str(tmp_path / 'out.mp4')!r}])\n"
        "print(code, 'torch._dynamo' in sys.modules)\n"
    )
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "0 False"


# stdout to a pipe or a file, as Python buffers it by default (this shell may set PYTHONUNBUFFERED)
BUFFERED = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}


def test_the_command_flushes_runs_atexit_and_skips_the_teardown():
    """`rewas` (cli.run) ends the process once the command is done: its output (Python's and a C library's) and
    atexit handlers first, then no interpreter teardown (0.25-0.3 s once torch is imported), which a __del__ at
    teardown would show."""
    probe = (
        "import atexit, ctypes, sys\n"
        "from rewas import cli\n"
        "class Teardown:\n"
        "    def __del__(self):\n"
        "        sys.stderr.write('teardown\\n')\n"
        "keep = Teardown()\n"
        "atexit.register(lambda: sys.stderr.write('atexit\\n'))\n"
        "ctypes.CDLL(None).printf(b'native\\n')\n"
        "sys.argv = ['rewas', *sys.argv[1:]]\n"
        "cli.run()\n"
    )

    def probe_run(*argv: str, source: str = probe):
        return subprocess.run([sys.executable, "-c", source, *argv], capture_output=True, text=True, env=BUFFERED)

    res = probe_run("info", "debug")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.rstrip().splitlines()
    assert lines[0] == "model debug (debug)" and lines[-2].startswith("  and --runtime") and lines[-1] == "native"
    assert res.stderr.splitlines() == ["atexit"]
    res = probe_run("info", "nothing-such")
    assert res.returncode == 2 and res.stderr.splitlines()[0].startswith("rewas: error:")
    assert res.stderr.splitlines()[1:] == ["atexit"]
    res = probe_run("info", "debug", source=probe.replace("cli.run()", "sys.exit(cli.main())"))
    assert res.returncode == 0 and res.stderr.splitlines() == ["atexit", "teardown"]  # the probe sees a teardown
    # run inside another program (as cProfile -m, memray or pdb run it): that program reports after, so it keeps
    # the usual exit
    inside = probe.replace("cli.run()", "import runpy\nrunpy.run_module('rewas', run_name='__main__', alter_sys=True)")
    res = probe_run("info", "debug", source=inside)
    assert res.returncode == 0 and res.stderr.splitlines() == ["atexit", "teardown"]


def test_watchers_and_other_threads_keep_the_usual_exit(monkeypatch):
    """cProfile and debuggers register a sys.monitoring tool on Python 3.12+ instead of sys.setprofile. (The test's
    own process has threads and may have a tracer of its own: each condition is set up alone.)"""
    here = threading.current_thread()
    monkeypatch.setattr(threading, "enumerate", lambda: [here, types.SimpleNamespace(daemon=True)])
    monkeypatch.setattr(sys, "getprofile", lambda: None)
    monkeypatch.setattr(sys, "gettrace", lambda: None)
    monkeypatch.setattr(sys, "monitoring", types.SimpleNamespace(get_tool=lambda tool: None), raising=False)
    assert not cli._watched()
    monkeypatch.setattr(
        sys, "monitoring", types.SimpleNamespace(get_tool=lambda tool: "cProfile" if tool == 2 else None)
    )
    assert cli._watched()
    monkeypatch.delattr(sys, "monitoring")  # Python 3.11 and before
    assert not cli._watched()
    monkeypatch.setattr(sys, "gettrace", lambda: print)
    assert cli._watched()
    monkeypatch.setattr(sys, "gettrace", lambda: None)
    monkeypatch.setattr(threading, "enumerate", lambda: [here, types.SimpleNamespace(daemon=False)])
    assert cli._watched()


def test_a_profiler_still_gets_the_usual_exit(tmp_path):
    stats = tmp_path / "info.prof"
    res = subprocess.run(
        [sys.executable, "-m", "cProfile", "-o", str(stats), "-m", "rewas", "info", "debug"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert stats.stat().st_size > 0


def test_a_reader_that_goes_away_ends_the_command_quietly():
    """`rewas info | head -1`: the reader closes the pipe; rewas stops as a Unix tool does (128 + SIGPIPE), with
    no "internal error", whether Python buffers stdout or not."""
    for env in (BUFFERED, dict(BUFFERED, PYTHONUNBUFFERED="1")):
        read, write = os.pipe()
        os.close(read)
        try:
            command = [sys.executable, "-m", "rewas", "info", "debug"]
            res = subprocess.run(command, stdout=write, stderr=subprocess.PIPE, env=env)
        finally:
            os.close(write)
        assert res.returncode == 141 and res.stderr == b""


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
def test_output_that_cannot_be_written_is_an_error_and_no_stdout_is_none():
    def to_full_disk(*argv: str) -> subprocess.CompletedProcess:  # one line, exit 1 (the machine, not a bug of ours)
        with open("/dev/full", "w") as full:
            command = [sys.executable, "-m", "rewas", *argv]
            return subprocess.run(command, stdout=full, stderr=subprocess.PIPE, env=BUFFERED)

    for argv in (["info", "debug", "--json"], ["--help"]):  # a command's output, and help's
        res = to_full_disk(*argv)
        assert res.returncode == 1 and res.stderr.decode().splitlines() == [
            "rewas: error: [Errno 28] No space left on device"
        ], argv
    # started with its stdout closed (a daemon, cron): nothing to print to, and nothing failed
    closed = ["sh", "-c", 'exec "$@" >&-', "sh", sys.executable, "-m", "rewas", "info", "debug"]
    res = subprocess.run(closed, stderr=subprocess.PIPE)
    assert res.returncode == 0 and res.stderr == b""


@pytest.mark.parametrize(
    "stop, code, said", [("Terminated", 143, "terminated"), ("KeyboardInterrupt", 130, "interrupted")]
)
def test_an_interruption_that_lands_in_a_finaliser_still_ends_the_command(monkeypatch, capsys, stop, code, said):
    """SIGTERM or Ctrl+C that arrives while a finaliser runs (a progress bar's `__del__`, as the command ends) is
    an exception Python can only report, with a traceback, and then carries on: the command ended 0. It ends as
    interrupted, in one line."""
    from rewas.errors import Terminated

    stops = {"Terminated": Terminated, "KeyboardInterrupt": KeyboardInterrupt}

    class Bar:
        def __del__(self):
            raise stops[stop]

    monkeypatch.setattr(cli, "cmd_info", lambda args: Bar() and None)  # made and collected at once
    assert main(["info", "debug"]) == code
    assert capsys.readouterr().err == f"rewas: {said}\n"


def test_outputs_are_written_all_or_none(media, tmp_path, capsys, monkeypatch):
    """A video, its WAV and its curve belong together: a disk that fills at the last of them leaves none of them
    new, and the earlier run's as they were (written one after another, the new video stood beside the old WAV)."""
    import errno

    from rewas import energy

    out, wav, curve = tmp_path / "o.mp4", tmp_path / "o.wav", tmp_path / "o.csv"
    args = ["generate", media["v25"], "--prompt", "x", "-o", out, "--wav", wav, "--energy-out", curve, "-q"]
    code, _, err = run([*args, "--model", "debug", "--steps", "1", "--seed", "1"], capsys)
    assert code == 0, err
    before = {p: p.read_bytes() for p in (out, wav, curve)}

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(energy, "write_csv", full)
    code, _, err = run([*args, "--model", "debug", "--steps", "1", "--seed", "2"], capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1 and "No space left" in err, err
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.csv", "o.mp4", "o.wav"]  # no temporary left


def test_interruptions_wait_while_outputs_are_put_in_place():
    """Ctrl+C or SIGTERM while a command's outputs are put in place comes once they all are, whatever thread the
    system hands the signal to (masked in the main thread alone, a thread of torch's or tqdm's took it, and the
    handler ran in the block)."""
    import signal

    from rewas.files import _signals_held

    came, stop = [], threading.Event()
    idle = threading.Thread(target=stop.wait)  # a thread that does not mask the signal, as torch's
    idle.start()
    previous = signal.signal(signal.SIGTERM, lambda *a: came.append("SIGTERM"))
    try:
        for _ in range(5):
            came.clear()
            with _signals_held():
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(1000):  # bytecode enough for a handler to have run
                    pass
                assert came == []
            assert came == ["SIGTERM"]
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop.set()
        idle.join()


def test_outputs_put_in_place_together_are_put_back_when_one_cannot_be(tmp_path, monkeypatch):
    """A move that fails once others are done (a WAV open in a player, on Windows) undoes them: the earlier outputs
    come back, and nothing temporary is left."""
    from rewas import files

    video, stems = tmp_path / "o.mp4", tmp_path / "o.stems"
    video.write_text("earlier video")
    stems.mkdir()
    (stems / "soundtrack.json").write_text("earlier")
    replace = os.replace

    def refused(src, dst):
        if Path(dst) == stems and "earlier" not in Path(src).name:
            raise PermissionError(13, "in use", str(dst))
        replace(src, dst)

    monkeypatch.setattr(files.os, "replace", refused)
    with pytest.raises(PermissionError):
        with files.atomic_outputs(video, stems) as (new_video, new_stems):
            new_video.write_text("new video")
            new_stems.mkdir()
            (new_stems / "soundtrack.json").write_text("new")
    assert video.read_text() == "earlier video" and (stems / "soundtrack.json").read_text() == "earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.mp4", "o.stems"]


def test_work_stops_at_its_next_step_after_a_swallowed_interruption(monkeypatch):
    """Swallowed mid-sampling, Ctrl+C let the command run on for minutes, to exit 130 at the end."""
    monkeypatch.setattr(cli, "_swallowed", [KeyboardInterrupt()])
    bar = types.SimpleNamespace(total=None, n=0, update=lambda k: None)
    with pytest.raises(KeyboardInterrupt):
        cli._updater(bar)(1, 20)


def test_earlier_outputs_that_cannot_be_put_back_are_kept_and_named(tmp_path, monkeypatch):
    """Undoing a failed placement can fail too (a scanner holding a file): the earlier output is then kept beside its
    place under a name no clean-up takes, and the error says where; it was deleted with the temporary folders."""
    from rewas import files

    video, wav, curve = tmp_path / "v.mp4", tmp_path / "w.wav", tmp_path / "x.csv"
    video.write_text("user v")
    wav.write_text("user w")
    replace = os.replace

    def flaky(src, dst):
        if Path(dst) == curve or (Path(dst) == wav and "earlier" in Path(src).name):
            raise PermissionError(13, "in use", str(dst))
        replace(src, dst)

    monkeypatch.setattr(files.os, "replace", flaky)
    with pytest.raises(OSError, match="could not be put back") as caught:
        with files.atomic_outputs(video, wav, curve) as temps:
            for path in temps:
                path.write_text("new")
    spare = tmp_path / f"w.wav.earlier-{os.getpid()}"
    assert video.read_text() == "user v" and spare.read_text() == "user w" and str(spare) in str(caught.value)
    assert not curve.exists()
    with pytest.raises(ValueError, match="named twice"):
        with files.atomic_outputs(video, tmp_path / "." / "v.mp4"):
            pass
    (tmp_path / "o.wav").mkdir()  # someone's folder where a file output goes: refused, not replaced
    (tmp_path / "o.wav" / "precious").write_text("keep")
    with pytest.raises(UserError, match="is a folder now"):
        with files.atomic_outputs(tmp_path / "o.wav") as (path,):
            path.write_text("new")
    assert (tmp_path / "o.wav" / "precious").read_text() == "keep"
