"""⑦ Waveform + source video -> a copy of the video with the audio as its soundtrack.

The video stream is copied untouched (re-encoded with libx264 only if the container cannot hold its codec);
the audio is encoded as AAC by the ffmpeg binary that imageio-ffmpeg ships, which writes the encoder
priming into the MP4 edit list. The audio is cut or padded to the video's duration, and its first sample
plays with the first displayed frame on any source timeline (see `mux`). Output is written to a temporary file
and renamed: never a partial file, never the input.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from .audio import write_wav
from .errors import MediaError
from .files import remove_stale_temps, temp_prefix
from .frames import VideoInfo

CONTAINERS = {".mp4": True, ".m4v": True, ".mov": True, ".mkv": False}  # suffix -> wants +faststart
# raw pictures: a MOV or MP4 takes them as a stream no player (ffmpeg included) can open; Matroska holds them well
RAW_HOLDERS = {".mkv"}


class MuxError(RuntimeError):
    pass


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def check_output_path(out: str | os.PathLike, *inputs: str | os.PathLike, suffixes=tuple(CONTAINERS)) -> Path:
    """Refuse an output that would overwrite an input, has an unsupported suffix, or lives in a missing folder."""
    out = Path(out)
    if out.suffix.lower() not in suffixes:
        raise MediaError(f"{out}: output must end in one of {', '.join(suffixes)}")
    if not out.parent.resolve().is_dir():
        raise MediaError(f"{out}: folder {out.parent} does not exist")
    if out.is_dir():
        raise MediaError(f"{out}: is a directory")
    if not os.access(out.parent.resolve(), os.W_OK):
        raise MediaError(f"{out}: cannot write to folder {out.parent} (permission denied)")
    for src in inputs:
        if src is not None and os.path.exists(src) and out.exists() and os.path.samefile(out, src):
            raise MediaError(f"{out}: refusing to overwrite the input file")
    return out


def fit_length(waveform: np.ndarray, samples: int) -> np.ndarray:
    """(N,) mono or (N, C) -> exactly `samples` long: cut, or padded with silence."""
    waveform = np.asarray(waveform, dtype=np.float32)
    waveform = (waveform if waveform.ndim == 2 else waveform.reshape(-1))[:samples]
    return np.pad(waveform, [(0, samples - len(waveform))] + [(0, 0)] * (waveform.ndim - 1))


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)


def mux(
    video: str | os.PathLike,
    waveform: np.ndarray,
    sample_rate: int,
    out: str | os.PathLike,
    info: VideoInfo,
    audio_bitrate: str = "192k",
) -> Path:
    """Write `out`: the video stream of `video` plus `waveform` ((N,) mono or (N, 2) stereo float, `sample_rate`) as
    AAC, its first sample at the first displayed frame (`info.start_time`); the output timeline starts at that frame.

    ffmpeg normally shifts each input by a start time of its own choosing (which streams count towards it has
    changed between versions, and an MPEG-TS starts at 1.4 s or later), so the two inputs would be placed apart.
    With -copyts nothing is shifted: the WAV is put at the frame's own timestamp, then both move together by
    -output_ts_offset -start_time. Packets before that frame (B-frame delay, edit-list pre-roll) get negative times: MP4
    hides them behind an edit list; Matroska, which has none, moves the whole file later by their length, audio
    too, so the sync holds there as well.
    """
    out = check_output_path(out, video)
    remove_stale_temps(out.parent)  # what a killed run left (`kill -9` while ffmpeg wrote)
    samples = round(info.duration * sample_rate)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=temp_prefix()) as tmp:
        wav = Path(tmp) / "audio.wav"
        write_wav(wav, fit_length(waveform, samples), sample_rate)
        partial = Path(tmp) / f"out{out.suffix}"
        base = [
            ffmpeg_exe(),
            "-nostdin",
            "-y",
            "-v",
            "error",
            "-copyts",
            "-i",
            os.fspath(video),
            "-itsoffset",
            f"{info.start_time:.6f}",
            "-i",
            os.fspath(wav),
            "-map",
            "0:V:0",
            "-map",
            "1:a:0",
            "-map_metadata",
            "0",
        ]
        tail = ["-c:a", "aac", "-b:a", audio_bitrate, "-output_ts_offset", f"{-info.start_time:.6f}"]
        if CONTAINERS[out.suffix.lower()]:
            tail += ["-movflags", "+faststart"]
        copy = info.codec != "rawvideo" or out.suffix.lower() in RAW_HOLDERS
        result = _run(base + ["-c:v", "copy"] + tail + [os.fspath(partial)]) if copy else None
        if result is None or result.returncode != 0:  # the codec does not fit this container: re-encode the picture
            # the source's time base: libx264's default 1/fps grid would round an off-grid start by up to a frame;
            # and each frame as it was: the M4V muxer asks for a constant rate, which ffmpeg then took from that
            # time base (a WebM's 1/1000 s: 1000 frames a second, 40 copies of each)
            encode = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18", "-enc_time_base:v", "demux"]
            encode += ["-fps_mode:v", "passthrough"]
            encode += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]  # 4:2:0 needs even sides: an odd one gets a black line
            result = _run(base + encode + tail + [os.fspath(partial)])
        if result.returncode != 0:
            raise MuxError(f"ffmpeg could not write {out}: {result.stderr.strip().splitlines()[-1:]}")
        os.replace(partial, out)
    return out
