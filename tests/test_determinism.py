"""Determinism (issue 30): the same clip, prompt, seed, device and dtype give bit-identical audio across runs and
across every way of asking: the Python API, `rewas generate`, `rewas batch` and the studio (its server through a
real client: test_studio_load)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rewas import ReWaSPipeline, samples
from rewas.studio import Session, Studio

ROOT = Path(__file__).resolve().parents[1]
ASK = {"prompt": "a ball bouncing", "seed": 5, "steps": 3, "guidance": 3.0}


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("det") / "ball.mp4"
    samples.write_video(path, samples.bouncing_ball_frames(bounce_period=0.45), 2.0, 25)
    return path


def _rewas(*args) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-m", "rewas", *map(str, args)], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_every_way_of_asking_gives_the_same_bits(clip, tmp_path):
    pipe = ReWaSPipeline.from_pretrained("debug", dtype="auto")  # what the commands and the studio use by default
    api = pipe(str(clip), **ASK).waveform
    assert np.array_equal(api, pipe(str(clip), **ASK).waveform)  # run to run, in one process
    fresh = ReWaSPipeline.from_pretrained("debug", dtype="auto")
    assert np.array_equal(api, fresh(str(clip), **ASK).waveform)  # a fresh load

    _rewas("generate", clip, "--prompt", ASK["prompt"], "--seed", 5, "--steps", 3, "--guidance", 3, "--model",
           "debug", "-o", tmp_path / "cli.mp4", "--wav", tmp_path / "cli.wav", "-q")  # fmt: skip
    manifest = tmp_path / "items.jsonl"
    manifest.write_text(json.dumps({"video": str(clip), "name": "ball", **ASK}) + "\n")
    _rewas("batch", manifest, "-o", tmp_path / "batch", "--model", "debug", "--wav", "-q")

    studio = Studio(["debug"], workdir=tmp_path / "studio")
    try:
        session = studio.open_video(Session(), str(clip), "debug")
        take = studio.generate(session, ASK["prompt"], seed=5, steps=3, guidance=3.0)
        heard = {
            "rewas generate": sf.read(tmp_path / "cli.wav", dtype="float32")[0],
            "rewas batch": sf.read(tmp_path / "batch" / "ball.wav", dtype="float32")[0],
            "the studio": sf.read(take.wav, dtype="float32")[0],
        }
    finally:
        studio.close()
    for way, audio in heard.items():
        assert np.array_equal(audio, api), f"{way} differs from the Python API"
