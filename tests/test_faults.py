"""Faults of the machine, simulated without hardware (issue 30): a full disk during a write is a file-size limit
(RLIMIT_FSIZE) on the process. The run ends with one line that is not called an internal error, exit 1, nothing
partial is left, and what was there before is intact."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from rewas import samples

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not hasattr(resource, "RLIMIT_FSIZE"), reason="needs POSIX resource limits")


def _limited(args: list, cwd: Path, max_bytes: int) -> subprocess.CompletedProcess:
    """`rewas ARGS` in a process that may not write a file past `max_bytes` (writes past it fail with EFBIG)."""

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "rewas", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, env=env, preexec_fn=limit, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("faults") / "ball.mp4"
    samples.write_video(path, samples.bouncing_ball_frames(bounce_period=0.5), 2.0, 25)
    return path


def test_generate_on_a_full_disk(clip, tmp_path):
    earlier = tmp_path / "out.mp4"
    earlier.write_bytes(b"an earlier result")
    run = _limited(["generate", clip, "--prompt", "a ball", "-o", earlier, "--wav", tmp_path / "out.wav", "-q",
                    "--model", "debug", "--steps", "1"], tmp_path, 20_000)  # fmt: skip
    assert run.returncode == 1 and run.stderr.startswith("rewas: error: writing "), run.stderr
    assert "internal error" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert earlier.read_bytes() == b"an earlier result"  # intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]  # nothing partial


def test_batch_on_a_full_disk(clip, tmp_path):
    manifest = tmp_path / "items.jsonl"
    manifest.write_text(json.dumps({"video": str(clip), "prompt": "a ball"}) + "\n")
    run = _limited(["batch", manifest, "-o", tmp_path / "out", "--model", "debug", "--steps", "1", "--wav", "-q"],
                   tmp_path, 20_000)  # fmt: skip
    assert run.returncode == 1, run.stderr
    rows = [json.loads(x) for x in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert rows[0]["status"] == "failed" and rows[0]["error"].startswith("writing ")  # not "internal error"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["results.jsonl"]


def _released(folder: Path) -> list:
    """Tiny files in the release's layout (see test_convert) and the convert arguments that read them."""
    import torch
    from test_convert import released_layout

    from rewas import ReWaSPipeline
    from rewas.config import debug
    from rewas.pipeline import build_components

    source = ReWaSPipeline.from_config(debug(), seed=3)
    torch.save({"state_dict": released_layout(source, build_components(debug())["unet"])}, folder / "rewas.ckpt")
    torch.save(source.phi.state_dict(), folder / "phi.ckpt")
    vfeat = {f"vfeat_extractor.{k}": v for k, v in source.video_encoder.state_dict().items()}
    torch.save({"model": vfeat}, folder / "synch.pt")
    return ["convert", "--rewas-ckpt", folder / "rewas.ckpt", "--phi-ckpt", folder / "phi.ckpt", "--synchformer-ckpt",
            folder / "synch.pt", "--preset", "debug"]  # fmt: skip


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_convert_on_a_full_disk(tmp_path):
    args = _released(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    run = _limited([*args, "-o", tmp_path / "model"], tmp_path, 100_000)
    assert run.returncode == 1 and run.stderr.startswith("rewas: error: writing "), run.stderr
    assert ".safetensors failed" in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no model folder, no temporary one


def test_kill_9_during_convert_leaves_no_model_and_the_rerun_works(tmp_path):
    """SIGKILL after the first component file is written: no folder that looks like a model, and the same
    command run again clears what the killed run left and writes a model that loads."""
    args = [str(a) for a in _released(tmp_path)] + ["-o", str(tmp_path / "model")]
    killed = _python(
        "import os, signal, sys\n"
        "import rewas.pipeline as p\n"
        "real = p.save_file\n"
        "def dying(state, path):\n"
        "    real(state, path)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "p.save_file = dying\n"
        "from rewas.cli import main\n"
        f"main({args!r})\n",
        tmp_path,
    )
    assert killed.returncode == -9, killed.stderr
    assert not (tmp_path / "model").exists()
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".rewas-")]  # what the killed run left
    rerun = subprocess.run([sys.executable, "-m", "rewas", *args], cwd=tmp_path, capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".rewas-")]
    from rewas import ReWaSPipeline

    ReWaSPipeline.from_pretrained(tmp_path / "model")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    from rewas import ReWaSPipeline
    from rewas.audio import write_wav
    from rewas.train import build_cache

    d = tmp_path_factory.mktemp("cache")
    samples.write_video(d / "v.mp4", samples.bouncing_ball_frames(bounce_period=0.5), 2.0, 25)
    write_wav(d / "a.wav", samples.click_track(2.0, [0.0, 0.5, 1.0, 1.5]))
    (d / "m.jsonl").write_text(json.dumps({"video": "v.mp4", "audio": "a.wav", "caption": "a ball"}) + "\n")
    build_cache(ReWaSPipeline.from_pretrained("debug"), d / "m.jsonl", d / "cache")
    return d / "cache"


def _train(cache: Path, out: Path, steps: int) -> list:
    return ["train", "phi", cache, "--model", "debug", "-o", out, "--steps", steps, "--checkpoint-every", "1"]


