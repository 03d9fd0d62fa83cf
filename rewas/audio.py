"""Waveform input/output: decode the audio of any media file to mono float at 16 kHz; write WAV files. And the mel
front end every part of the model sees audio through: the STFT magnitude, the slaney mel filterbank and the
log-mel spectrogram (the energy, the VAE's input and the vocoder's target)."""

from __future__ import annotations

import functools
import os

import av
import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F

from .config import AudioConfig
from .errors import MediaError
from .frames import first_frame_time, open_container, video_streams

# below this a stream's sample rate is a damaged header's, not audio's: a 16 KB WAV that says 1 Hz would decode to
# 2.2 hours at 16 kHz (1.7 GB, tests/test_fuzz.py). Telephone audio is 8 kHz; old formats go down to 4 kHz.
MIN_SAMPLE_RATE = 1000


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
        rate = getattr(stream.codec_context, "sample_rate", None)  # no codec context: no decoder, refused below
        if rate and rate < MIN_SAMPLE_RATE:
            raise MediaError(
                f"{os.fspath(path)}: an audio stream of {rate} Hz is not audio (a damaged header?); re-encode it "
                "with FFmpeg"
            )
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


def limit_peaks(
    wav: torch.Tensor, sample_rate: int, ceiling: float = 0.99, window_s: float = 0.05, chunk_s: float = 60.0
) -> torch.Tensor:
    """(B, N) waveform -> the same with every |sample| <= `ceiling`: a look-ahead peak limiter instead of a hard
    clip, which turns a loud tone into a square wave. Where a peak exceeds the ceiling the gain dips smoothly
    (over `window_s`) just enough; samples further than 1.5 windows from any over are returned bit for bit.

    The gain is the ceiling over the peak envelope (a max filter), then a min filter and a moving average of the
    same width: every averaged value is a minimum over a span that contains the sample, so the gain never exceeds
    what the sample needs. Only the stretches within reach of an over are computed, `chunk_s` at a time at most
    (with their context), so a long waveform is limited in bounded memory and time."""
    over = wav.abs() > ceiling
    if not bool(over.any()):
        return wav
    half = max(1, round(window_s * sample_rate) // 2)
    width, halo = 2 * half + 1, 3 * half  # the gain at a sample depends on samples up to 3 half-widths away
    length = wav.shape[-1]
    at = over.reshape(-1, length).any(dim=0).nonzero()[:, 0]
    breaks = (at.diff() > 2 * halo + 1).nonzero()[:, 0]
    firsts, lasts = at[torch.cat([breaks.new_zeros(1), breaks + 1])], at[torch.cat([breaks, breaks.new_tensor([-1])])]
    step = max(width, round(chunk_s * sample_rate))
    out = wav.clone()
    for first, last in zip(firsts.tolist(), lasts.tolist()):  # each stretch: every sample within `halo` of an over
        for start in range(max(0, first - halo), min(length, last + halo + 1), step):
            stop = min(start + step, last + halo + 1, length)
            lo, hi = max(0, start - halo), min(length, stop + halo)
            x = wav[..., lo:hi].reshape(-1, 1, hi - lo).float()
            envelope = F.max_pool1d(x.abs(), width, 1, half)
            gain = (ceiling / envelope.clamp(min=1e-12)).clamp(max=1.0)
            gain = -F.max_pool1d(-gain, width, 1, half)
            gain = F.avg_pool1d(F.pad(gain, (half, half), mode="replicate"), width, 1)
            limited = (x * gain).clamp(-ceiling, ceiling)  # the clamp only absorbs float rounding of the average
            limited = limited.reshape(*wav.shape[:-1], hi - lo).to(wav.dtype)[..., start - lo : stop - lo]
            near = F.max_pool1d(over[..., lo:hi].reshape(-1, 1, hi - lo).float(), 2 * halo + 1, 1, halo) > 0
            near = near.reshape(*wav.shape[:-1], hi - lo)[..., start - lo : stop - lo]
            out[..., start:stop] = torch.where(near, limited, wav[..., start:stop])  # other rows: untouched
    return out


def write_wav(path: str | os.PathLike, waveform: np.ndarray, sample_rate: int = 16000) -> None:
    """(N,) mono or (N, 2) stereo float waveform -> 32-bit float WAV. A write the system refuses (a full disk, a
    file-size limit) is an OSError naming the file (files.writing), not libsndfile's own "System error"."""
    from .files import writing

    waveform = np.asarray(waveform, dtype=np.float32)
    waveform = waveform if waveform.ndim == 2 else waveform.reshape(-1)
    with writing(path):
        sf.write(os.fspath(path), waveform, sample_rate, subtype="FLOAT", format="WAV")


# ------------------------------------------------------------------------------------------------ mel front end


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    log = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log, f / (200.0 / 3.0))


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), m * (200.0 / 3.0))


