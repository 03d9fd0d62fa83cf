"""The LAION-CLAP score as MMAudio's av-benchmark computes it: the cosine between a clip's LAION-CLAP audio embedding
and its prompt's text embedding, with `music_speech_audioset_epoch_15_esc_89.98.pt` (HTSAT-base audio tower, RoBERTa
text tower, no feature fusion).

Audio tower: HTSAT (Chen et al. 2022), a Swin transformer over a log-mel image. 48 kHz audio, repeated and
zero-padded to 10 s (av-benchmark's `repeatpad`; longer clips: the first 10 s, where the reference crops at
random). STFT 1024 / hop 480 (periodic Hann, centred, reflect), power, 64 slaney mel bands 50-14000 Hz, 10·log10.
BatchNorm over the mel bands. The (1001, 64) spectrogram is resized bicubically to (1024, 64) and folded into a
256 × 256 image: four 256-frame strips stacked along frequency. Patches 4 × 4, four stages of shifted-window
attention (window 8) with patch merging in between. The embedding is the mean of the final normalised tokens.
Text tower: RoBERTa's pooled first token, the same tower as AudioLDM's conditioning (`rewas.text_encoder`).
Both towers end in a projection MLP to 512 and unit norm.

Parameter names are the checkpoint's (`module.` prefix removed). Buffers the reference stores (attention masks,
relative-position indices, the STFT and mel kernels) are recomputed here, not loaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .._optional import require
from ..checkpoint import load_checked, read_state
from ..config import ClapTextConfig
from ..errors import MissingFileError
from ..text_encoder import RobertaBPETokenizer, TextEncoder
from . import metrics as M


@dataclass(frozen=True)
class HTSATConfig:
    sample_rate: int = 48000
    clip_samples: int = 480000  # 10 s
    window: int = 1024
    hop: int = 480
    mel_bins: int = 64
    fmin: float = 50.0
    fmax: float = 14000.0
    spec_size: int = 256
    patch: int = 4
    embed_dim: int = 128  # HTSAT-base (tiny: 96)
    depths: tuple[int, ...] = (2, 2, 12, 2)
    heads: tuple[int, ...] = (4, 8, 16, 32)
    window_size: int = 8
    mlp_ratio: float = 4.0
    classes: int = 527

    @property
    def freq_ratio(self) -> int:
        return self.spec_size // self.mel_bins

    @property
    def features(self) -> int:
        return self.embed_dim * 2 ** (len(self.depths) - 1)


@dataclass(frozen=True)
class LaionCLAPConfig:
    audio: HTSATConfig = field(default_factory=HTSATConfig)
    text: ClapTextConfig = field(default_factory=lambda: ClapTextConfig(max_length=77))
    joint: int = 512


def _windows(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * H/size * W/size, size * size, C), windows in row-major order."""
    b, h, w, c = x.shape
    x = x.view(b, h // size, size, w // size, size, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, size * size, c)


def _unwindow(x: torch.Tensor, size: int, h: int, w: int) -> torch.Tensor:
    b = x.shape[0] // ((h // size) * (w // size))
    x = x.view(b, h // size, w // size, size, size, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, -1)


class _WindowAttention(nn.Module):
    def __init__(self, dim: int, heads: int, size: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * size - 1) ** 2, heads))
        pos = torch.stack(torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")).flatten(1)  # (2, N)
        rel = (pos[:, :, None] - pos[:, None, :]).permute(1, 2, 0) + (size - 1)  # (N, N, 2), from 0
        self.register_buffer("relative_position_index", rel[..., 0] * (2 * size - 1) + rel[..., 1], persistent=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)].view(n, n, -1)
        attn = (q * (c // self.heads) ** -0.5) @ k.transpose(-2, -1) + bias.permute(2, 0, 1)[None]
        if mask is not None:  # (nW, N, N): windows that straddle the cyclic shift's seams
            attn = (attn.view(b // mask.shape[0], mask.shape[0], self.heads, n, n) + mask[None, :, None]).view(
                b, self.heads, n, n
            )
        return self.proj((attn.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c))


class _SwinBlock(nn.Module):
    def __init__(self, dim: int, heads: int, resolution: tuple[int, int], size: int, shift: int, mlp_ratio: float):
        super().__init__()
        if min(resolution) <= size:  # the whole map fits one window: no shift
            size, shift = min(resolution), 0
        self.resolution, self.size, self.shift = resolution, size, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _WindowAttention(dim, heads, size)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(dim, int(dim * mlp_ratio))
        self.mlp.fc2 = nn.Linear(int(dim * mlp_ratio), dim)
        mask = None
        if shift:
            h, w = resolution
            region = torch.zeros(1, h, w, 1)
            spans = (slice(0, -size), slice(-size, -shift), slice(-shift, None))
            for i, (hs, ws) in enumerate((hs, ws) for hs in spans for ws in spans):
                region[:, hs, ws] = i
            ids = _windows(region, size)[..., 0]  # (nW, N)
            mask = (ids[:, None, :] != ids[:, :, None]).float() * -100.0
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (h, w), (b, _, c) = self.resolution, x.shape
        y = self.norm1(x).view(b, h, w, c)
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), dims=(1, 2))
        y = _unwindow(self.attn(_windows(y, self.size), self.attn_mask), self.size, h, w)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), dims=(1, 2))
        x = x + y.reshape(b, h * w, c)
        return x + self.mlp.fc2(F.gelu(self.mlp.fc1(self.norm2(x))))


