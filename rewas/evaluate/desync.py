"""DeSync (MMAudio's av-benchmark): how far off, in seconds, Synchformer judges the audio to be from the video.

Synchformer (Iashin et al. 2024) = our Motionformer video encoder (`rewas.video_encoder`) + an AST audio encoder
with per-time-step frequency aggregation + a small transformer that classifies the offset into 21 classes
(-2 ... +2 s, step 0.2). As in av-benchmark: video at 25 fps, short side 224, centre crop 224, segments of 16
frames with stride 8; audio at 16 kHz, segments of 10,240 samples with stride 5,120, log(mel + 1e-6) with 128
HTK mel bins (n_fft 1024, window 400, hop 160) padded to 66 frames, normalised (x + 4.27) / (2 * 4.57).
DeSync = mean |predicted offset| of the first 14 segments (4.8 s) and of the last 14.

Weights: Synchformer's `24-01-04T16-39-21.pt` (`['model']`) or av-benchmark's `synchformer_state_dict.pth`,
read with torch.load(weights_only=True); parameter names are the released ones.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .._optional import require
from ..checkpoint import load_checked, read_state
from ..config import MotionformerConfig, VideoConfig
from ..errors import UserError
from ..frames import iter_frames, normalize, probe, segments
from ..video_encoder import SpatialAggregation, VideoEncoder
from . import metrics as M

OFFSET_GRID = np.linspace(-2.0, 2.0, 21)


@dataclass(frozen=True)
class SynchformerConfig:
    video: MotionformerConfig = field(default_factory=MotionformerConfig)
    dim: int = 768
    ast_layers: int = 12
    ast_heads: int = 12
    ast_ff: int = 3072
    mel_bins: int = 128
    spec_frames: int = 66
    patch: int = 16
    stride: int = 10
    sync_layers: int = 3
    sync_heads: int = 8
    segments: int = 14  # per comparison (4.8 s)
    classes: int = 21

    @property
    def audio_grid(self) -> tuple[int, int]:
        return (self.mel_bins - self.patch) // self.stride + 1, (self.spec_frames - self.patch) // self.stride + 1


# ------------------------------------------------------------------------------------------------ audio branch


class _ViTLayer(nn.Module):
    """A pre-norm ViT layer with the Hugging Face AST parameter names of the Synchformer checkpoint."""

    def __init__(self, dim: int, heads: int, ff: int):
        super().__init__()
        self.heads = heads
        self.attention = nn.Module()
        self.attention.attention = nn.Module()
        for name in ("query", "key", "value"):
            setattr(self.attention.attention, name, nn.Linear(dim, dim))
        self.attention.output = nn.Module()
        self.attention.output.dense = nn.Linear(dim, dim)
        self.intermediate = nn.Module()
        self.intermediate.dense = nn.Linear(dim, ff)
        self.output = nn.Module()
        self.output.dense = nn.Linear(ff, dim)
        self.layernorm_before = nn.LayerNorm(dim, eps=1e-12)
        self.layernorm_after = nn.LayerNorm(dim, eps=1e-12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        a = self.attention.attention
        h = self.layernorm_before(x)
        q, k, v = (p(h).view(b, n, self.heads, -1).transpose(1, 2) for p in (a.query, a.key, a.value))
        x = x + self.attention.output.dense(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))
        return x + self.output.dense(F.gelu(self.intermediate.dense(self.layernorm_after(x))))


class AST(nn.Module):
    """(B, T=66, F=128) log-mel -> (B, 2 + f * t, D): patches 16x16 with stride 10, CLS + distillation tokens."""

    def __init__(self, cfg: SynchformerConfig):
        super().__init__()
        f, t = cfg.audio_grid
        self.embeddings = nn.Module()
        self.embeddings.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.embeddings.distillation_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.embeddings.position_embeddings = nn.Parameter(torch.zeros(1, f * t + 2, cfg.dim))
        self.embeddings.patch_embeddings = nn.Module()
        self.embeddings.patch_embeddings.projection = nn.Conv2d(1, cfg.dim, cfg.patch, stride=cfg.stride)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList(_ViTLayer(cfg.dim, cfg.ast_heads, cfg.ast_ff) for _ in range(cfg.ast_layers))
        self.layernorm = nn.LayerNorm(cfg.dim, eps=1e-12)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        e = self.embeddings
        x = e.patch_embeddings.projection(spec[:, None].transpose(2, 3))  # (B, D, f, t): frequency-major patches
        x = x.flatten(2).transpose(1, 2)
        tokens = torch.cat([e.cls_token, e.distillation_token], dim=1).expand(x.shape[0], -1, -1)
        x = torch.cat([tokens, x], dim=1) + e.position_embeddings
        for layer in self.encoder.layer:
            x = layer(x)
        return self.layernorm(x)


class AudioFeatures(nn.Module):
    """Segments (B, S, T, F) -> (B, S, t, D): AST tokens pooled over frequency per time step."""

    def __init__(self, cfg: SynchformerConfig):
        super().__init__()
        self.grid = cfg.audio_grid
        self.ast = AST(cfg)
        self.freq_attn_agg = SpatialAggregation(cfg.dim, cfg.ast_heads, cfg.ast_ff)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        b, s, t_in, f_in = spec.shape
        x = self.ast(spec.reshape(b * s, t_in, f_in))[:, 2:]  # drop CLS and distillation tokens
        f, t = self.grid
        d = x.shape[-1]
        x = x.transpose(1, 2).reshape(b * s, d, f, t).permute(0, 3, 2, 1).reshape(b * s * t, f, d)
        return self.freq_attn_agg(x).reshape(b, s, t, d)


# ------------------------------------------------------------------------------------------------ offset head


class _SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.key, self.query, self.value, self.proj = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = (p(x).view(b, n, self.heads, -1).transpose(1, 2) for p in (self.query, self.key, self.value))
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = _SelfAttention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class OffsetTransformer(nn.Module):
    """[OFF, video tokens, MOD, audio tokens] + learned positions -> 3 blocks -> logits of the OFF token (B, 21)."""

    def __init__(self, cfg: SynchformerConfig):
        super().__init__()
        tokens = 2 + cfg.segments * (cfg.video.tokens_per_segment + cfg.audio_grid[1])
        self.vis_in_lnorm, self.aud_in_lnorm = nn.LayerNorm(cfg.dim), nn.LayerNorm(cfg.dim)
        self.OFF_tok = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.MOD_tok = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.pos_emb_cfg = nn.Module()
        self.pos_emb_cfg.pos_emb = nn.Parameter(torch.zeros(1, tokens, cfg.dim))
        self.blocks = nn.Sequential(*(_Block(cfg.dim, cfg.sync_heads) for _ in range(cfg.sync_layers)))
        self.ln_f = nn.LayerNorm(cfg.dim)
        self.off_head = nn.Linear(cfg.dim, cfg.classes)

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        b = video.shape[0]
        x = (
            torch.cat(
                [
                    self.OFF_tok.expand(b, -1, -1),
                    self.vis_in_lnorm(video),
                    self.MOD_tok.expand(b, -1, -1),
                    self.aud_in_lnorm(audio),
                ],
                dim=1,
            )
            + self.pos_emb_cfg.pos_emb
        )
        return self.off_head(self.ln_f(self.blocks(x))[:, 0])


class Synchformer(nn.Module):
    def __init__(self, cfg: SynchformerConfig = SynchformerConfig()):
        super().__init__()
        self.config = cfg
        self.vfeat_extractor = VideoEncoder(cfg.video)
        self.afeat_extractor = AudioFeatures(cfg)
        self.vproj, self.aproj = nn.Linear(cfg.dim, cfg.dim), nn.Linear(cfg.dim, cfg.dim)
        self.transformer = OffsetTransformer(cfg)

    def offset_logits(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """video (B, S, 8, D) and audio (B, S, 6, D) features of S = 14 segments -> (B, 21) offset logits."""
        b, d = video.shape[0], video.shape[-1]
        return self.transformer(self.vproj(video).reshape(b, -1, d), self.aproj(audio).reshape(b, -1, d))

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, cfg: SynchformerConfig = SynchformerConfig()) -> Synchformer:
        state = read_state(
            path,
            "model",
            what="Synchformer",
            source="24-01-04T16-39-21.pt from the Synchformer release, or av-benchmark's synchformer_state_dict.pth",
        )
        state = {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}
        model = cls(cfg)
        pos = "transformer.pos_emb_cfg.pos_emb"
        if pos in state and state[pos].shape[1] > model.transformer.pos_emb_cfg.pos_emb.shape[1]:
            state[pos] = state[pos][:, : model.transformer.pos_emb_cfg.pos_emb.shape[1]]  # as Synchformer trims it
        return load_checked(model, state, path, "Synchformer")


# ------------------------------------------------------------------------------------------------ DeSync


@functools.lru_cache(maxsize=2)
def _htk_mel(n_fft: int, n_mels: int, sr: int) -> torch.Tensor:
    librosa = require("librosa", extra="eval", for_="DeSync")

    return torch.from_numpy(
        librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=0.0, fmax=sr / 2, htk=True, norm=None)
    ).float()


def audio_segments(wav: np.ndarray, cfg: SynchformerConfig = SynchformerConfig()) -> torch.Tensor:
    """(N,) 16 kHz -> (S, 66, 128) normalised log-mel segments of 0.64 s with a 0.32 s step."""
    x = torch.as_tensor(np.asarray(wav, dtype=np.float32))
    size, step = 10240, 5120
    count = (len(x) - size) // step + 1
    if count < 1:
        return torch.zeros(0, cfg.spec_frames, cfg.mel_bins)
    segs = torch.stack([x[i * step : i * step + size] for i in range(count)])
    spec = (
        torch.stft(
            segs, 1024, 160, 400, window=torch.hann_window(400), center=True, pad_mode="reflect", return_complex=True
        ).abs()
        ** 2
    )  # (S, 513, 65)
    mel = torch.log(_htk_mel(1024, cfg.mel_bins, 16000) @ spec + 1e-6)
    mel = F.pad(mel, (0, max(0, cfg.spec_frames - mel.shape[-1])))[..., : cfg.spec_frames]
    return ((mel + 4.2677393) / (2 * 4.5689974)).transpose(1, 2)


@torch.no_grad()
def desync(model: Synchformer, video: str | os.PathLike, audio: str | os.PathLike) -> float:
    cfg = model.config
    frames = np.stack(list(iter_frames(video, VideoConfig(resize_short=224, crop=224), probe(video))))
    vis = segments(normalize(frames))  # (Sv, 16, 3, 224, 224)
    aud = audio_segments(M.load_audio(audio, 16000), cfg)  # (Sa, 66, 128)
    s = min(len(vis), len(aud))
    if s < cfg.segments:
        raise UserError(f"DeSync needs at least {cfg.segments} segments (4.8 s) of video and audio, got {s}")
    dtype = model.vproj.weight.dtype
    v_feat = model.vfeat_extractor(vis[:s][None].to(dtype)).reshape(1, s, -1, cfg.dim)
    a_feat = model.afeat_extractor(aud[:s][None].to(dtype))
    offsets = []
    for window in (slice(0, cfg.segments), slice(s - cfg.segments, s)):
        logits = model.offset_logits(v_feat[:, window], a_feat[:, window])
        offsets.append(abs(OFFSET_GRID[int(logits.argmax(-1))]))
    return float(np.mean(offsets))


def desync_metrics(model: Synchformer, rows: list[dict]) -> dict:
    """DeSync per item with a video (seconds; written into each row), averaged."""
    scores = []
    for row in rows:
        if row.get("video"):
            row["desync"] = desync(model, row["video"], row["audio"])
            scores.append(row["desync"])
    return {"desync": float(np.mean(scores))} if scores else {}
