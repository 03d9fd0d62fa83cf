"""Every input the tool can decode either works or gets a one-line error that names the problem (exit 2); a bug of
ours is exit 1 with a pointer to the traceback. Nothing is ever left behind on failure."""

from __future__ import annotations

import subprocess

import pytest
from avcheck import durations, streams

from rewas import samples
from rewas.cli import main
from rewas.mux import ffmpeg_exe


def _ffmpeg(*args) -> None:
    subprocess.run([ffmpeg_exe(), "-nostdin", "-y", "-v", "error", *map(str, args)], check=True)


@pytest.fixture(scope="session")
def odd(tmp_path_factory, media):
    d = tmp_path_factory.mktemp("odd")
    base = d / "base.mp4"
    samples.write_video(base, samples.flash_frames([0.2], size=(64, 80)), 1.0, 25)
    out = {name: d / name for name in ("one_frame.mp4", "still.png", "raw.h264", "tiny.mp4", "cover_art.m4a")}
    _ffmpeg("-i", base, "-frames:v", "1", "-c:v", "libx264", out["one_frame.mp4"])
    _ffmpeg("-i", base, "-frames:v", "1", "-c:v", "png", "-f", "image2", out["still.png"])
    _ffmpeg("-i", base, "-f", "h264", out["raw.h264"])
    # three frames 10 µs apart: the header is legal, the clip lasts 30 µs
    _ffmpeg(
        "-i",
        base,
        "-frames:v",
        "3",
        "-c:v",
        "libx264",
        "-video_track_timescale",
        "1000000",
        "-r",
        "100000",
        out["tiny.mp4"],
    )
    _ffmpeg(
        "-i",
        media["audio_only"],
        "-i",
        out["still.png"],
        "-map",
        "0",
        "-map",
        "1",
        "-c",
        "copy",
        "-disposition:v",
        "attached_pic",
        out["cover_art.m4a"],
    )
    return out


def _run(capsys, *argv) -> tuple[int, str]:
    """`rewas ARGV` in this process; a `generate` without a prompt gets one (these tests are about the media)."""
    if argv[0] == "generate" and "--prompt" not in argv:
        argv = (*argv, "--prompt", "a sound")
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize("name", ["one_frame.mp4", "still.png"])
def test_a_single_frame_gets_a_soundtrack_of_its_length(odd, tmp_path, capsys, name):
    out = tmp_path / "out.mp4"
    code, err = _run(capsys, "generate", odd[name], "--model", "debug", "--steps", "1", "-o", out, "-q")
    assert code == 0, err
    assert streams(out) == ["video", "audio"]
    video, audio = durations(out)
    assert video == pytest.approx(0.04, abs=1e-3) and abs(audio - video) <= 0.04


@pytest.mark.parametrize(
    "name,problem",
    [
        ("raw.h264", "carry no timestamps"),
        ("tiny.mp4", "lasts 0.03 ms; a soundtrack needs at least 10 ms"),
        ("cover_art.m4a", "has no video stream"),
    ],
)
def test_undecodable_timelines_are_named(odd, tmp_path, capsys, name, problem):
    out = tmp_path / "out.mp4"
    code, err = _run(capsys, "generate", odd[name], "--model", "debug", "--steps", "1", "-o", out, "-q")
    assert code == 2 and problem in err and len(err.splitlines()) == 1, err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "name,problem",
    [
        ("zero_frames", "not a readable media file"),  # a header with a video track and no frame
        ("not_video", "not a readable media file"),
        ("audio_only", "has no video stream"),
    ],
)
def test_broken_media_is_a_user_error(media, tmp_path, capsys, name, problem):
    code, err = _run(capsys, "generate", media[name], "--model", "debug", "-o", tmp_path / "out.mp4")
    assert code == 2 and problem in err and len(err.splitlines()) == 1, err
    assert not list(tmp_path.iterdir())


def test_cover_art_is_not_a_picture_to_score(odd, tmp_path, capsys):
    """An audio file with cover art has a video stream of one attached picture; its audio starts at 0 all the same."""
    code, err = _run(capsys, "energy", odd["cover_art.m4a"], "--out", tmp_path / "e.csv")
    assert code == 0, err
    assert len((tmp_path / "e.csv").read_text().splitlines()) > 90  # 1 s of tone, a row per 10 ms