@functools.lru_cache(maxsize=8)
def mel_filterbank(cfg: AudioConfig) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) slaney-scale, slaney-normalised triangular filterbank (librosa's default; written
    out here because importing a library for it costs seconds at start-up). Built once per config: treat as
    read-only."""
    hz = _mel_to_hz(np.linspace(_hz_to_mel(cfg.fmin), _hz_to_mel(cfg.fmax), cfg.n_mels + 2))
    freqs = np.linspace(0.0, cfg.sample_rate / 2, cfg.n_fft // 2 + 1)
    lower = (freqs[None, :] - hz[:-2, None]) / np.diff(hz)[:-1, None]
    upper = (hz[2:, None] - freqs[None, :]) / np.diff(hz)[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper)) * (2.0 / (hz[2:] - hz[:-2]))[:, None]
    return torch.from_numpy(weights)


def log_mel_ceiling(cfg: AudioConfig) -> torch.Tensor:
    """(n_mels,) the highest value each band of `log_mel` can take for a waveform in [-1, 1]: a band is a weighted
    sum of STFT magnitudes, each at most the window's sum, and all together holding at most n_fft * sum(window^2)
    of energy (Parseval), so the band is at most min(sum(w) * window sum, |w| * sqrt(that energy))."""
    weights = mel_filterbank(cfg)
    window = torch.hann_window(cfg.win_length, dtype=torch.float64)
    by_bins = weights.sum(dim=1) * window.sum()
    by_energy = weights.norm(dim=1) * (cfg.n_fft * window.square().sum()).sqrt()
    return torch.minimum(by_bins, by_energy).log().float()


def stft_magnitude(wav: torch.Tensor, cfg: AudioConfig = AudioConfig()) -> torch.Tensor:
    """(..., N) waveform -> (..., n_fft / 2 + 1, N // hop) float64 STFT magnitude on the mel's frames: an un-centred
    STFT after `cfg.pad` samples of reflect padding, so frame k is centred on sample k * hop + hop / 2."""
    lead = wav.shape[:-1]
    x = wav.reshape(-1, wav.shape[-1]).double()
    n = x.shape[-1]
    if n <= cfg.pad:  # reflect padding needs more samples than the pad; zero-extend very short clips first
        x = F.pad(x, (0, cfg.pad + 1 - n))
    x = F.pad(x[:, None], (cfg.pad, cfg.pad), mode="reflect")[:, 0]
    spec = torch.stft(
        x,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.win_length,
        window=torch.hann_window(cfg.win_length, device=x.device, dtype=x.dtype),
        center=False,
        return_complex=True,
    ).abs()  # (B, n_fft/2+1, frames)
    frames = max(1, n // cfg.hop_length)
    return spec[..., :frames].reshape(*lead, spec.shape[-2], frames)


def log_mel(wav: torch.Tensor, cfg: AudioConfig = AudioConfig()) -> torch.Tensor:
    """(..., N) float waveform at cfg.sample_rate -> (..., n_mels, N // hop) natural-log mel magnitude (float32).

    Computed in float64: near the 1e-5 floor the log amplifies float32 rounding beyond 1e-4 nats.
    """
    spec = stft_magnitude(wav, cfg)
    mel = mel_filterbank(cfg).to(spec.device, spec.dtype) @ spec
    return torch.log(mel.clamp(min=cfg.log_clamp)).float()
