"""Waveform input/output: decode the audio of any media file to mono float at 16 kHz; write WAV files."""

from __future__ import annotations

import os

import av
import numpy as np
import soundfile as sf

from .frames import MediaError, open_container


def load_audio(path: str | os.PathLike, sample_rate: int = 16000) -> np.ndarray:
    """First audio stream of `path` -> (N,) float32 mono at `sample_rate` (PyAV's resampler)."""
    with open_container(path) as container:
        if not container.streams.audio:
            raise MediaError(f"{os.fspath(path)}: has no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks = []
        try:
            for frame in container.decode(stream):
                chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
            chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
        except av.error.FFmpegError as e:
            raise MediaError(f"{os.fspath(path)}: audio could not be decoded ({e.__class__.__name__})") from None
        # decoders keep the encoder's end padding (AAC: up to 1023 samples); the stream duration says where it ends
        known = float(stream.duration * stream.time_base) if stream.duration else None
    if not chunks:
        raise MediaError(f"{os.fspath(path)}: the audio stream has no samples")
    audio = np.concatenate(chunks).astype(np.float32)
    return audio[: round(known * sample_rate)] if known else audio


def write_wav(path: str | os.PathLike, waveform: np.ndarray, sample_rate: int = 16000) -> None:
    """(N,) float waveform -> 32-bit float mono WAV."""
    sf.write(os.fspath(path), np.asarray(waveform, dtype=np.float32).reshape(-1), sample_rate, subtype="FLOAT", format="WAV")
