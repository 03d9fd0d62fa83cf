"""Independent checks of written media: decode with PyAV and with the ffmpeg binary."""

from __future__ import annotations

import subprocess

import av
import numpy as np

from rewas.mux import ffmpeg_exe


def streams(path) -> list[str]:
    with av.open(str(path)) as c:
        return [s.type for s in c.streams]


def durations(path) -> tuple[float, float]:
    """(video, audio) stream durations from the container, seconds."""
    with av.open(str(path)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        return float(v.duration * v.time_base), float(a.duration * a.time_base)


def pyav_audio(path) -> tuple[float, np.ndarray, int]:
    """(presentation time of the first decoded sample relative to the first video frame, samples, rate)."""
    with av.open(str(path)) as c:
        video_start = next(c.decode(video=0)).time
    with av.open(str(path)) as c:
        frames = list(c.decode(audio=0))
        rate = c.streams.audio[0].rate
    x = np.concatenate([f.to_ndarray().reshape(-1) for f in frames])
    return frames[0].time - video_start, x, rate


def ffmpeg_audio(path, rate: int = 16000) -> np.ndarray:
    """Mono float samples from time 0 (aresample pads or trims so the output starts at t = 0)."""
    out = subprocess.run(
        [
            ffmpeg_exe(),
            "-v",
            "error",
            "-i",
            str(path),
            "-map",
            "0:a",
            "-af",
            "aresample=async=1:first_pts=0",
            "-f",
            "f32le",
            "-ac",
            "1",
            "-ar",
            str(rate),
            "-",
        ],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(out, np.float32)


def ffmpeg_decodes_video(path) -> int:
    """Number of video frames the ffmpeg binary decodes (raises if it cannot)."""
    out = subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:v", "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert not out.stderr.strip(), out.stderr
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def first_click(x: np.ndarray, rate: int, threshold: float = 0.45) -> float:
    return float(np.argmax(np.abs(x) > threshold)) / rate


def video_packets(path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(video=0) if p.size]


def pyav_event_times(path, threshold: float = 0.45) -> tuple[float, float]:
    """(first bright frame, first click) presentation times in seconds, as PyAV decodes `path` (edit lists applied)."""
    with av.open(str(path)) as c:
        flash = next(f.time for f in c.decode(video=0) if f.to_ndarray(format="gray").mean() > 128)
    with av.open(str(path)) as c:
        for frame in c.decode(audio=0):
            x = np.abs(frame.to_ndarray()).max(axis=0)
            if (x > threshold).any():
                return flash, frame.time + float(np.argmax(x > threshold)) / frame.sample_rate
    raise AssertionError(f"{path}: no click in the audio")


def ffmpeg_event_times(path, rate: int = 16000, threshold: float = 0.45) -> tuple[float, float]:
    """The same two times as the ffmpeg binary plays `path`: one run with -copyts, so video and audio share the
    file's own timeline (each output of an ffmpeg run would otherwise be shifted by a start time of ffmpeg's
    choosing); showinfo gives each frame's time and mean luma, and the audio is padded with silence from t = 0."""
    import re

    run = subprocess.run(
        [
            ffmpeg_exe(),
            "-nostdin",
            "-v",
            "info",
            "-copyts",
            "-i",
            str(path),
            "-map",
            "0:v",
            "-vf",
            "showinfo",
            "-f",
            "null",
            "-",
            "-map",
            "0:a",
            "-af",
            "aresample=async=1:first_pts=0",
            "-ac",
            "1",
            "-ar",
            str(rate),
            "-f",
            "f32le",
            "pipe:1",
        ],
        capture_output=True,
        check=True,
    )
    frames = re.findall(r"pts_time:\s*(-?[\d.]+).*?mean:\[(\d+)", run.stderr.decode(errors="replace"))
    flash = next(float(t) for t, luma in frames if int(luma) > 128)
    x = np.frombuffer(run.stdout, np.float32)
    return flash, float(np.argmax(np.abs(x) > threshold)) / rate