class _PatchMerging(nn.Module):
    def __init__(self, dim: int, resolution: tuple[int, int]):
        super().__init__()
        self.resolution = resolution
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (h, w), (b, _, c) = self.resolution, x.shape
        x = x.view(b, h, w, c)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


class HTSAT(nn.Module):
    """(B, N) waveform at 48 kHz -> (B, features) embedding. Inference only; the classification head
    (`tscam_conv`, `head`) is kept for the checkpoint and not run."""

    def __init__(self, cfg: HTSATConfig = HTSATConfig()):
        super().__init__()
        librosa = require("librosa", extra="eval", for_="the LAION-CLAP score (HTSAT)")

        self.config = cfg
        mel = librosa.filters.mel(
            sr=cfg.sample_rate, n_fft=cfg.window, n_mels=cfg.mel_bins, fmin=cfg.fmin, fmax=cfg.fmax
        )
        self.register_buffer("mel_basis", torch.from_numpy(mel.T.copy()).float(), persistent=False)
        self.bn0 = nn.BatchNorm2d(cfg.mel_bins)
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(1, cfg.embed_dim, cfg.patch, stride=cfg.patch)
        self.patch_embed.norm = nn.LayerNorm(cfg.embed_dim)
        grid = cfg.spec_size // cfg.patch
        self.layers = nn.ModuleList()
        for i, (depth, heads) in enumerate(zip(cfg.depths, cfg.heads)):
            dim, res = cfg.embed_dim * 2**i, (grid // 2**i, grid // 2**i)
            stage = nn.Module()
            stage.blocks = nn.ModuleList(
                _SwinBlock(dim, heads, res, cfg.window_size, 0 if j % 2 == 0 else cfg.window_size // 2, cfg.mlp_ratio)
                for j in range(depth)
            )
            stage.downsample = _PatchMerging(dim, res) if i < len(cfg.depths) - 1 else None
            self.layers.append(stage)
        self.norm = nn.LayerNorm(cfg.features)
        sf = cfg.spec_size // 2 ** (len(cfg.depths) - 1) // cfg.patch // cfg.freq_ratio
        self.tscam_conv = nn.Conv2d(cfg.features, cfg.classes, (sf, 3), padding=(0, 1))
        self.head = nn.Linear(cfg.classes, cfg.classes)

    def logmel(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, N) -> (B, 1, T, mel): torchlibrosa's Spectrogram + LogmelFilterBank (power, ref 1, amin 1e-10)."""
        cfg = self.config
        spec = torch.stft(wav, cfg.window, cfg.hop, window=torch.hann_window(cfg.window, device=wav.device),
                          center=True, pad_mode="reflect", return_complex=True)  # fmt: skip
        mel = (spec.abs() ** 2).transpose(1, 2) @ self.mel_basis
        return (10.0 * torch.log10(mel.clamp(min=1e-10)))[:, None]

    def image(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, T, mel) -> (B, 1, spec_size, spec_size): resized to (spec_size * r, mel) then folded, r strips of
        spec_size frames stacked along frequency (r = spec_size / mel)."""
        cfg, r = self.config, self.config.freq_ratio
        x = F.interpolate(x, (cfg.spec_size * r, x.shape[3]), mode="bicubic", align_corners=True)
        b, c, t, f = x.shape
        x = x.permute(0, 1, 3, 2).reshape(b, c, f, r, t // r).permute(0, 1, 3, 2, 4)
        return x.reshape(b, c, f * r, t // r)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        x = self.bn0(self.logmel(wav.float()).transpose(1, 3)).transpose(1, 3)
        x = self.patch_embed.norm(self.patch_embed.proj(self.image(x)).flatten(2).transpose(1, 2))
        for stage in self.layers:
            for block in stage.blocks:
                x = block(x)
            if stage.downsample is not None:
                x = stage.downsample(x)
        return self.norm(x).mean(dim=1)  # the mean over every time-frequency token


class LaionCLAP(TextEncoder):
    """LAION-CLAP without fusion: `text_branch` / `text_projection` (RoBERTa, as `TextEncoder`) and
    `audio_branch` (HTSAT) / `audio_projection`."""

    def __init__(self, cfg: LaionCLAPConfig = LaionCLAPConfig(), tokenizer=None):
        super().__init__(cfg.text, tokenizer)
        self.clap_config = cfg
        self.audio_branch = HTSAT(cfg.audio)
        self.audio_projection = nn.Sequential(
            nn.Linear(cfg.audio.features, cfg.joint), nn.ReLU(), nn.Linear(cfg.joint, cfg.joint)
        )

    @torch.no_grad()
    def embed_audio(self, wav: np.ndarray) -> torch.Tensor:
        """(N,) waveform at 48 kHz -> (joint,) unit vector: repeated whole, then zero-padded to 10 s."""
        n = self.clap_config.audio.clip_samples
        wav = np.asarray(wav, dtype=np.float32)[:n]
        if 0 < len(wav) < n:
            wav = np.tile(wav, n // len(wav))
        wav = np.pad(wav, (0, n - len(wav)))
        return F.normalize(self.audio_projection(self.audio_branch(torch.from_numpy(wav)[None]))[0], dim=-1)

    @torch.no_grad()
    def embed_text(self, prompts: list[str]) -> torch.Tensor:
        return self.encode(prompts)

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, cfg: LaionCLAPConfig = LaionCLAPConfig()) -> LaionCLAP:
        """A folder with the checkpoint (`music_speech_audioset_epoch_15_esc_89.98.pt`) and roberta-base's
        `vocab.json` + `merges.txt`."""
        folder = Path(folder)
        named = folder / "music_speech_audioset_epoch_15_esc_89.98.pt"
        weights = [named] if named.is_file() else sorted(folder.glob("*.pt")) if folder.is_dir() else []
        missing = ([] if weights else ["music_speech_audioset_epoch_15_esc_89.98.pt"]) + [
            name for name in ("vocab.json", "merges.txt") if not (folder / name).is_file()
        ]
        if missing:
            raise MissingFileError(
                f"{folder}: LAION-CLAP folder lacks {', '.join(missing)} (weights: Hugging Face lukewys/laion_clap; "
                "vocab.json and merges.txt: roberta-base)"
            )
        state = read_state(weights[0], "state_dict", what="LAION-CLAP", source="lukewys/laion_clap")
        state = {k.removeprefix("module."): v for k, v in state.items()}
        keep = ("audio_branch.", "audio_projection.", "text_branch.", "text_projection.")
        state = {
            k: v
            for k, v in state.items()
            if k.startswith(keep)
            and not k.startswith(("audio_branch.spectrogram_extractor.", "audio_branch.logmel_extractor."))
            and not k.endswith(("attn_mask", "relative_position_index", "position_ids"))
        }
        tokenizer = RobertaBPETokenizer(folder, cfg.text.max_length)
        return load_checked(cls(cfg, tokenizer), state, weights[0], "LAION-CLAP (HTSAT-base, no fusion)")


def laion_clap_metrics(model: LaionCLAP, rows: list[dict]) -> dict:
    """LAION-CLAP score: cosine between each generated clip and its prompt, averaged."""
    rate = model.clap_config.audio.sample_rate
    return M.clap_scores(rows, "clap_laion", rate, model.embed_audio, model.embed_text)
