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
