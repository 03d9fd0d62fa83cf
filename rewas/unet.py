"""⑤ The text-to-audio denoiser: AudioLDM's openaimodel UNet with FiLM text conditioning.

Parameter names follow the released checkpoints (`model.diffusion_model.*` without the prefix), so the
released weights load with a plain `load_state_dict`. Shapes (paper): x (B, 8, T=128, F=16), t (B,),
text (B, 512) -> eps (B, 8, T, F). T must be a multiple of 8 (three 2x downsamplings).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import UNetConfig
from .layers import Upsample


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 (as in the release), 32 groups."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__(32, channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.group_norm(x.float(), self.num_groups, weight, bias, self.eps).to(x.dtype)


def zero_module(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [cos, sin] of (B,) timesteps -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class ResBlock(nn.Module):
    def __init__(self, channels: int, emb_dim: int, out_channels: int | None = None):
        super().__init__()
        out_channels = out_channels or channels
        self.in_layers = nn.Sequential(
            GroupNorm32(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, out_channels))
        self.out_layers = nn.Sequential(
            GroupNorm32(out_channels),
            nn.SiLU(),
            nn.Dropout(0.0),
            zero_module(nn.Conv2d(out_channels, out_channels, 3, padding=1)),
        )
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        h = h + self.emb_layers(emb).to(h.dtype)[..., None, None]
        return self.skip_connection(x) + self.out_layers(h)


class Attention(nn.Module):
    """Multi-head self-attention with the release's projection names (no context: AudioLDM has no cross-attention)."""

    def __init__(self, dim: int, heads: int, dim_head: int):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = (proj(x).view(b, n, self.heads, -1).transpose(1, 2) for proj in (self.to_q, self.to_k, self.to_v))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class GEGLU(nn.Module):
    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = self.proj(x).chunk(2, dim=-1)
        return x * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, dim * mult), nn.Dropout(0.0), nn.Linear(dim * mult, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BasicTransformerBlock(nn.Module):
    """Two self-attentions (attn2 has no context in AudioLDM) and a GEGLU feed-forward, pre-norm."""

    def __init__(self, dim: int, heads: int, dim_head: int):
        super().__init__()
        self.attn1 = Attention(dim, heads, dim_head)
        self.ff = FeedForward(dim)
        self.attn2 = Attention(dim, heads, dim_head)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x))
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    def __init__(self, channels: int, head_channels: int, depth: int = 1):
        super().__init__()
        heads = channels // head_channels
        self.norm = nn.GroupNorm(32, channels, eps=1e-6)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(channels, heads, head_channels) for _ in range(depth)
        )
        self.proj_out = zero_module(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.proj_in(self.norm(x)).flatten(2).transpose(1, 2)  # (B, H*W, C)
        for block in self.transformer_blocks:
            y = block(y)
        return x + self.proj_out(y.transpose(1, 2).reshape(b, c, h, w))


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class EmbedSequential(nn.Sequential):
    """A sequential block whose ResBlocks also receive the (time + FiLM) embedding."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


def build_encoder(cfg: UNetConfig) -> tuple[nn.ModuleList, nn.Module, list[int]]:
    """Input blocks + middle block, shared by the UNet and its adapter copy. Returns (blocks, middle, skip channels)."""
    emb = cfg.emb_dim
    blocks = nn.ModuleList([EmbedSequential(nn.Conv2d(cfg.in_channels, cfg.model_channels, 3, padding=1))])
    skips = [cfg.model_channels]
    ch, ds = cfg.model_channels, 1
    for level, mult in enumerate(cfg.channel_mult):
        for _ in range(cfg.num_res_blocks):
            layers: list[nn.Module] = [ResBlock(ch, emb, mult * cfg.model_channels)]
            ch = mult * cfg.model_channels
            if ds in cfg.attention_resolutions:
                layers.append(SpatialTransformer(ch, cfg.num_head_channels, cfg.transformer_depth))
            blocks.append(EmbedSequential(*layers))
            skips.append(ch)
        if level != len(cfg.channel_mult) - 1:
            blocks.append(EmbedSequential(Downsample(ch)))
            skips.append(ch)
            ds *= 2
    middle = EmbedSequential(
        ResBlock(ch, emb), SpatialTransformer(ch, cfg.num_head_channels, cfg.transformer_depth), ResBlock(ch, emb)
    )
    return blocks, middle, skips


def make_condition_layers(cfg: UNetConfig) -> tuple[nn.Module, nn.Module]:
    """(time_embed, film_emb) under the released names; the UNet and its adapter each own a pair."""
    time_embed = nn.Sequential(
        nn.Linear(cfg.model_channels, cfg.time_embed_dim), nn.SiLU(), nn.Linear(cfg.time_embed_dim, cfg.time_embed_dim)
    )
    return time_embed, nn.Linear(cfg.film_dim, cfg.time_embed_dim)


def condition_embedding(module: nn.Module, t: torch.Tensor, text: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B,) timesteps + (B, film_dim) text -> (B, emb_dim) = [time_embed(sinusoid(t)), film_emb(text)]."""
    t_emb = timestep_embedding(t, module.config.model_channels).to(dtype)
    return torch.cat([module.time_embed(t_emb), module.film_emb(text.to(dtype))], dim=-1)


class UNet(nn.Module):
    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.config = cfg
        self.time_embed, self.film_emb = make_condition_layers(cfg)
        self.input_blocks, self.middle_block, skips = build_encoder(cfg)
        emb = cfg.emb_dim
        ch = cfg.model_channels * cfg.channel_mult[-1]
        ds = 2 ** (len(cfg.channel_mult) - 1)
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                layers: list[nn.Module] = [ResBlock(ch + skips.pop(), emb, cfg.model_channels * mult)]
                ch = cfg.model_channels * mult
                if ds in cfg.attention_resolutions:
                    layers.append(SpatialTransformer(ch, cfg.num_head_channels, cfg.transformer_depth))
                if level and i == cfg.num_res_blocks:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(EmbedSequential(*layers))
        self.out = nn.Sequential(GroupNorm32(ch), nn.SiLU(), zero_module(nn.Conv2d(ch, cfg.out_channels, 3, padding=1)))

    @property
    def dtype(self) -> torch.dtype:
        return self.out[2].weight.dtype

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, control: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """x (B, C, T, F), t (B,), text (B, film_dim), control: adapter residuals (one per skip, then the middle)."""
        emb = condition_embedding(self, t, text, self.dtype)
        h = x.to(self.dtype)
        skips = []
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        if control is not None:
            control = list(control)
            h = h + control.pop()
        for block in self.output_blocks:
            skip = skips.pop()
            if control is not None:
                skip = skip + control.pop()
            h = block(torch.cat([h, skip], dim=1), emb)
        return self.out(h).to(x.dtype)
