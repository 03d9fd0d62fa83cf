"""Waveform input/output: decode the audio of any media file to mono float at 16 kHz; write WAV files."""

from __future__ import annotations

import os

import av
import numpy as np
import soundfile as sf

from .errors import MediaError
from .frames import first_frame_time, open_container, video_streams


def load_audio(path: str | os.PathLike, sample_rate: int = 16000) -> np.ndarray:
    """First audio stream of `path` -> (N,) float32 mono at `sample_rate` (PyAV's resampler: any rate, any layout).

    Time 0 is the first displayed video frame when the file has a video stream, so curves and metrics computed
    from the audio line up with the picture; in an audio-only file it is the first sample. An audio stream that
    starts after that frame is preceded by silence, one that starts before it is cut. A file whose video cannot
    be decoded is refused (MediaError) rather than read on a guessed timeline.
    """
    with open_container(path) as container:
        if not container.streams.audio:
            raise MediaError(f"{os.fspath(path)}: has no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks, start = [], None
        try:
            for frame in container.decode(stream):
                if start is None and frame.time is not None:
                    start = frame.time
                chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
            chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
        except av.error.FFmpegError as e:
            raise MediaError(f"{os.fspath(path)}: audio could not be decoded ({e.__class__.__name__})") from None
        # decoders keep the encoder's end padding (AAC: up to 1023 samples). MP4/MOV and Matroska store where the
        # stream ends; elsewhere (MPEG-TS, ...) the "duration" is an estimate from the bitrate and would cut real audio
        exact = any(name in container.format.name.split(",") for name in ("mov", "matroska"))
        known = float(stream.duration * stream.time_base) if stream.duration and exact else None
        has_video = bool(video_streams(container))
    if not chunks:
        raise MediaError(f"{os.fspath(path)}: the audio stream has no samples")
    audio = np.concatenate(chunks).astype(np.float32)
    audio = audio[: round(known * sample_rate)] if known else audio
    if has_video and start is not None:
        shift = round((start - first_frame_time(path)) * sample_rate)
        audio = np.concatenate([np.zeros(shift, np.float32), audio]) if shift > 0 else audio[-shift:]
        if not len(audio):
            raise MediaError(f"{os.fspath(path)}: the audio ends before the first video frame")
    return audio


def write_wav(path: str | os.PathLike, waveform: np.ndarray, sample_rate: int = 16000) -> None:
    """(N,) float waveform -> 32-bit float mono WAV."""
    sf.write(os.fspath(path), np.asarray(waveform, dtype=np.float32).reshape(-1), sample_rate, subtype="FLOAT", format="WAV")
