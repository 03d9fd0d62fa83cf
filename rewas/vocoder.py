"""⑤ Vocoder: log-mel (B, n_mels, T) -> waveform.

* `Vocoder` (kind "hifigan"): HiFi-GAN V1 generator -> (B, T * 160 + 32). Parameter names are those of the
  released checkpoint after weight-norm removal (`conv_pre`, `ups.i`, `resblocks.k.convs{1,2}.j`, `conv_post`),
  so released weights load directly.
* `GriffinLim` (kind "griffinlim"): the mel is mapped back to a linear magnitude (pseudo-inverse of the filterbank
  refined by multiplicative non-negative least squares), then the phase is recovered by fast Griffin-Lim
  (momentum 0.99) -> (B, T * 160). Robust on tones, where a briefly trained HiFi-GAN is not. Weight-free, or with
  `magnitude_channels` > 0 a `MagnitudeNet` corrects the NNLS magnitude: 64 mel bands cannot hold the harmonics
  and narrow peaks that the 513 STFT bins had, and NNLS spreads them evenly over each band.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .audio import limit_peaks, mel_filterbank
from .config import AudioConfig, VocoderConfig
from .errors import UserError
from .windows import blend, window_starts

LRELU_SLOPE = 0.1


def _padding(kernel: int, dilation: int = 1) -> int:
    return (kernel * dilation - dilation) // 2


class ResBlock1(nn.Module):
    def __init__(self, channels: int, kernel: int, dilations: tuple[int, ...]):
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel, dilation=d, padding=_padding(kernel, d)) for d in dilations
        )
        self.convs2 = nn.ModuleList(nn.Conv1d(channels, channels, kernel, padding=_padding(kernel)) for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2):
            x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
        return x


class Vocoder(nn.Module):
    def __init__(self, cfg: VocoderConfig):
        super().__init__()
        self.config = cfg
        ch = cfg.upsample_initial_channel
        self.conv_pre = nn.Conv1d(cfg.n_mels, ch, 7, padding=3)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for i, (rate, kernel) in enumerate(zip(cfg.upsample_rates, cfg.upsample_kernel_sizes)):
            c_in, c_out = ch // 2**i, ch // 2 ** (i + 1)
            self.ups.append(nn.ConvTranspose1d(c_in, c_out, kernel, rate, padding=(kernel - rate) // 2))
            for k, d in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilations):
                self.resblocks.append(ResBlock1(c_out, k, d))
        self.conv_post = nn.Conv1d(ch // 2 ** len(cfg.upsample_rates), 1, 7, padding=3)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """mel (B, n_mels, T) natural-log magnitude -> waveform (B, samples) in [-1, 1]."""
        x = self.conv_pre(mel)
        n = len(self.config.resblock_kernel_sizes)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            x = sum(self.resblocks[i * n + j](x) for j in range(n)) / n
        x = self.conv_post(F.leaky_relu(x))  # default slope 0.01 here, as in HiFi-GAN
        return torch.tanh(x)[:, 0]


class MagnitudeNet(nn.Module):
    """log-mel (B, n_mels, T) -> (B, n_freq, T) correction of the NNLS log-magnitude: a 1-d convolutional net over
    time (dilated residual blocks). Its last layer starts at zero, so an untrained net leaves NNLS unchanged."""

    def __init__(self, n_mels: int, n_freq: int, channels: int, dilations: tuple[int, ...]):
        super().__init__()
        self.inp = nn.Conv1d(n_mels, channels, 5, padding=2)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.LeakyReLU(LRELU_SLOPE),
                nn.Conv1d(channels, channels, 3, padding=d, dilation=d),
                nn.LeakyReLU(LRELU_SLOPE),
                nn.Conv1d(channels, channels, 1),
            )
            for d in dilations
        )
        self.out = nn.Conv1d(channels, n_freq, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.inp(mel)
        for block in self.blocks:
            x = x + block(x)
        return self.out(F.leaky_relu(x, LRELU_SLOPE))


def ceiling_bands(basis: torch.Tensor, floor: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """(n_mels, n_freq) filterbank -> for each linear bin, the (up to) two bands that hold it (n_freq, 2) and the
    log of its weights in them (n_freq, 2). A band's value is at least a bin's weight times its magnitude, so each
    band bounds the bin. Triangular bands overlap in pairs, so two bands cover every bin; a bin with one band lists
    it twice, and a bin no band covers (0 Hz and the Nyquist bin, with fmin 0 and fmax at Nyquist) is held by its
    nearest band as if it weighed `floor` times that band's peak."""
    peak = basis.amax(dim=1)
    weights, bands = basis.topk(2, dim=0)  # (2, n_freq) each
    bands[1] = torch.where(weights[1] > 0, bands[1], bands[0])  # one band: itself twice
    nearest = (basis.argmax(dim=1)[:, None] - torch.arange(basis.shape[1])[None]).abs().argmin(dim=0)
    covered = weights[0] > 0
    bands = torch.where(covered, bands, nearest[None]).T.contiguous()
    held = basis[bands, torch.arange(basis.shape[1])[:, None]]  # (n_freq, 2)
    return bands, torch.where(covered[:, None], held, floor * peak[bands]).log()


