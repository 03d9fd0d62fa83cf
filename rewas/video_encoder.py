"""② Video encoder: segments of frames -> features, Synchformer's visual branch (Motionformer), frozen.

Input: segments (B, S, 16, 3, 224, 224) normalised to [-1, 1]. Each segment: a tubelet embedding (2x16x16 ->
8 x 14 x 14 tokens), a CLS token, 12 blocks of divided space-time attention (time attention, then space
attention, then MLP; the CLS token attends to every token, the others to their time or space group plus CLS),
LayerNorm, then a per-frame spatial aggregation (a pre-norm transformer layer with its own CLS token) that
leaves one token per tubelet. Output: (B, S * 8, C) with C = 768. Parameter names follow the released
`vfeat_extractor.*` keys (`patch_embed.*`, the unused 2-D patch embedding, is kept so they load strictly).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import MotionFeaturesConfig, MotionformerConfig, VideoEncoderConfig
from .errors import UserError
from .layers import Mlp


class PatchEmbed(nn.Module):
    def __init__(self, proj: nn.Module):
        super().__init__()
        self.proj = proj


class DividedAttention(nn.Module):
    """Attention within groups (frames or spatial positions); CLS attends to all and is a key for every group."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, frames: int, over_time: bool) -> torch.Tensor:
        b, n, c = x.shape
        tokens = n - 1
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)  # (B, h, N, d)
        cls_out = F.scaled_dot_product_attention(q[:, :, :1], k, v)  # (B, h, 1, d)

        def group(t: torch.Tensor) -> torch.Tensor:  # (B, h, F*P, d) -> (B, h, groups, group_len, d)
            t = t.reshape(b, self.heads, frames, tokens // frames, -1)
            return t.transpose(2, 3) if over_time else t

        qg, kg, vg = group(q[:, :, 1:]), group(k[:, :, 1:]), group(v[:, :, 1:])
        groups = qg.shape[2]
        kg = torch.cat([k[:, :, None, :1].expand(-1, -1, groups, -1, -1), kg], dim=3)
        vg = torch.cat([v[:, :, None, :1].expand(-1, -1, groups, -1, -1), vg], dim=3)
        out = _group_attention(qg.flatten(0, 1), kg.flatten(0, 1), vg.flatten(0, 1)).view(qg.shape)
        if over_time:
            out = out.transpose(2, 3)
        out = torch.cat([cls_out, out.reshape(b, self.heads, tokens, -1)], dim=2)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


def _group_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(N, groups, L, d) queries against (N, groups, L', d) keys -> (N, groups, L, d).

    4-D so that SDPA takes its flash kernel (5-D inputs fall back to the math path: on a CPU in bf16 the space
    attention took twice as long). Short groups (time attention: 8 queries, 9 keys, in 2,352 groups per block)
    cost the flash kernel more in per-group overhead than in arithmetic: two batched matmuls in fp32 were 2x faster
    there."""
    if q.shape[-2] > 32:
        return F.scaled_dot_product_attention(q, k, v)
    scores = torch.matmul(q.float(), k.float().transpose(-1, -2)) * q.shape[-1] ** -0.5
    return torch.matmul(scores.softmax(dim=-1), v.float()).to(q.dtype)


class DividedSpaceTimeBlock(nn.Module):
    def __init__(self, cfg: MotionformerConfig):
        super().__init__()
        dim = cfg.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.attn = DividedAttention(dim, cfg.num_heads)
        self.timeattn = DividedAttention(dim, cfg.num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio))
        self.norm3 = nn.LayerNorm(dim, eps=cfg.norm_eps)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        x = x + self.timeattn(self.norm3(x), frames, over_time=True)
        x = x + self.attn(self.norm1(x), frames, over_time=False)
        return x + self.mlp(self.norm2(x))


class SpatialAggregation(nn.TransformerEncoderLayer):
    """Pooling of a group of tokens (a frame's patches; in Synchformer's audio branch, a time step's frequency
    patches): a learned CLS token + one pre-norm transformer layer; returns the CLS output."""

    def __init__(self, dim: int, heads: int, ff: int, eps: float = 1e-6):
        super().__init__(
            dim, heads, ff, dropout=0.0, activation="gelu", layer_norm_eps=eps, batch_first=True, norm_first=True
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B', P, C) -> (B', C)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return super().forward(x)[:, 0]


class VideoEncoder(nn.Module):
    def __init__(self, cfg: MotionformerConfig):
        super().__init__()
        self.config = cfg
        dim, p = cfg.embed_dim, cfg.patch_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.grid**2 + 1, dim))
        self.temp_embed = nn.Parameter(torch.zeros(1, cfg.tokens_per_segment, dim))
        self.patch_embed = PatchEmbed(nn.Conv2d(3, dim, p, stride=p))  # stored by the release, unused
        self.patch_embed_3d = PatchEmbed(nn.Conv3d(3, dim, (cfg.tubelet, p, p), stride=(cfg.tubelet, p, p)))
        self.blocks = nn.ModuleList(DividedSpaceTimeBlock(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.spatial_attn_agg = SpatialAggregation(dim, cfg.agg_heads, cfg.agg_ff, cfg.norm_eps)
        for param in (self.cls_token, self.pos_embed, self.temp_embed):
            nn.init.trunc_normal_(param, std=0.02)
        self.segment_runner = None  # `_encode` compiled by another runtime (rewas.runtime), for the CPU path

    @property
    def dtype(self) -> torch.dtype:
        return self.norm.weight.dtype

    def forward(self, segments: torch.Tensor) -> torch.Tensor:
        """segments (B, S, T=16, 3, H, W) in [-1, 1] -> features (B, S * T/2, C)."""
        b, s, t, c, h, w = segments.shape
        x = segments.reshape(b * s, t, c, h, w)
        # on a CPU one segment at a time: its 1,569 tokens' working set stays in the caches (bf16, 14 segments of a
        # 5 s clip, 2 cores: 0.75 s a segment against 1.1-1.6 s all at once), and activations stay small
        calls = x.split(1) if x.device.type == "cpu" else [x]
        encode = self.segment_runner if self.segment_runner is not None and x.device.type == "cpu" else self._encode
        return torch.cat([encode(part) for part in calls]).reshape(b, s * (t // self.config.tubelet), -1)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        """(N, T, 3, H, W) -> (N * T', C)."""
        x = x.transpose(1, 2).to(self.dtype)  # (N, 3, T, H, W)
        x = self.patch_embed_3d.proj(x)  # (N, C, T', H', W')
        n, dim, frames, gh, gw = x.shape
        x = x.flatten(2).transpose(1, 2)  # (N, T'*H'*W', C), frame-major
        pos = self.pos_embed[:, 1:].repeat(1, frames, 1) + self.temp_embed[:, :frames].repeat_interleave(gh * gw, dim=1)
        cls = self.cls_token + self.pos_embed[:, :1]
        x = torch.cat([cls.expand(n, -1, -1), x + pos], dim=1)
        for block in self.blocks:
            x = block(x, frames)
        x = self.norm(x[:, 1:])  # (N, T'*P, C)
        return self.spatial_attn_agg(x.reshape(n * frames, gh * gw, dim))  # (N*T', C)


class MotionFeatures(nn.Module):
    """Weight-free video features with Motionformer's token layout: one vector per tubelet (2 frames) of a segment.

    Per tubelet, from grayscale frames average-pooled to 32 x 32: the mean |frame difference| in each cell of a
    grid x grid layout, the signed mean difference in each 2 x 2 quadrant, and the global mean |difference|,
    its log and the mean brightness. Differences are taken between consecutive frames inside the segment (the
    first frame of a segment is compared with itself). Cheap enough for real time on a CPU; phi learns the rest.

    With `camera_search` > 0, the same differences again after undoing a moving camera: the previous frame (at the
    input resolution) is shifted by the whole-pixel translation, within +-camera_search, that best matches the
    frame, and the difference's spatial mean is removed (lighting flicker). Appended: their grid of |difference|,
    its mean and log, and the length of the shift (how much the camera moved).
    """

    def __init__(self, cfg: MotionFeaturesConfig):
        super().__init__()
        self.config = cfg

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def forward(self, segments: torch.Tensor) -> torch.Tensor:
        """segments (B, S, T, 3, H, W) in [-1, 1] -> features (B, S * T / tubelet, out_dim)."""
        b, s, t, c, h, w = segments.shape
        gray = segments.float().reshape(b * s * t, c, h, w).mean(dim=1, keepdim=True) * 0.5 + 0.5  # in [0, 1]
        x = F.adaptive_avg_pool2d(gray, 32).reshape(b * s, t, 32, 32)
        diff = x - torch.cat([x[:, :1], x[:, :-1]], dim=1)  # (BS, T, 32, 32)
        g = self.config.motion_grid
        tub = self.config.tubelet
        grid = F.adaptive_avg_pool2d(diff.abs(), g).reshape(b * s, t, g * g)
        quads = F.adaptive_avg_pool2d(diff, 2).reshape(b * s, t, 4)
        total = diff.abs().mean(dim=(2, 3))[..., None]
        parts = [grid * 10, quads * 10, total * 10, torch.log(total + 1e-4), x.mean(dim=(2, 3))[..., None]]
        if self.config.camera_search:
            still, shift = camera_compensated_difference(gray.reshape(b * s, t, h, w), self.config.camera_search)
            still_grid = F.adaptive_avg_pool2d(still.abs(), g).reshape(b * s, t, g * g)
            still_total = still.abs().mean(dim=(2, 3))[..., None]
            parts += [still_grid * 10, still_total * 10, torch.log(still_total + 1e-4), shift[..., None]]
        feats = torch.cat(parts, -1)
        feats = feats.reshape(b * s, t // tub, tub, -1).mean(dim=2)  # average over each tubelet
        return feats.reshape(b, s * (t // tub), -1).to(
            segments.dtype if segments.is_floating_point() else torch.float32
        )


def camera_compensated_difference(x: torch.Tensor, search: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gray frames (N, T, H, W) -> (the difference of each frame with its predecessor once the camera's motion is
    undone (N, T, H - 2 * search, W - 2 * search), the length of that shift in pixels (N, T)).

    The camera's motion: the whole-pixel translation within +-search that minimises the mean |difference| over
    the frame's core (the border a shift exposes is left out). The difference's mean is removed before it is
    compared, so lighting flicker neither picks the shift nor shows as motion. Of equally good shifts the
    shortest wins, so a still frame keeps shift 0. The first frame is compared with itself."""
    n, t, h, w = x.shape
    prev = torch.cat([x[:, :1], x[:, :-1]], dim=1)
    core = x[..., search : h - search, search : w - search]
    span = range(-search, search + 1)
    shifts = sorted(((dy, dx) for dy in span for dx in span), key=lambda s: math.hypot(*s))

    def difference(dy: int, dx: int, rows=slice(None)) -> torch.Tensor:
        d = core[rows] - prev[rows][..., search + dy : h - search + dy, search + dx : w - search + dx]
        return d - d.mean(dim=(-2, -1), keepdim=True)

    errors = torch.stack([difference(dy, dx).abs().mean(dim=(-2, -1)) for dy, dx in shifts], dim=-1)  # (N, T, K)
    best = errors.argmin(dim=-1)  # the first of equal errors: the shortest shift
    still = torch.empty_like(core)
    for k in best.unique().tolist():
        rows = (best == k).nonzero(as_tuple=True)
        still[rows] = difference(*shifts[k], rows)
    lengths = torch.tensor([math.hypot(*s) for s in shifts], dtype=x.dtype, device=x.device)
    return still, lengths[best]


def build_video_encoder(cfg: VideoEncoderConfig) -> nn.Module:
    if cfg.kind == "motion":
        return MotionFeatures(cfg)
    if cfg.kind == "motionformer":
        return VideoEncoder(cfg)
    raise UserError(f"unknown video encoder kind {cfg.kind!r}")
