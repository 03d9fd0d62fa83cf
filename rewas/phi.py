"""③ The energy predictor phi: video features (B, S, C) -> energy per token (B, S).

Architecture of the released phi (≈22M parameters at C = 768): Linear C->C; pre-LayerNorm transformer blocks
(8 heads with learned bias_k/bias_v, GELU MLP); head C->128->64->16->1 with ReLU between. Parameter names follow
the released checkpoint (`projection1.0`, `hint_blocks.blocks.N.*`, `projection2.{0,2,4,6}`).

The release builds its attention with batch_first=False and feeds (B, S, C), so it attends across the batch, not
over time. `PhiConfig.released_attention=True` reproduces that exactly (needed for the released weights);
the default attends over time, as intended.

With `PhiConfig.text_dim` (not in the paper) the prompt's embedding, projected to the width, is added to every
token: the video says when the sound moves, the prompt how loud the sound sits between its peaks.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .config import PhiConfig
from .layers import Mlp


class Block(nn.Module):
    def __init__(self, cfg: PhiConfig):
        super().__init__()
        self.attn = nn.MultiheadAttention(cfg.width, cfg.num_heads, bias=True, add_bias_kv=True, batch_first=True)
        self.norm_1 = nn.LayerNorm(cfg.width, eps=cfg.norm_eps)
        self.mlp = Mlp(cfg.width, cfg.mlp_dim)
        self.norm_2 = nn.LayerNorm(cfg.width, eps=cfg.norm_eps)
        self.released_attention = cfg.released_attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm_1(x)
        if self.released_attention:  # sequence axis = batch axis, as the release's batch_first=False module sees it
            h = h.transpose(0, 1)
        h = self.attn(h, h, h, need_weights=False)[0]
        if self.released_attention:
            h = h.transpose(0, 1)
        x = x + h
        return x + self.mlp(self.norm_2(x))


class Blocks(nn.Module):
    def __init__(self, cfg: PhiConfig):
        super().__init__()
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class Phi(nn.Module):
    def __init__(self, cfg: PhiConfig):
        super().__init__()
        self.config = cfg
        self.projection1 = nn.Sequential(nn.Linear(cfg.in_dim, cfg.width))
        if cfg.text_dim:
            self.text_projection = nn.Linear(cfg.text_dim, cfg.width)
        self.hint_blocks = Blocks(cfg)
        dims = (cfg.width, *cfg.head_dims, 1)
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            if i:
                layers.append(nn.ReLU())
            layers.append(nn.Linear(a, b))
        self.projection2 = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        """features (B, S, in_dim), text (B, text_dim) the prompt's embedding (read only with `text_dim`) -> token
        energy (B, S)."""
        x = self.projection1(features.float())
        if self.config.text_dim:
            if text is None:
                raise ValueError("this phi reads the prompt: pass its embedding (the empty prompt's for none)")
            x = x + self.text_projection(text.float())[:, None]
        return self.projection2(self.hint_blocks(x))[..., 0]
