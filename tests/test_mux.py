import av
import numpy as np
import pytest
from avcheck import durations, ffmpeg_audio, first_click, pyav_audio, streams, video_packets

from rewas.frames import MediaError, probe
from rewas.mux import mux
from rewas.samples import click_track

CLICKS = [0.5, 1.5]  # the flash times of the test videos


@pytest.mark.parametrize("name", ["v25", "v2997", "v60", "long12"])
def test_click_track_is_in_sync_and_lasts_the_video(media, tmp_path, name):
    info = probe(media[name])
    out = mux(media[name], click_track(info.duration, CLICKS), 16000, tmp_path / "out.mp4", info)
    assert streams(out) == ["video", "audio"]
    frame = 1.0 / info.fps
    v_dur, a_dur = durations(out)
    assert abs(v_dur - info.duration) < 1e-3 and abs(a_dur - v_dur) <= frame
    offset, x, rate = pyav_audio(out)
    assert abs(offset + first_click(x, rate) - CLICKS[0]) <= 0.005  # PyAV
    y = ffmpeg_audio(out)
    assert abs(first_click(y, 16000) - CLICKS[0]) <= 0.005  # ffmpeg binary
    assert abs(len(y) / 16000 - info.duration) <= frame
    assert video_packets(out) == video_packets(media[name])  # the picture is copied untouched


def test_existing_audio_is_replaced_and_rotation_kept(media, tmp_path):
    info = probe(media["with_audio"])
    out = mux(media["with_audio"], np.zeros(10), 16000, tmp_path / "out.mov", info)
    assert streams(out) == ["video", "audio"]
    assert np.abs(ffmpeg_audio(out)).max() < 1e-3  # silence (padded), not the source's click
    rotated = mux(media["rotated"], np.zeros(16000), 16000, tmp_path / "rot.mp4", probe(media["rotated"]))
    assert probe(rotated).rotation == 90


def test_codec_that_mp4_cannot_hold_is_reencoded(media, tmp_path):
    info = probe(media["raw_mkv"])
    out = mux(media["raw_mkv"], click_track(info.duration, [0.5]), 16000, tmp_path / "out.mp4", info)
    assert streams(out) == ["video", "audio"] and probe(out).codec == "h264"
    assert abs(first_click(ffmpeg_audio(out), 16000) - 0.5) <= 0.005
    copied = mux(media["mpeg4_avi"], np.zeros(16000), 16000, tmp_path / "out.mkv", probe(media["mpeg4_avi"]))
    assert probe(copied).codec == "mpeg4"
    # a MOV takes raw pictures as a stream nothing can open, and an M4V wanted a constant rate, which ffmpeg took
    # from Matroska's 1/1000 s time base: the same 25 frames a second, re-encoded, in both
    for suffix in (".mov", ".m4v"):
        out = mux(media["raw_mkv"], np.zeros(16000), 16000, tmp_path / f"raw{suffix}", info)
        with av.open(str(out)) as container:
            assert sum(1 for _ in container.decode(video=0)) == 25 and probe(out).codec == "h264"


def test_refuses_to_overwrite_input_and_bad_suffix(media, tmp_path):
    info = probe(media["v25"])
    before = media["v25"].read_bytes()
    with pytest.raises(MediaError, match="overwrite"):
        mux(media["v25"], np.zeros(100), 16000, media["v25"], info)
    assert media["v25"].read_bytes() == before
    with pytest.raises(MediaError, match="must end"):
        mux(media["v25"], np.zeros(100), 16000, tmp_path / "out.gif", info)
    with pytest.raises(MediaError, match="does not exist"):
        mux(media["v25"], np.zeros(100), 16000, tmp_path / "nope" / "out.mp4", info)
    assert not list(tmp_path.iterdir())


def test_what_a_killed_run_left_beside_the_output_goes(media, tmp_path):
    """`kill -9` while ffmpeg wrote leaves its temporary folder; the next output written there clears it (only the
    dead process's)."""
    import subprocess
    import sys

    from rewas import files

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = tmp_path / f"{files.temp_prefix(dead.pid)}vm"
    left.mkdir()
    (left / "out.mp4").write_bytes(b"partial")
    mux(media["v25"], np.zeros(100), 16000, tmp_path / "out.mp4", probe(media["v25"]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]
