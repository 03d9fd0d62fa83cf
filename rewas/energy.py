"""③ Energy: the control signal. Audio -> log-mel (`rewas.audio.log_mel`) -> energy (mean over mel bins, one value
per 10 ms frame).

Definitions follow the released code (docs/design.md):

* `waveform_energy`: mean removal + peak-normalise to 0.5, reflect pad (n_fft - hop)/2 = 432, un-centred STFT
  (1024 / hop 160, Hann), magnitude, 64 slaney mel bins 0-8 kHz, natural log clamped at 1e-5, mean over bins.
  5.12 s of 16 kHz audio gives exactly 512 values.
* `energy_target`: what phi is trained on: nearest resize to the token count, Savitzky-Golay (9, 2), nearest
  resize back.
* `curve_from_tokens`: the inverse path at inference: phi's per-token output smoothed and resized to mel frames.
* `control_target`: what the adapter is trained on: the curve the pipeline would build if phi were exact.
* `token_curve_matrix`: the inverse path as one matrix, so that phi can be trained on the curve it yields.

Everything works on batches: tensors of shape (..., N) in, (..., frames) out.
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from . import validate
from .audio import load_audio, log_mel, mel_filterbank
from .config import AudioConfig, EnergyConfig, ModelConfig
from .errors import UserError, one_line
from .files import check_input_file


@functools.lru_cache(maxsize=8)
def log_mel_range(cfg: AudioConfig) -> tuple[float, float]:
    """The (lowest, highest) value `log_mel` can give for a waveform in [-1, 1]: the clamp floor, and the log of
    the largest mel magnitude (the window's sum, the STFT's bound, times the widest filter's total weight)."""
    window_sum = float(torch.hann_window(cfg.win_length, dtype=torch.float64).sum())
    bound = window_sum * float(mel_filterbank(cfg).sum(dim=1).max())
    return math.log(cfg.log_clamp), math.log(bound)


def normalize_waveform(wav: torch.Tensor, peak: float = 0.5) -> torch.Tensor:
    """Remove the mean and scale the peak to `peak`, per clip. (..., N) -> (..., N)."""
    wav = wav - wav.mean(dim=-1, keepdim=True)
    return peak * wav / (wav.abs().amax(dim=-1, keepdim=True) + 1e-8)


def waveform_energy(
    wav: torch.Tensor | np.ndarray, cfg: AudioConfig = AudioConfig(), normalize: bool = True
) -> torch.Tensor:
    """(..., N) waveform -> (..., N // hop) energy in nats: the unsmoothed training target and metric input."""
    wav = torch.as_tensor(wav)
    if normalize:
        wav = normalize_waveform(wav.double(), cfg.peak)
    return log_mel(wav, cfg).mean(dim=-2)


def resize_nearest(x: torch.Tensor, size: int) -> torch.Tensor:
    """Nearest-neighbour resize along the last axis, as F.interpolate(mode='nearest'). (..., L) -> (..., size)."""
    lead = x.shape[:-1]
    out = F.interpolate(x.reshape(-1, 1, x.shape[-1]).float(), size=size, mode="nearest")
    return out.reshape(*lead, size)


def savgol(x: np.ndarray, window: int, order: int) -> np.ndarray:
    """Savitzky-Golay smoothing along the last axis, as scipy's `savgol_filter(x, window, order)` (mode 'interp':
    the first and last window // 2 values come from a polynomial fitted to the first / last `window` values)."""
    half = window // 2
    vander = np.vander(np.arange(-half, half + 1, dtype=np.float64), order + 1, increasing=True)  # (w, p + 1)
    project = vander @ np.linalg.pinv(vander)  # (w, w): fitted values at every position of a window
    out = np.empty_like(x, dtype=np.float64)
    windows = np.lib.stride_tricks.sliding_window_view(x, window, axis=-1)  # (..., L - w + 1, w)
    out[..., half : x.shape[-1] - half] = windows @ project[half]
    out[..., :half] = x[..., :window] @ project[:half].T
    out[..., x.shape[-1] - half :] = x[..., -window:] @ project[half + 1 :].T
    return out


def smooth(x: torch.Tensor, cfg: EnergyConfig = EnergyConfig()) -> torch.Tensor:
    """Savitzky-Golay along the last axis (scipy's, mode 'interp'); shorter curves use the largest odd window that
    fits."""
    length = x.shape[-1]
    window = min(cfg.smooth_window, length if length % 2 else length - 1)
    if window <= cfg.smooth_order:
        return x.clone()
    out = savgol(x.detach().cpu().double().numpy(), window, cfg.smooth_order)
    return torch.from_numpy(out).to(dtype=x.dtype, device=x.device)


def energy_target(
    energy: torch.Tensor, num_tokens: int, cfg: EnergyConfig = EnergyConfig()
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training targets from a frame energy (..., F).

    Returns (token_target (..., num_tokens) - what phi regresses - and the smoothed curve resized back to (..., F)).
    """
    tokens = smooth(resize_nearest(energy, num_tokens), cfg)
    return tokens, resize_nearest(tokens, energy.shape[-1])


def curve_from_tokens(token_energy: torch.Tensor, num_frames: int, cfg: EnergyConfig = EnergyConfig()) -> torch.Tensor:
    """phi's output (..., S) -> smoothed energy curve (..., num_frames) for the adapter."""
    return resize_nearest(smooth(token_energy, cfg), num_frames)


def token_times(num_segments: int, stride: int, tokens_per_segment: int, tubelet: int, fps: float) -> np.ndarray:
    """Centre time (s, from the window start) of every video token: segment s starts at frame s * stride, and its
    token k covers frames start + tubelet * k ... + tubelet - 1. Overlapping segments give repeated times."""
    starts = np.arange(num_segments)[:, None] * stride + np.arange(tokens_per_segment)[None] * tubelet
    return ((starts + (tubelet - 1) / 2) / fps).reshape(-1)


def tubelet_energy(energy: torch.Tensor, times: np.ndarray, span_s: float, frame_rate: float) -> torch.Tensor:
    """Frame energy (..., F) -> (..., len(times)): the mean energy over each token's tubelet, the `span_s` seconds
    centred on its time (phi's target on the real timeline; mel frame k is centred at (k + 0.5) / frame_rate)."""
    frames = energy.shape[-1]
    centres = (np.arange(frames) + 0.5) / frame_rate
    inside = np.abs(centres[None, :] - np.asarray(times)[:, None]) <= span_s / 2 + 1e-9  # (S, F)
    weights = torch.from_numpy(inside / np.maximum(inside.sum(axis=1, keepdims=True), 1)).to(
        energy.device, energy.dtype
    )
    return energy @ weights.T


def curve_from_timed_tokens(
    token_energy: torch.Tensor,
    times: np.ndarray,
    num_frames: int,
    frame_rate: float,
    cfg: EnergyConfig = EnergyConfig(),
) -> torch.Tensor:
    """phi's output (..., S) at token `times` -> curve (..., num_frames) on the real timeline.

    Tokens sharing a time (overlapping segments) are averaged, the evenly spaced result is smoothed
    (Savitzky-Golay), then interpolated linearly onto mel-frame centres ((k + 0.5) / frame_rate), ends held.
    """
    unique, inverse = np.unique(np.round(times, 6), return_inverse=True)
    x = token_energy.detach().cpu().double()
    merged = torch.zeros(*x.shape[:-1], len(unique), dtype=x.dtype).index_add_(-1, torch.from_numpy(inverse), x)
    merged = smooth(merged / torch.from_numpy(np.bincount(inverse)).double(), cfg).numpy()
    centres = (np.arange(num_frames) + 0.5) / frame_rate
    flat = merged.reshape(-1, len(unique))
    out = np.stack([np.interp(centres, unique, row) for row in flat]).reshape(*merged.shape[:-1], num_frames)
    return torch.from_numpy(out).float()


def model_token_times(cfg: ModelConfig, num_segments: int) -> np.ndarray:
    """`token_times` of a window cut into `num_segments` segments by `cfg`'s video settings."""
    return token_times(
        num_segments,
        cfg.video.segment_stride,
        cfg.video_encoder.tokens_per_segment,
        cfg.video_encoder.tubelet,
        cfg.video.fps,
    )


def token_curve_matrix(cfg: ModelConfig, num_segments: int, num_frames: int) -> torch.Tensor:
    """(S, num_frames) matrix W such that `tokens @ W` is the curve the pipeline builds from phi's S tokens of one
    window (`curve_from_tokens` / `curve_from_timed_tokens` are linear in the tokens): phi can then be trained on
    the curve the adapter receives, not only on its tokens."""
    return _token_curve_matrix(cfg, num_segments, num_frames).clone()


@functools.lru_cache(maxsize=8)
def _token_curve_matrix(cfg: ModelConfig, num_segments: int, num_frames: int) -> torch.Tensor:
    eye = torch.eye(num_segments * cfg.video_encoder.tokens_per_segment, dtype=torch.float64)
    if cfg.energy.timeline == "uniform":
        return curve_from_tokens(eye, num_frames, cfg.energy).float()
    times = model_token_times(cfg, num_segments)
    return curve_from_timed_tokens(eye, times, num_frames, cfg.audio.frame_rate, cfg.energy).float()


def timed_token_target(energy: torch.Tensor, cfg: ModelConfig, num_segments: int) -> tuple[np.ndarray, torch.Tensor]:
    """Frame energy (..., F) -> (token times, (..., S * tokens) targets): phi's target on the real timeline, the mean
    energy of each token's tubelet."""
    times = model_token_times(cfg, num_segments)
    return times, tubelet_energy(energy, times, cfg.video_encoder.tubelet / cfg.video.fps, cfg.audio.frame_rate)


def control_target(energy: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """True frame energy (..., F) of a window -> the control curve (..., F) the adapter is trained on: the curve the
    pipeline builds from phi's tokens at inference, with the true energy in place of phi's prediction.

    timeline "uniform": the release's target (resized to `paper_tokens`, smoothed, resized back);
    timeline "true": the mean energy of each token's tubelet at its real time, through `curve_from_timed_tokens`.
    """
    if cfg.energy.timeline == "uniform":
        return energy_target(energy, cfg.energy.paper_tokens, cfg.energy)[1]
    frames = energy.shape[-1]
    video_frames = round(frames * cfg.video.fps / cfg.audio.frame_rate)
    times, tokens = timed_token_target(energy, cfg, cfg.video.num_segments(video_frames))
    return curve_from_timed_tokens(tokens, times, frames, cfg.audio.frame_rate, cfg.energy).to(energy.dtype)


def resample_curve(times: np.ndarray, values: np.ndarray, frame_times: np.ndarray) -> np.ndarray:
    """A user-supplied curve (time_s, energy) linearly interpolated onto mel-frame times (held at the ends)."""
    order = np.argsort(times)
    return np.interp(frame_times, np.asarray(times, float)[order], np.asarray(values, float)[order])


def reference_curve(
    path, duration: float | None = None, cfg: AudioConfig = AudioConfig()
) -> tuple[np.ndarray, np.ndarray]:
    """The energy of a reference recording (an audio file, or a video's soundtrack) -> (times_s, values), its
    timeline stretched to `duration` seconds when given (the video's length), so that its events keep their
    places relative to the whole."""
    path = check_input_file(path, "reference recording")
    wav = load_audio(path, cfg.sample_rate)
    if len(wav) < cfg.n_fft:
        raise UserError(
            f"{path}: the recording lasts {len(wav) / cfg.sample_rate * 1000:.3g} ms; too short for a curve"
        )
    values = waveform_energy(wav, cfg).numpy().astype(np.float64)
    times = frame_times(len(values), cfg)
    if duration is not None:
        times = times * duration / (len(wav) / cfg.sample_rate)
    return times, values


def frame_times(num_frames: int, cfg: AudioConfig = AudioConfig()) -> np.ndarray:
    """Start time of each mel frame in seconds (frame k covers [k * hop, (k + 1) * hop) after the 432-sample pad)."""
    return np.arange(num_frames) / cfg.frame_rate


def write_csv(path, energy: np.ndarray, cfg: AudioConfig = AudioConfig()) -> None:
    """One row per mel frame: header `time_s,energy`."""
    energy = np.asarray(energy, dtype=np.float64).reshape(-1)
    rows = np.stack([frame_times(len(energy), cfg), energy], axis=1)
    np.savetxt(path, rows, delimiter=",", header="time_s,energy", comments="", fmt=("%.3f", "%.6f"))


def read_csv(path) -> tuple[np.ndarray, np.ndarray]:
    """A `time_s,energy` CSV (header required) -> (times, values). Raises UserError on malformed files."""
    with open(check_input_file(path, "energy CSV"), encoding="utf-8-sig") as f:  # a spreadsheet's BOM too
        try:
            header = f.readline().strip().replace(" ", "").lower()
        except UnicodeDecodeError:
            raise UserError(f"{path}: not a text file") from None
        if header != "time_s,energy":
            raise UserError(f"{path}: expected the header 'time_s,energy', found {header[:40]!r}")
        try:
            with warnings.catch_warnings():  # "input contained no data": the empty table is refused below, in one line
                warnings.simplefilter("ignore", UserWarning)
                data = np.loadtxt(f, delimiter=",", ndmin=2)
        except (ValueError, UnicodeDecodeError) as e:
            raise UserError(f"{path}: not a numeric time_s,energy table ({one_line(e)})") from None
    if data.shape[0] < 1 or data.shape[1] != 2 or not np.isfinite(data).all():
        raise UserError(f"{path}: need at least one row of two finite numbers")
    if np.any(np.diff(data[:, 0]) <= 0):
        raise UserError(f"{path}: time_s must increase from row to row")
    return validate.energy((data[:, 0], data[:, 1]), str(path))  # values in nats, as the pipeline takes them
