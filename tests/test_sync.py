"""Sync on any source timeline: the generated audio starts with the first displayed frame, whatever the container.

Sources are made from one clip whose picture flashes at FLASHES, rewritten by the ffmpeg binary the way cameras,
broadcast, editors and screen recorders write files: MPEG-TS (first timestamp 1.4 s or later), an MPEG-TS whose
audio starts before its picture, MP4 edit lists (a pre-roll that is decoded but not shown; an empty edit that
delays the picture), a non-zero and a negative first timestamp, B-frames without an edit list, variable frame rate,
and raw video starting off the frame grid (re-encoded when muxed into MP4).
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from avcheck import ffmpeg_event_times, pyav_event_times

from rewas import samples
from rewas.audio import load_audio
from rewas.config import VideoConfig
from rewas.frames import iter_frames, probe
from rewas.mux import ffmpeg_exe, mux

FLASHES = [0.6, 1.6]  # on the 25 fps grid, so the flash has one frame to land on
# name -> (ffmpeg arguments before the input, after it, where the first flash is from the first displayed frame)
TIMELINES = {
    "mpegts": ([], ["-c:v", "libx264", "-bf", "2", "-f", "mpegts"], 0.6),
    "mpegts_audio_first": (None, None, 0.6),  # built apart: needs a second input
    "mp4_preroll_edit": (["-ss", "0.32"], ["-c:v", "copy"], 0.28),
    "mp4_empty_edit": (["-itsoffset", "0.5"], ["-c:v", "copy"], 0.6),
    "mkv_nonzero_start": ([], ["-c:v", "copy", "-output_ts_offset", "2"], 0.6),
    "mp4_negative_pts": (
        [],
        ["-c:v", "libx264", "-bf", "2", "-output_ts_offset", "-0.32", "-avoid_negative_ts", "disabled"],
        0.28,
    ),
    "mp4_bframes_no_editlist": ([], ["-c:v", "libx264", "-bf", "2", "-use_editlist", "0"], 0.6),
    "vfr": (None, None, 0.6),
    # MP4 cannot hold raw video: muxing into .mp4 re-encodes the picture, and its 13 ms start is off the frame grid
    "mkv_raw_offgrid_start": ([], ["-c:v", "rawvideo", "-output_ts_offset", "0.013"], 0.6),
}
SUFFIX = {"mpegts": ".ts", "mpegts_audio_first": ".ts", "mkv_nonzero_start": ".mkv", "mkv_raw_offgrid_start": ".mkv"}


def _ffmpeg(*args) -> None:
    subprocess.run([ffmpeg_exe(), "-nostdin", "-y", "-v", "error", *map(str, args)], check=True)


@pytest.fixture(scope="session")
def timelines(tmp_path_factory):
    d = tmp_path_factory.mktemp("timelines")
    base = d / "base.mp4"
    samples.write_video(base, samples.flash_frames(FLASHES, size=(64, 80)), 3.0, 25)
    out = {}
    for name, (before, after, _) in TIMELINES.items():
        out[name] = d / f"{name}{SUFFIX.get(name, '.mp4')}"
        if before is not None:
            _ffmpeg(*before, "-i", base, *after, out[name])
    _ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "sine=f=440:d=4:sample_rate=48000",
        "-itsoffset",
        "0.3",
        "-i",
        base,
        "-map",
        "1:v",
        "-map",
        "0:a",
        "-c:v",
        "libx264",
        "-bf",
        "2",
        "-c:a",
        "aac",
        "-f",
        "mpegts",
        out["mpegts_audio_first"],
    )
    samples.write_video(
        out["vfr"],
        samples.flash_frames(FLASHES, size=(64, 80)),
        3.0,
        times=[0, 0.03, 0.1, 0.2, 0.36, 0.6, 0.64, 0.9, 1.0, 1.04, 1.6, 1.7, 2.5, 2.9],
    )
    return out


@pytest.mark.parametrize("name", TIMELINES)
def test_the_timeline_starts_at_the_first_displayed_frame(timelines, name):
    """probe and iter_frames put t = 0 at the first frame a player shows: the flash lands on its 25 fps frame."""
    info = probe(timelines[name])
    assert info.duration > 2.5
    frames = np.stack(list(iter_frames(timelines[name], VideoConfig(), info=info)))
    bright = np.flatnonzero(frames.mean(axis=(1, 2, 3)) > 128)
    assert bright[0] == round(TIMELINES[name][2] * 25)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
@pytest.mark.parametrize("name", TIMELINES)
def test_a_click_at_the_flash_plays_with_the_flash(timelines, tmp_path, name, suffix):
    """The click track of each source, muxed: PyAV and the ffmpeg binary both hear the click with the flash
    (<= 5 ms), and the output's timeline starts at the first displayed frame."""
    src = timelines[name]
    info = probe(src)
    flash = TIMELINES[name][2]
    out = mux(src, samples.click_track(info.duration, [flash]), 16000, tmp_path / f"out{suffix}", info)
    seen, heard = pyav_event_times(out)
    assert abs(heard - seen) <= 0.005, f"PyAV: flash at {seen:.3f} s, click at {heard:.3f} s"
    seen, heard = ffmpeg_event_times(out)
    assert abs(heard - seen) <= 0.005, f"ffmpeg: flash at {seen:.3f} s, click at {heard:.3f} s"
    if suffix == ".mp4" or "edit" not in name and "negative" not in name:
        # the output's timeline starts at the first displayed frame. Matroska has no edit lists: the copied
        # pre-roll frames before it are kept and shown, and the whole file (audio too) moves later by their length
        assert abs(seen - flash) <= 0.005
        assert probe(out).start_time == pytest.approx(0, abs=1e-3)