class GriffinLim(nn.Module):
    def __init__(self, cfg: VocoderConfig, audio: AudioConfig):
        super().__init__()
        self.config, self.audio = cfg, audio
        basis = mel_filterbank(audio).float()  # (n_mels, n_freq)
        self.register_buffer("basis", basis, persistent=False)
        self.register_buffer("pinv", torch.linalg.pinv(basis), persistent=False)
        self.register_buffer("window", torch.hann_window(audio.win_length), persistent=False)
        self.net = (
            MagnitudeNet(cfg.n_mels, basis.shape[1], cfg.magnitude_channels, cfg.magnitude_dilations)
            if cfg.magnitude_channels
            else None
        )
        self.log_max = math.log(
            float(self.window.sum())
        )  # no STFT bin of a waveform in [-1, 1] exceeds the window's sum
        self.log_floor = math.log(audio.log_clamp)  # the log-mel's own floor: no bin is ever exactly 0 (log -inf)
        bands, log_weights = ceiling_bands(basis)
        self.register_buffer("ceiling_bands", bands, persistent=False)
        self.register_buffer("ceiling_log_weights", log_weights, persistent=False)

    def log_ceiling(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, T) log-mel -> (B, n_freq, T) the most each linear bin may hold in that frame: a bin carries
        weight w in a band, so its magnitude times w cannot exceed the band's mel value (the tighter of its two
        bands); the two bins no band covers are held by their nearest band's level, not left unbounded."""
        mel = mel.float()
        per_band = mel[:, self.ceiling_bands, :] - self.ceiling_log_weights[None, :, :, None]  # (B, n_freq, 2, T)
        return per_band.amin(dim=2).clamp(max=self.log_max)

    def log_magnitude(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, T) log-mel -> (B, n_freq, T) natural-log linear magnitude: NNLS (whose mel projection fits
        the mel), corrected by the learned net if there is one, then held between the log-mel's floor and each
        bin's ceiling (`log_ceiling`): whatever the net makes of a mel it never saw, no bin can ask for more than
        its mel frame allows, and none is 0."""
        target = mel.float().exp()
        mag = (self.pinv @ target).clamp(min=0) + 1e-7
        for _ in range(self.config.nnls_iters):  # Lee-Seung multiplicative updates keep it non-negative
            mag = mag * (self.basis.T @ target) / (self.basis.T @ (self.basis @ mag) + 1e-10)
        log_mag = mag.clamp(min=math.exp(self.log_floor)).log()
        if self.net is not None:
            log_mag = log_mag + self.net(mel.to(self.net.out.weight.dtype)).float()
        return torch.minimum(log_mag, self.log_ceiling(mel)).clamp(min=self.log_floor)

    def magnitude(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, T) log-mel -> (B, n_freq, T) non-negative linear magnitude."""
        return self.log_magnitude(mel).exp()

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """mel (B, n_mels, T) natural-log magnitude -> waveform (B, T * hop)."""
        return self.invert(mel)[0]

    def invert(self, mel: torch.Tensor, phase: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """mel (B, n_mels, T) -> (waveform (B, T * hop), phase (B, n_freq, T) as unit complex numbers).
        phase (B, n_freq, K), K <= T, holds the first K frames at a known phase (the previous chunk's, so that two
        chunks of one long mel agree where they overlap); the other frames' phase is fitted around them."""
        a = self.audio
        mag = self.magnitude(mel)
        frames, length = mel.shape[-1], mel.shape[-1] * a.hop_length
        gen = torch.Generator(device="cpu").manual_seed(0)  # deterministic initial phase
        angles = torch.polar(
            torch.ones_like(mag, device="cpu"), 2 * torch.pi * torch.rand(mag.shape, generator=gen)
        ).to(mag.device)
        known = 0 if phase is None else phase.shape[-1]
        if known:
            angles[..., :known] = phase
        stft = dict(n_fft=a.n_fft, hop_length=a.hop_length, win_length=a.win_length, window=self.window)
        previous = torch.zeros_like(angles)
        alpha = self.config.momentum / (1 + self.config.momentum)
        for _ in range(self.config.griffin_lim_iters):
            wav = torch.istft(mag * angles, length=length, **stft)
            rebuilt = torch.stft(wav, return_complex=True, **stft)[..., :frames]
            angles = rebuilt - alpha * previous
            angles = angles / angles.abs().clamp(min=1e-8)
            if known:
                angles[..., :known] = phase
            previous = rebuilt
        wav = torch.istft(mag * angles, length=length, **stft)
        # torch frames are centred on k * hop; ours (un-centred STFT after a 432-sample pad) on k * hop + hop / 2
        return F.pad(wav, (a.hop_length // 2, 0))[:, :length], angles


def vocode(
    vocoder: nn.Module,
    mel: torch.Tensor,
    hop: int,
    chunk: int = 1024,
    overlap: int = 64,
    sample_rate: int = 16000,
    limit: bool = True,
    context: int = 32,
) -> torch.Tensor:
    """mel (B, n_mels, T) of any length -> waveform (B, T * hop), in chunks of `chunk` frames that overlap by at
    least `overlap` and are crossfaded: memory stays bounded, and a mel of one chunk is vocoded in one call. Peaks
    above full scale (a decoded mel can ask for more than a waveform in [-1, 1] holds) go through `limit_peaks`
    rather than being clipped (`limit=False`: returned as they are, to see how often the limiter has to act).

    HiFi-GAN is convolutional: each chunk is vocoded with `context` more frames on both sides (more than its
    receptive field), which are cut off again, so that the crossfade joins two renderings of the same waveform
    (without them the frames at a chunk's ends, rendered against zero padding, leak into the fade). Griffin-Lim's
    phase is global: each chunk starts its overlap from the phase the previous chunk ended with,
    so the two waveforms are in phase where they are crossfaded (independent phases would cancel there)."""
    frames = mel.shape[-1]
    starts = window_starts(frames, chunk, overlap)

    def pieces():
        phase = None
        for i, start in enumerate(starts):
            piece = mel[..., start : start + chunk]
            if isinstance(vocoder, GriffinLim):
                carried = phase[..., start - starts[i - 1] :] if phase is not None else None
                wav, phase = vocoder.invert(piece, carried)
            else:
                lo, hi = max(0, start - context), min(frames, start + chunk + context)
                wav = vocoder(mel[..., lo:hi])[:, (start - lo) * hop :]
            yield wav[:, : piece.shape[-1] * hop]

    wav = blend(pieces(), [s * hop for s in starts], frames * hop)
    return limit_peaks(wav, sample_rate) if limit else wav


def build_vocoder(cfg: VocoderConfig, audio: AudioConfig) -> nn.Module:
    if cfg.kind == "hifigan":
        return Vocoder(cfg)
    if cfg.kind == "griffinlim":
        return GriffinLim(cfg, audio)
    raise UserError(f"unknown vocoder kind {cfg.kind!r}")