@pytest.mark.parametrize(
    "content,problem",
    [
        (b"\x00\xff\xfe binary", "not a text file"),
        (b"time_s,energy\n0,1\n0.5,2\n0.5,3\n", "must increase"),
        (b"time_s,energy\n0,1\n0.5,nan\n", "finite"),
    ],
)
def test_bad_energy_csv_is_a_user_error(media, tmp_path, capsys, content, problem):
    csv = tmp_path / "e.csv"
    csv.write_bytes(content)
    code, err = _run(
        capsys, "generate", media["v25"], "--model", "debug", "--energy-in", csv, "-o", tmp_path / "out.mp4"
    )
    assert code == 2 and problem in err and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.csv"]


def test_a_bug_is_an_internal_error_not_the_users(media, tmp_path, capsys, monkeypatch):
    """A ValueError from inside rewas is ours: exit 1, 'internal error', and REWAS_DEBUG=1 shows the traceback.
    (The CLI used to print every ValueError as the user's fault, exit 2.)"""
    import rewas.mux

    def broken(*args, **kwargs):
        raise ValueError("cannot convert float NaN to integer")

    monkeypatch.setattr(rewas.mux, "mux", broken)
    out = tmp_path / "out.mp4"
    argv = ["generate", media["v25"], "--prompt", "x", "--model", "debug", "--steps", "1", "-o", out, "-q"]
    code, err = _run(capsys, *argv)
    assert code == 1 and len(err.splitlines()) == 1
    assert err.startswith("rewas: internal error: ValueError: cannot convert") and "REWAS_DEBUG=1" in err
    assert not out.exists()
    monkeypatch.setenv("REWAS_DEBUG", "1")
    with pytest.raises(ValueError, match="NaN"):
        main([str(a) for a in argv])
    assert not out.exists()


def test_debug_re_raises_user_errors_too(media, tmp_path, monkeypatch):
    from rewas.errors import MediaError

    monkeypatch.setenv("REWAS_DEBUG", "1")
    with pytest.raises(MediaError, match="not a readable media file"):
        main(
            [
                "generate",
                str(media["zero_frames"]),
                "--prompt",
                "x",
                "--model",
                "debug",
                "-o",
                str(tmp_path / "out.mp4"),
            ]
        )


def test_energy_of_a_missing_file_is_a_user_error(tmp_path, capsys):
    code, err = _run(capsys, "energy", tmp_path / "nope.wav", "--out", tmp_path / "e.csv")
    assert code == 2 and "no such file" in err
    assert not list(tmp_path.iterdir())


def test_a_user_error_is_still_a_valueerror_for_api_callers(media):
    from rewas.frames import probe

    with pytest.raises(ValueError):
        probe(media["zero_frames"])
    with pytest.raises(FileNotFoundError):
        from rewas.energy import read_csv

        read_csv("/nonexistent/e.csv")


@pytest.mark.parametrize(
    "content,problem",
    [
        (b'{"video": "a.mp4", "caption": "x", "audio": "a.wav"}\n{not json\n', ":2: not JSON"),
        (b"\xff\xfe\x00binary", "not a text file"),
        (b"3\n", ":1: each line needs"),
        (b'{"video": 3, "caption": "x", "audio": "a.wav"}\n', "must be a path"),
        (b"\n\n", "the manifest is empty"),
    ],
)
@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_malformed_manifests_are_user_errors(tmp_path, capsys, command, content, problem):
    """`rewas train cache` and `rewas evaluate` share one manifest reader; a bad line is the user's to fix."""
    manifest = tmp_path / "m.jsonl"
    manifest.write_bytes(content)
    argv = (
        ["train", "cache", manifest, "--model", "debug", "-o", tmp_path / "cache"]
        if command == "train"
        else ["evaluate", manifest, "--out", tmp_path / "r.json"]
    )
    code, err = _run(capsys, *argv)
    assert code == 2 and problem in err and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.jsonl"]


def test_audio_that_ends_before_the_picture_starts_is_named(tmp_path):
    from rewas.audio import load_audio
    from rewas.errors import MediaError

    path = tmp_path / "late_picture.mp4"
    samples.write_video(path, samples.flash_frames([0.5], size=(64, 80)), 1.0, 25)
    _ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "sine=d=0.5",
        "-itsoffset",
        "1.0",
        "-i",
        path,
        "-map",
        "0:a",
        "-map",
        "1:v",
        "-c:v",
        "copy",
        "-c:a",
        "aac",
        tmp_path / "muxed.mp4",
    )
    with pytest.raises(MediaError, match="ends before the first video frame"):
        load_audio(tmp_path / "muxed.mp4")