def test_generate_on_mpegts_plays_the_audio_with_the_picture(timelines, debug_model_dir, tmp_path, monkeypatch):
    """The user's case: `rewas generate` on an MPEG-TS (first timestamp 1.48 s). Whatever the pipeline returns is
    muxed at the first displayed frame; before the fix the picture's event played 1.5 s late. The pipeline here
    returns a click at the flash (the debug model's audio has no transient to time), and `--wav` must hold it too."""
    from rewas import pipeline
    from rewas.cli import main

    original = pipeline.ReWaSPipeline.__call__

    def clicks(self, video, **kwargs):
        result = original(self, video, **kwargs)
        result.waveform = samples.click_track(result.duration, [TIMELINES["mpegts"][2]])
        return result

    monkeypatch.setattr(pipeline.ReWaSPipeline, "__call__", clicks)
    src, out, wav = timelines["mpegts"], tmp_path / "out.mp4", tmp_path / "out.wav"
    assert probe(src).start_time > 1.4
    assert (
        main(
            [
                "generate",
                str(src),
                "--prompt",
                "x",
                "--model",
                str(debug_model_dir),
                "--steps",
                "1",
                "--seed",
                "0",
                "-o",
                str(out),
                "--wav",
                str(wav),
                "-q",
            ]
        )
        == 0
    )
    for seen, heard in (pyav_event_times(out), ffmpeg_event_times(out)):
        assert abs(heard - seen) <= 0.005 and abs(seen - 0.6) <= 0.005
    assert abs(np.argmax(load_audio(wav) > 0.45) / 16000 - 0.6) <= 0.001


@pytest.mark.parametrize("rate", [44100, 48000])
def test_audio_that_starts_late_is_read_on_the_video_timeline(tmp_path, rate):
    """A stereo 44.1/48 kHz AAC track starting 0.3 s after the picture, a click 0.5 s into it: `load_audio` (what
    `rewas energy` and `rewas evaluate` read) hears it at 0.8 s of the picture, and `rewas energy` puts its peak
    in the 10 ms frame of 0.8 s."""
    from rewas.cli import main
    from rewas.energy import read_csv

    audio = np.zeros((2, 3 * rate), np.float32)
    audio[:, round(0.5 * rate) : round(0.5 * rate) + rate // 250] = 0.9
    path = tmp_path / "late.mp4"
    samples.write_video(
        path, samples.flash_frames([0.8], size=(64, 80)), 3.0, 25, audio=audio, sample_rate=rate, audio_start=0.3
    )
    x = load_audio(path, 16000)
    assert abs(np.argmax(np.abs(x) > 0.45) / 16000 - 0.8) <= 0.005
    assert np.abs(x[: round(0.29 * 16000)]).max() == 0  # silence before the track starts
    assert main(["energy", str(path), "--out", str(tmp_path / "e.csv")]) == 0
    times, values = read_csv(tmp_path / "e.csv")
    assert abs(times[np.argmax(values)] - 0.8) <= 0.01 + 1e-9


def test_audio_that_starts_early_is_cut_at_the_first_frame(timelines):
    """In an MPEG-TS whose 4 s tone starts 0.3 s (plus the B-frame delay) before the picture, the audio read
    starts at the first displayed frame: what came before it is cut."""
    import av

    path = timelines["mpegts_audio_first"]
    with av.open(str(path)) as c:
        audio_start = next(c.decode(audio=0)).time
    lead = probe(path).start_time - audio_start
    assert 0.3 <= lead < 0.4
    x = load_audio(path, 16000)
    assert abs(len(x) / 16000 - (4.0 - lead)) <= 0.05  # MPEG-TS keeps the AAC encoder's priming and padding


@pytest.mark.parametrize("container", [".mp4", ".ts"])
def test_energy_windows_of_a_long_video_land_on_its_events(debug_pipe, tmp_path, monkeypatch, container):
    """A 12 s video takes three 5.12 s windows (starts 0, 3.44, 6.88 s). The energy each window predicts is put
    back on the whole clip's timeline: flashes alone in a window (1.0, 10.4 s) and in the overlaps (4.0, 8.0 s)
    land within one 10 ms mel frame of their time, on MP4 and on MPEG-TS (first timestamp 1.4 s)."""
    flashes = [1.0, 4.0, 8.0, 10.4]  # on the 25 fps grid
    path = tmp_path / "long.mp4"
    samples.write_video(path, samples.flash_frames(flashes, size=(32, 40)), 12.0, 25)
    if container == ".ts":
        _ffmpeg("-i", path, "-c:v", "libx264", "-bf", "2", "-f", "mpegts", tmp_path / "long.ts")
        path = tmp_path / "long.ts"

    windows = []

    def brightness_energy(window_frames, text=None):  # stands in for phi: loud exactly while the picture is bright
        windows.append(len(window_frames))
        bright = window_frames.reshape(len(window_frames), -1).mean(axis=1) > 128
        curve = np.repeat(np.where(bright, -2.0, -9.0), 4)  # 4 mel frames per 25 fps frame
        return torch.from_numpy(curve).float()[None]

    import torch

    monkeypatch.setattr(debug_pipe, "predict_energy", brightness_energy)
    seen = []
    result = debug_pipe(path, prompt="x", steps=1, seed=0, callback=lambda i, n: seen.append(n))
    assert windows == [128, 128, 128] and seen == [1] and result.energy.shape == (1200,)
    loud = np.flatnonzero(result.energy > -5.5)
    onsets = loud[np.r_[True, np.diff(loud) > 1]]
    assert np.abs(onsets - np.round(np.array(flashes) * 100)).max() <= 1, onsets