def test_a_training_checkpoint_on_a_full_disk(cache, tmp_path):
    """Two steps trained; the third step's checkpoint does not fit: one line, nothing partial among the
    checkpoints, the second step's intact, and a rerun resumes from it."""
    ok = _limited(_train(cache, tmp_path / "run", 2), tmp_path, 2**40)
    assert ok.returncode == 0, ok.stderr
    ckpts = tmp_path / "run" / "checkpoints"
    kept = {p.name: p.read_bytes() for p in (ckpts / "step_00000002").iterdir()}
    full = _limited(_train(cache, tmp_path / "run", 3), tmp_path, 1000)
    assert full.returncode == 1, full.stderr
    line = full.stderr.strip().splitlines()[-1]
    assert line.startswith("rewas: error: writing step_00000003 failed"), full.stderr
    assert sorted(p.name for p in ckpts.iterdir()) == ["step_00000001", "step_00000002"]
    assert {p.name: p.read_bytes() for p in (ckpts / "step_00000002").iterdir()} == kept
    rerun = _limited(_train(cache, tmp_path / "run", 3), tmp_path, 2**40)
    assert rerun.returncode == 0 and '"resumed"' in rerun.stderr and "step_00000002" in rerun.stderr, rerun.stderr


def test_kill_9_during_a_checkpoint_write_is_never_resumed_from(cache, tmp_path):
    """SIGKILL while the third step's checkpoint is being written (after a file of it, before the whole is
    in place): the rerun resumes from the second step's and finishes; the damaged one is never read."""
    args = [str(a) for a in _train(cache, tmp_path / "run", 3)]
    killed = _python(
        "import os, signal\n"
        "from pathlib import Path\n"
        "import accelerate\n"
        "real = accelerate.Accelerator.save_state\n"
        "def dying(self, output_dir=None, **kw):\n"
        "    real(self, output_dir, **kw)\n"
        "    if output_dir.endswith('step_00000003'):\n"
        "        victim = max(Path(output_dir).iterdir(), key=lambda p: p.stat().st_size)\n"
        "        victim.write_bytes(victim.read_bytes()[:100])  # half-written\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "accelerate.Accelerator.save_state = dying\n"
        "from rewas.cli import main\n"
        f"main({args!r})\n",
        tmp_path,
    )
    assert killed.returncode == -9, killed.stderr
    ckpts = tmp_path / "run" / "checkpoints"
    assert "step_00000003" not in {p.name for p in ckpts.iterdir()}
    rerun = _limited(args, tmp_path, 2**40)
    assert rerun.returncode == 0 and "step_00000002" in rerun.stderr, rerun.stderr
    assert sorted(p.name for p in ckpts.iterdir()) == ["step_00000001", "step_00000002", "step_00000003"]
    assert (tmp_path / "run" / "model" / "phi.safetensors").is_file()


def test_evaluate_report_on_a_full_disk(tmp_path):
    from rewas.audio import write_wav

    write_wav(tmp_path / "a.wav", samples.click_track(2.0, [0.5, 1.0]))
    write_wav(tmp_path / "b.wav", samples.click_track(2.0, [0.5, 1.5]))
    (tmp_path / "m.jsonl").write_text(json.dumps({"audio": "a.wav", "reference": "b.wav"}) + "\n")
    earlier = tmp_path / "r.json"
    earlier.write_text("an earlier report")
    run = _limited(["evaluate", tmp_path / "m.jsonl", "--out", earlier, "-q"], tmp_path, 300)
    assert run.returncode == 1 and run.stderr.startswith("rewas: error: writing r.json failed"), run.stderr
    assert earlier.read_text() == "an earlier report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "b.wav", "m.jsonl", "r.json"]


def _damage(kind: str, folder: Path) -> str:
    """Damage a saved model folder in one way; -> what the one-line error must say."""
    if kind == "truncated":
        f = folder / "unet.safetensors"
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
        return "unet.safetensors: damaged or not a safetensors file"
    if kind == "empty":
        (folder / "phi.safetensors").write_bytes(b"")
        return "phi.safetensors: damaged"
    if kind == "missing":
        (folder / "vocoder.safetensors").unlink()
        return "missing vocoder.safetensors"
    if kind == "swapped":  # another component's file under the name
        (folder / "unet.safetensors").write_bytes((folder / "vae.safetensors").read_bytes())
        return "unet.safetensors: does not match config.json ("
    meta = json.loads((folder / "config.json").read_text())
    if kind == "shapes":  # a config edited by hand: wider than the weights
        meta["model"]["unet"]["model_channels"] *= 2
        (folder / "config.json").write_text(json.dumps(meta))
        return "of another shape"
    if kind == "deeper":
        meta["model"]["phi"]["depth"] += 1
        (folder / "config.json").write_text(json.dumps(meta))
        return "tensor(s) missing"
    if kind == "unbuildable":
        meta["model"]["unet"]["model_channels"] += 8  # no longer divisible into its 32 groups
        (folder / "config.json").write_text(json.dumps(meta))
        return "describes a model that cannot be built"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["truncated", "empty", "missing", "swapped", "shapes", "deeper", "unbuildable"])
def test_a_damaged_model_folder_is_one_line_before_any_generation(debug_model_dir, clip, tmp_path, kind, capsys):
    import shutil

    from rewas.cli import main

    folder = tmp_path / "model"
    shutil.copytree(debug_model_dir, folder)
    expected = _damage(kind, folder)
    out = tmp_path / "out.mp4"
    code = main(["generate", str(clip), "--prompt", "a ball", "-o", str(out), "--model", str(folder), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()
