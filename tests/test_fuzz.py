"""Fuzzing what users hand rewas (issue 30's first part, bounded for CI): mutated and truncated media, energy
CSVs, manifests, curve-edit strings and model configs. Every input ends in a result or a one-line UserError, in
bounded time; never another exception. Examples are derandomised, so a CI run is repeatable; a case that ever
failed is pinned with @example."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rewas import samples
from rewas.errors import UserError

# a warning would print a second line under the CLI's one-line error
pytestmark = pytest.mark.filterwarnings("error")
FAST = settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
MEDIA = settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


def _one_line(e: Exception) -> None:
    assert isinstance(e, UserError), f"{type(e).__name__}: {e}"
    assert str(e).strip() and "\n" not in str(e).strip(), repr(str(e))


@given(op=st.sampled_from(["mute", "gain", "scale", "smooth", "draw", "nope"]), text=st.text(max_size=40))
@example(op="gain", text="1-2:+3e400dB")
@example(op="draw", text="0:-6,0:-5")
@FAST
def test_edit_strings(op, text):
    from rewas.edits import parse

    try:
        parse(op, text)
    except Exception as e:
        _one_line(e)


@given(spelling=st.text(max_size=40))
@FAST
def test_edit_spellings_in_the_api(spelling):
    from rewas.validate import edits

    try:
        edits([spelling])
    except Exception as e:
        _one_line(e)


@given(body=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
@example(body=b"time_s,energy\n0,1e999\n")
@example(body=b"time_s,energy\n")
@example(body=b"time_s,energy\n0,1,2\n")
@FAST
def test_energy_csvs(tmp_path_factory, body):
    from rewas.energy import read_csv

    path = tmp_path_factory.mktemp("csv") / "e.csv"
    path.write_bytes(b"time_s,energy\n" + body if body[:1] != b"t" else body)
    try:
        read_csv(path)
    except Exception as e:
        _one_line(e)


ROW = st.dictionaries(
    st.sampled_from(["video", "prompt", "seed", "steps", "guidance", "name", "energy_in", "extra", "reference"]),
    st.one_of(st.text(max_size=12), st.integers(-5, 2**70), st.floats(allow_nan=True), st.none(), st.booleans()),
    max_size=6,
)


@given(rows=st.lists(ROW, max_size=4), raw=st.text(max_size=60), csv=st.booleans())
@FAST
def test_manifests(tmp_path_factory, rows, raw, csv):
    from rewas.batch import read_items

    d = tmp_path_factory.mktemp("manifest")
    if csv:
        path = d / "m.csv"
        path.write_text(raw)
    else:
        path = d / "m.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in rows) + ("\n" + raw if raw.strip() else ""))
    try:
        read_items(path)
    except Exception as e:
        _one_line(e)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10**6) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


SECTIONS = ["audio", "unet", "vae", "vocoder", "model", "diffusion", "sampler", "phi", "text"]


@given(
    edit=st.sampled_from(["drop", "set", "raw"]),
    section=st.sampled_from(SECTIONS),
    value=JSON,
    raw=st.text(max_size=40),
)
@FAST
def test_model_configs(tmp_path_factory, debug_model_dir, edit, section, value, raw):
    from rewas.pipeline import load_config

    d = tmp_path_factory.mktemp("model")
    meta = json.loads((Path(debug_model_dir) / "config.json").read_text())
    if edit == "raw":
        text = raw
    else:
        model = meta["model"]
        if edit == "drop":
            model.pop(section, None)
        else:
            model[section] = value
        text = json.dumps(meta)
    (d / "config.json").write_text(text)
    try:
        load_config(d)
    except Exception as e:
        _one_line(e)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "ball.mp4"
    audio = samples.click_track(1.0, [0.3, 0.7])
    samples.write_video(path, samples.bouncing_ball_frames(bounce_period=0.4), 1.0, 25, audio=audio)
    return path


@given(
    cut=st.floats(0.0, 1.0),
    flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(1, 255)), max_size=8),
    head=st.booleans(),
    suffix=st.sampled_from([".mp4", ".mkv", ".wav", ".avi", ".txt"]),
)
@example(cut=0.0, flips=[], head=False, suffix=".mp4")
@example(cut=0.5, flips=[], head=False, suffix=".mp4")
@MEDIA
def test_mutated_media(tmp_path_factory, clip, cut, flips, head, suffix):
    """Truncated at any offset, bytes flipped (in the header or anywhere), under any extension: probing,
    decoding every frame and reading the audio each end in a result or one line, within 20 s."""
    from rewas.audio import load_audio
    from rewas.config import VideoConfig
    from rewas.frames import iter_frames, probe

    data = bytearray(clip.read_bytes())
    data = data[: max(0, round(len(data) * (1 - cut if cut < 0.999 else 0.0)))] if cut else data
    for where, xor in flips:
        if data:
            i = round(where * (min(len(data), 4096) - 1 if head else len(data) - 1))
            data[i] ^= xor
    path = tmp_path_factory.mktemp("mutant") / f"clip{suffix}"
    path.write_bytes(bytes(data))
    start = time.monotonic()
    for read in (
        lambda: sum(1 for _ in iter_frames(path, VideoConfig(resize_short=32, crop=32), probe(path))),
        lambda: load_audio(path, 16000),
    ):
        try:
            read()
        except Exception as e:
            _one_line(e)
    assert time.monotonic() - start < 20
