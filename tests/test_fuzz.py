"""Fuzzing what users hand rewas (issue 30's first part, bounded for CI): mutated and truncated media, energy
CSVs, manifests, curve-edit strings and model configs. Every input ends in a result or a one-line UserError, in
bounded time; never another exception. Examples are derandomised, so a CI run is repeatable; a case that ever
failed is pinned with @example."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from rewas import samples
from rewas.errors import UserError

# a warning would print a second line under the CLI's one-line error
pytestmark = pytest.mark.filterwarnings("error")
FAST = settings(max_examples=500, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
MEDIA = settings(max_examples=500, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


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


def _read_everything(path: Path) -> None:
    """Probe, decode every frame and read the audio: each ends in a result or one line, within 20 s."""
    from rewas.audio import load_audio
    from rewas.config import VideoConfig
    from rewas.frames import iter_frames, probe

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
    data = bytearray(clip.read_bytes())
    data = data[: max(0, round(len(data) * (1 - cut if cut < 0.999 else 0.0)))] if cut else data
    for where, xor in flips:
        if data:
            i = round(where * (min(len(data), 4096) - 1 if head else len(data) - 1))
            data[i] ^= xor
    path = tmp_path_factory.mktemp("mutant") / f"clip{suffix}"
    path.write_bytes(bytes(data))
    _read_everything(path)


_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf"}
# (box, offset in its payload, bytes): what an MP4 says of durations, time scales, sizes, sample counts, sample
# tables and chunk offsets (version 0 boxes, as the encoder writes them)
_MP4_FIELDS = [
    (b"mvhd", 12, 4), (b"mvhd", 16, 4), (b"tkhd", 20, 4), (b"tkhd", 76, 4), (b"tkhd", 80, 4), (b"mdhd", 12, 4),
    (b"mdhd", 16, 4), (b"elst", 4, 4), (b"elst", 8, 4), (b"elst", 12, 4), (b"avc1", 24, 2), (b"avc1", 26, 2),
    (b"mp4a", 16, 2), (b"mp4a", 18, 2), (b"mp4a", 24, 4), (b"stts", 4, 4), (b"stts", 8, 4), (b"stts", 12, 4),
    (b"stsz", 4, 4), (b"stsz", 8, 4), (b"stsz", 12, 4), (b"stsc", 4, 4), (b"stsc", 12, 4), (b"stco", 4, 4),
    (b"stco", 8, 4), (b"ctts", 4, 4), (b"stss", 4, 4),
]  # fmt: skip
LIES = st.sampled_from([0, 1, 7, 2**15, 2**16 - 1, 2**31 - 1, 2**32 - 1]) | st.integers(0, 2**32 - 1)


def _boxes(data: bytes, start: int, end: int):
    """(type, payload offset, payload size) of every box of an MP4, depth first."""
    i = start
    while i + 8 <= end:
        size, kind = struct.unpack(">I4s", data[i : i + 8])
        if size < 8:
            return
        yield kind, i + 8, size - 8
        if kind in _CONTAINERS:
            yield from _boxes(data, i + 8, i + size)
        elif kind == b"stsd":
            yield from _boxes(data, i + 16, i + size)
        i += size


def _told(data: bytes, lies) -> bytearray:
    """An MP4's bytes with each lie ((box, offset, bytes), which of the boxes of that type, value) written over
    the field it names."""
    data = bytearray(data)
    found = list(_boxes(bytes(data), 0, len(data)))
    for (kind, offset, size), which, value in lies:
        spots = [start for k, start, n in found if k == kind and offset + size <= n]
        if spots:
            start = spots[min(which, len(spots) - 1)] + offset
            data[start : start + size] = (value % 2 ** (8 * size)).to_bytes(size, "big")
    return data


@given(lies=st.lists(st.tuples(st.sampled_from(_MP4_FIELDS), st.integers(0, 1), LIES), min_size=1, max_size=3))
@example(lies=[((b"stts", 12, 4), 0, 2**31 - 1)])  # 25 frames said to last 46 hours (found: now refused)
@example(lies=[((b"mdhd", 12, 4), 0, 1), ((b"stts", 12, 4), 0, 100000)])
@MEDIA
def test_mp4_headers_that_lie(tmp_path_factory, clip, lies):
    """Dimensions, frame counts, durations, time scales, sample sizes and chunk offsets that say something
    else than the data: a result or one line."""
    path = tmp_path_factory.mktemp("liar") / "clip.mp4"
    path.write_bytes(bytes(_told(clip.read_bytes(), lies)))
    _read_everything(path)


@given(
    cut=st.just(0.0) | st.just(0.0) | st.floats(0.0, 0.6),  # a cut end loses the index (moov): keep most whole
    flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(1, 255)), max_size=4),
    lies=st.lists(st.tuples(st.sampled_from(_MP4_FIELDS), st.integers(0, 1), LIES), max_size=2),
)
@settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_damaged_clips_end_to_end(tmp_path_factory, clip, debug_pipe, cut, flips, lies):
    """The whole way a user's clip goes (probe, frames, features, phi, sampling, VAE, vocoder) on truncated,
    flipped and lying copies: a soundtrack of the probed length, or one line."""
    data = _told(clip.read_bytes(), lies)
    for where, xor in flips:
        data[round(where * (len(data) - 1))] ^= xor
    path = tmp_path_factory.mktemp("e2e") / "clip.mp4"
    path.write_bytes(bytes(data[: round(len(data) * (1 - cut))]))
    start = time.monotonic()
    try:
        result = debug_pipe(str(path), prompt="a ball", steps=1, seed=0)
    except Exception as e:
        _one_line(e)
        event(f"refused: {str(e).split(': ', 1)[-1][:40]}")
    else:
        from rewas.frames import probe

        assert result.waveform.shape == (round(probe(path).duration * 16000),)
        event("a soundtrack")
    assert time.monotonic() - start < 30


@given(
    component=st.sampled_from(["unet", "adapter", "vae", "vocoder", "phi", "video_encoder", "text_encoder"]),
    cut=st.just(1.0) | st.floats(0.0, 1.0),
    flips=st.lists(st.tuples(st.integers(0, 400), st.integers(1, 255)), max_size=4),  # in and near the header
)
@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_damaged_weight_files(tmp_path_factory, debug_model_dir, component, cut, flips):
    """A model folder whose weights file was cut short or had its header bytes changed: it loads (a flip in the
    data is not seen: `rewas check` prints hashes to compare) or it is one line naming the file."""
    import shutil

    from rewas import ReWaSPipeline

    folder = tmp_path_factory.mktemp("weights") / "model"
    shutil.copytree(debug_model_dir, folder)
    target = folder / f"{component}.safetensors"
    data = bytearray(target.read_bytes())
    for where, xor in flips:
        data[min(where, len(data) - 1)] ^= xor
    target.write_bytes(bytes(data[: round(len(data) * cut)]))
    try:
        ReWaSPipeline.from_pretrained(folder)
        event("loaded")
    except Exception as e:
        _one_line(e)
        assert target.name in str(e) or "config.json" in str(e), str(e)
        event(f"refused: {str(e).split(': ', 1)[-1][:30]}")


def test_timestamps_that_lie_are_refused(tmp_path, clip):
    """A header that spreads a second of frames over hours is a damaged file, not hours of footage to score:
    before, probe took a 1 s clip for 46 h and decoding 'held' its frames for 4 million frame times."""
    from rewas.errors import MediaError
    from rewas.frames import probe

    (tmp_path / "liar.mp4").write_bytes(bytes(_told(clip.read_bytes(), [((b"stts", 12, 4), 0, 2**31 - 1)])))
    with pytest.raises(MediaError, match="these timestamps are not a video's"):
        probe(tmp_path / "liar.mp4")


def test_a_sample_rate_that_lies_is_refused(tmp_path, wav):
    """A WAV whose header says 1 Hz: before, its 0.5 s of samples were read as 8,000 s and resampled to 16 kHz
    (1.7 GB, 3.7 s)."""
    from rewas.audio import load_audio
    from rewas.errors import MediaError

    data = bytearray(wav.read_bytes())
    rate = data.find(b"fmt ") + 8 + 4
    data[rate : rate + 4] = (1).to_bytes(4, "little")
    (tmp_path / "liar.wav").write_bytes(bytes(data))
    with pytest.raises(MediaError, match="an audio stream of 1 Hz is not audio"):
        load_audio(tmp_path / "liar.wav")


@pytest.fixture(scope="module", autouse=True)
def memory_bound():
    """The whole module (thousands of hostile inputs) stays within a memory bound: its peak over the resident memory
    it started with, after the peak of the tests before it is reset (Linux: /proc/self/clear_refs); elsewhere not
    measured. Over what it started with: the test files a process ran before (`make test` runs two processes, each
    taking files as they come) leave their own models and caches resident."""
    status, reset = Path("/proc/self/status"), Path("/proc/self/clear_refs")

    def mib(field: str) -> float:
        return int(next(x for x in status.read_text().splitlines() if x.startswith(field)).split()[1]) / 1024

    try:
        reset.write_text("5")  # the high-water mark back to the resident memory of now
    except OSError:
        yield
        return
    start = mib("VmRSS:")
    yield
    peak = mib("VmHWM:")
    print(f"memory_bound: resident {start:.0f} MiB at the start, peak {peak:.0f} MiB")
    assert peak - start < 1024, f"peak RSS {peak:.0f} MiB, {peak - start:.0f} MiB over the start"


@pytest.fixture(scope="module")
def wav(tmp_path_factory):
    from rewas.audio import write_wav

    path = tmp_path_factory.mktemp("wav") / "clicks.wav"
    write_wav(path, samples.click_track(0.5, [0.1, 0.3]))
    return path


# (where, bytes) in a WAV: the RIFF size; in the fmt chunk its size, format, channels, rate, byte rate, block
# align and bits; the data chunk's size
_WAV_FIELDS = [("riff", 4, 4), ("fmt ", -4, 4), ("fmt ", 0, 2), ("fmt ", 2, 2), ("fmt ", 4, 4), ("fmt ", 8, 4),
               ("fmt ", 12, 2), ("fmt ", 14, 2), ("data", -4, 4)]  # fmt: skip


@given(lies=st.lists(st.tuples(st.sampled_from(_WAV_FIELDS), LIES), min_size=1, max_size=3), cut=st.booleans())
@MEDIA
def test_wav_headers_that_lie(tmp_path_factory, wav, lies, cut):
    data = bytearray(wav.read_bytes())
    for (chunk, offset, size), value in lies:
        start = offset if chunk == "riff" else data.find(chunk.encode()) + 8 + offset
        data[start : start + size] = (value % 2 ** (8 * size)).to_bytes(size, "little")
    path = tmp_path_factory.mktemp("liar") / "clicks.wav"
    path.write_bytes(bytes(data[: len(data) // 2] if cut else data))
    _read_everything(path)
