"""Lean installs: `rewas generate` runs on the core dependencies alone; the rest are pip extras, and a command
whose extra is missing says which one to install (one line, exit 2)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli

from rewas import samples
from rewas._optional import EXTRAS, MissingExtraError, require, require_extra
from rewas.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
# what a core install must do without: every extra's modules, the test-only diffusers, and the packages the
# MiniLM weights package drags in (sentence-transformers -> transformers, scikit-learn, scipy)
OPTIONAL = sorted(
    {m for modules in EXTRAS.values() for m in modules} | {"diffusers", "sentence_transformers", "sklearn"}
)

# Imports of OPTIONAL fail (as on a core-only install) and are recorded; then a generation runs through the CLI.
GENERATE = """
import importlib.abc, json, sys
blocked, tried = set(json.loads(sys.argv[1])), []
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            tried.append(name)
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
sys.meta_path.insert(0, Block())
from rewas.cli import main
code = main(sys.argv[2:])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in blocked)
print(json.dumps({"code": code, "tried": tried, "loaded": loaded}))
"""


def _dist(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("install") / "clip.mp4"
    samples.write_video(path, samples.flash_frames([0.4]), 1.0, 25, codec="libx264")
    return path


@pytest.fixture(scope="module")
def wav(tmp_path_factory):
    import soundfile as sf

    path = tmp_path_factory.mktemp("install") / "clicks.wav"
    sf.write(path, samples.click_track(1.0, [0.3, 0.6]), 16000)
    return path


@pytest.fixture(scope="module")
def paper_kind_folder(tmp_path_factory):
    """A model folder of the paper's kinds (Motionformer video encoder, RoBERTa text tower with byte-level BPE,
    HiFi-GAN vocoder), debug-sized, saved as `rewas convert` writes one, and its tokenizer folder."""
    import torch
    from tokenizers import ByteLevelBPETokenizer

    from rewas import ReWaSPipeline
    from rewas.text_encoder import build_text_encoder

    d = tmp_path_factory.mktemp("paper_kind")
    pipe = ReWaSPipeline.from_pretrained("debug")
    assert pipe.config.video_encoder.kind == "motionformer" and pipe.config.vocoder.kind == "hifigan"
    text = dataclasses.replace(pipe.config.text, tokenizer="roberta-bpe", vocab_size=300)
    pipe.config = pipe.config.replace(text=text)
    torch.manual_seed(0)
    pipe.text_encoder = build_text_encoder(text)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        ["a ball bouncing on the floor"] * 20,
        vocab_size=300,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
    )
    (d / "tok").mkdir()
    bpe.save_model(str(d / "tok"))
    return pipe.save_pretrained(d / "model"), d / "tok"


def _generate(args, tmp_path):
    out = tmp_path / "out.mp4"
    cmd = [
        sys.executable,
        "-c",
        GENERATE,
        json.dumps(OPTIONAL),
        "generate",
        *map(str, args),
        "--prompt",
        "a ball",
        "-o",
        str(out),
        "--steps",
        "1",
        "--seed",
        "0",
        "--device",
        "cpu",
        "-q",
        "--wav",
        str(tmp_path / "a.wav"),
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["code"] == 0, run.stderr[-3000:]
    assert result["tried"] == [] and result["loaded"] == [], result
    assert out.is_file() and (tmp_path / "a.wav").is_file()


def test_default_model_generates_without_the_optional_packages(clip, tmp_path):
    _generate([clip], tmp_path)


def test_paper_kind_model_folder_generates_without_the_optional_packages(clip, paper_kind_folder, tmp_path):
    model, tok = paper_kind_folder
    _generate([clip, "--model", model, "--tokenizer-dir", tok], tmp_path)


# ------------------------------------------------------------------------------------------ a missing extra


def test_require_names_the_extra_in_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 now fails as if it were not installed
    with pytest.raises(MissingExtraError) as e:
        require("cv2", extra="eval", for_="AV-Align")
    assert isinstance(e.value, UserError) and isinstance(e.value, ImportError)
    assert str(e.value) == 'AV-Align needs the [eval] extra (opencv-python-headless): pip install "rewas[eval]"'
    with pytest.raises(MissingExtraError, match=r"rewas evaluate needs the \[eval\] extra \(opencv-python-headless\)"):
        require_extra("eval", for_="rewas evaluate")
    require_extra("eval", for_="rewas evaluate", modules=("librosa",))  # installed: no error
    assert require("librosa", extra="eval", for_="onsets").__name__ == "librosa"


def test_energy_plot_without_matplotlib_is_a_user_error_before_any_work(monkeypatch, capsys, wav, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, err = run_cli(["energy", wav, "--out", tmp_path / "e.csv", "--plot", tmp_path / "e.png"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.strip() == (
        'rewas: error: rewas energy --plot needs the [plot] extra (matplotlib): pip install "rewas[plot]"'
    )
    assert not (tmp_path / "e.csv").exists()
    code, err = run_cli(["energy", wav, "--out", tmp_path / "e.csv"], capsys)  # without --plot: the core suffices
    assert code == 0 and (tmp_path / "e.csv").is_file(), err


def test_evaluate_and_train_name_their_extras(monkeypatch, capsys, tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"audio": "a.wav"}) + "\n")
    monkeypatch.setitem(sys.modules, "cv2", None)
    code, err = run_cli(["evaluate", manifest, "--out", tmp_path / "r.json"], capsys)
    assert code == 2 and err.strip().splitlines() == [
        'rewas: error: rewas evaluate needs the [eval] extra (opencv-python-headless): pip install "rewas[eval]"'
    ]
    monkeypatch.setitem(sys.modules, "accelerate", None)
    code, err = run_cli(["train", "phi", tmp_path, "--model", "debug", "-o", tmp_path / "run"], capsys)
    assert code == 2 and err.strip().splitlines() == [
        'rewas: error: rewas train needs the [train] extra (accelerate): pip install "rewas[train]"'
    ]


def test_an_installed_but_broken_extra_fails_the_evaluation_not_each_clip(clip, wav, tmp_path):
    """A cv2 that is there but does not import (a missing system library): the metric's import says which extra,
    and evaluate stops with that one line (exit 2) instead of marking every clip failed."""
    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "cv2.py").write_text('raise ImportError("libGL.so.1: cannot open shared object file")\n')
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"video": str(clip), "audio": str(wav)}) + "\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(stub), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "rewas",
            "evaluate",
            str(manifest),
            "--out",
            str(tmp_path / "r.json"),
            "--metrics",
            "av_align",
            "-q",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines() == [
        (
            'rewas: error: AV-Align needs the [eval] extra (opencv-python-headless): pip install "rewas[eval]" '
            "(libGL.so.1: cannot open shared object file)"
        )
    ]
    assert not (tmp_path / "r.json").exists()


# ------------------------------------------------------------------------------------------ the declarations


def test_extras_match_pyproject_and_dev_has_them_all():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = {name: {_dist(r) for r in reqs} for name, reqs in project["optional-dependencies"].items()}
    core = {_dist(r) for r in project["dependencies"]}
    for name, modules in EXTRAS.items():
        assert extras[name] == set(modules.values()), name
        assert not core & extras[name], name
    assert set().union(*(extras[n] for n in EXTRAS)) | {"diffusers", "pytest"} <= extras["dev"]
    # `make install` (and so `make test`, `make demo`) installs the [dev] extra
    assert re.search(r'pip install .*-e "\.\[dev\]"', (ROOT / "Makefile").read_text())


@pytest.mark.skipif(sys.platform != "linux" or shutil.which("make") is None, reason="the Linux rule of the Makefile")
def test_make_install_asks_for_the_cpu_build_of_torch_on_linux():
    """PyPI's Linux torch is the CUDA build (several GB): a plain `torch==2.13.0` pulls it on a machine whose pip is
    not set up for CPU wheels."""
    dry = subprocess.run(["make", "-n", "-B", ".venv/.installed"], cwd=ROOT, capture_output=True, text=True)
    line = next(x for x in dry.stdout.splitlines() if "pip install" in x and "torch==" in x)
    assert '"torch==2.13.0+cpu"' in line and "--extra-index-url https://download.pytorch.org/whl/cpu" in line
    gpu = subprocess.run(
        ["make", "-n", "-B", ".venv/.installed", "TORCH_SPEC=torch==2.13.0", "TORCH_INDEX="],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert any(x.endswith('install --quiet --no-deps  "torch==2.13.0"') for x in gpu.stdout.splitlines())


def test_a_built_wheel_alone_generates_with_the_default_model(clip, tmp_path):
    """What `pip install rewas` gets, with nothing read from the checkout: the package's data (the default model,
    the studio's page, the release manifests) and the `rewas` command. Built offline from a copy of the package's
    sources (setuptools writes its build/ beside them) and installed into a folder of its own."""
    src = tmp_path / "src"
    shutil.copytree(ROOT / "rewas", src / "rewas", ignore=shutil.ignore_patterns("__pycache__", "*.pyi"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = subprocess.run(
        [*pip, "wheel", str(src), "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist")],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp_path / "dist").glob("rewas-*.whl")
    site = tmp_path / "site"
    done = subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)])
    assert done.returncode == 0
    assert "rewas = rewas.cli:run" in next(site.glob("rewas-*.dist-info/entry_points.txt")).read_text()
    env = dict(os.environ, PYTHONPATH=str(site))
    probe = (
        "import importlib.resources as r, rewas\n"
        "assets = r.files('rewas') / 'assets'\n"
        "print(rewas.__file__)\n"
        "print(all((assets / p).is_file() for p in ('default/config.json', 'default/unet.safetensors',"
        " 'studio/curve.js', 'manifests/phi.json')))\n"
    )
    where = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert where.returncode == 0, where.stderr
    assert where.stdout.split() == [str(site / "rewas" / "__init__.py"), "True"]
    out = tmp_path / "out.mp4"
    command = [str(site / "bin" / "rewas"), "generate", str(clip), "--prompt", "a ball", "--steps", "2", "-q", "-o"]
    res = subprocess.run([sys.executable, *command, str(out)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert out.stat().st_size > 1000
