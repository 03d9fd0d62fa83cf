"""⑤ Energy adapter: a ControlNet-style trainable copy of the UNet encoder that turns an energy latent into residuals.

Data flow (paper shapes): energy (B, 512) -> repeated over 64 mel bins -> VAE encode * scale_factor ->
hint latent (B, 8, 128, 16) -> Linear(16, 16) over the latent frequency axis -> SiLU -> zero 3x3 conv 8->192,
added after the first input block. The copied input blocks + middle block then give 13 residuals through
zero-initialised 1x1 convs (one per UNet skip, then the middle), which `UNet.forward(control=...)` adds.
With its zero initialisation the adapter's residuals are exactly zero, so the UNet output is unchanged.
Parameter names follow the released `control_model.*` keys. Unlike the release, any latent length works.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .config import UNetConfig
from .unet import build_encoder, condition_embedding, make_condition_layers, zero_module


class EnergyAdapter(nn.Module):
    def __init__(self, cfg: UNetConfig, latent_freq: int):
        super().__init__()
        self.config = cfg
        self.time_embed, self.film_emb = make_condition_layers(cfg)
        self.input_blocks, self.middle_block, skips = build_encoder(cfg)
        self.zero_convs = nn.ModuleList(nn.Sequential(zero_module(nn.Conv2d(ch, ch, 1))) for ch in skips)
        mid = skips[-1]
        self.middle_block_out = nn.Sequential(zero_module(nn.Conv2d(mid, mid, 1)))
        # Indices 0 and 3 are the release's parameter-free reshapes; keeping them keeps its key names (1 and 4).
        self.input_hint_block = nn.Sequential(
            nn.Identity(),
            nn.Linear(latent_freq, latent_freq),  # over the latent frequency axis (the last one)
            nn.SiLU(),
            nn.Identity(),
            zero_module(nn.Conv2d(cfg.in_channels, cfg.model_channels, 3, padding=1)),
        )

    @property
    def dtype(self) -> torch.dtype:
        return self.middle_block_out[0].weight.dtype

    def forward(self, x: torch.Tensor, hint: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> list[torch.Tensor]:
        """x (B, C, T, F) noisy latent, hint (B, C, T, F) energy latent, t (B,), text (B, film_dim) -> 13 residuals."""
        emb = condition_embedding(self, t, text, self.dtype)
        guided_hint = self.input_hint_block(hint.to(self.dtype))
        h = x.to(self.dtype)
        outs = []
        for i, (block, zero_conv) in enumerate(zip(self.input_blocks, self.zero_convs)):
            h = block(h, emb)
            if i == 0:
                h = h + guided_hint
            outs.append(zero_conv(h))
        h = self.middle_block(h, emb)
        outs.append(self.middle_block_out(h))
        return outs

    @classmethod
    def from_unet(cls, unet: nn.Module, latent_freq: int) -> EnergyAdapter:
        """An adapter initialised from the UNet's encoder (ControlNet init); the zero convs stay zero."""
        adapter = cls(unet.config, latent_freq).to(device=next(unet.parameters()).device, dtype=unet.dtype)
        own = adapter.state_dict()
        shared = {k: v for k, v in unet.state_dict().items() if k in own}
        adapter.load_state_dict(shared, strict=False)
        return adapter
