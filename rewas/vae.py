"""⑤ Mel VAE (latent <-> log-mel), AudioLDM's AutoencoderKL with the released parameter names.

Shapes (paper): mel (B, 1, T=512, n_mels=64) <-> latent (B, 8, T/4=128, 16). `scale_factor` (1/std of the
latents, a buffer loaded from the checkpoint) scales latents the diffusion model sees: z_model = scale * z.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import VAEConfig
from .layers import Upsample


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels), channels, eps=1e-6)  # 32 groups (one per channel when narrower)


class VAEResBlock(nn.Module):
    def __init__(self, channels: int, out_channels: int):
        super().__init__()
        self.norm1 = _norm(channels)
        self.conv1 = nn.Conv2d(channels, out_channels, 3, padding=1)
        self.norm2 = _norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if channels != out_channels:
            self.nin_shortcut = nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all positions, 1x1-conv projections."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = _norm(channels)
        self.q, self.k, self.v = (nn.Conv2d(channels, channels, 1) for _ in range(3))
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.norm(x)
        q, k, v = (proj(y).flatten(2).transpose(1, 2)[:, None] for proj in (self.q, self.k, self.v))  # (B, 1, HW, C)
        out = F.scaled_dot_product_attention(q, k, v)[:, 0].transpose(1, 2).reshape(b, c, h, w)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Mid(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.block_1 = VAEResBlock(channels, channels)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = VAEResBlock(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Level(nn.Module):
    """One resolution of the encoder (`down.i`) or decoder (`up.i`): res blocks, then optional resampling."""

    def __init__(self, blocks: list[nn.Module], resample: nn.Module | None, name: str):
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self.attn = nn.ModuleList()  # AudioLDM uses no attention inside levels (attn_resolutions = [])
        if resample is not None:
            self.add_module(name, resample)
        self.resample_name = name if resample is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block:
            x = block(x)
        return getattr(self, self.resample_name)(x) if self.resample_name else x


class Encoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        chans = [cfg.ch * m for m in (1, *cfg.ch_mult)]
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.ch, 3, padding=1)
        self.down = nn.ModuleList()
        last = len(cfg.ch_mult) - 1
        for i in range(len(cfg.ch_mult)):
            c_in, c_out = chans[i], chans[i + 1]
            blocks = [VAEResBlock(c_in if j == 0 else c_out, c_out) for j in range(cfg.num_res_blocks)]
            self.down.append(Level(blocks, Downsample(c_out) if i != last else None, "downsample"))
        self.mid = Mid(chans[-1])
        self.norm_out = _norm(chans[-1])
        self.conv_out = nn.Conv2d(chans[-1], 2 * cfg.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(self.mid(h))))


class Decoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        chans = [cfg.ch * m for m in cfg.ch_mult]
        self.conv_in = nn.Conv2d(cfg.z_channels, chans[-1], 3, padding=1)
        self.mid = Mid(chans[-1])
        levels = []
        c_in = chans[-1]
        for i in reversed(range(len(cfg.ch_mult))):
            blocks = [VAEResBlock(c_in if j == 0 else chans[i], chans[i]) for j in range(cfg.num_res_blocks + 1)]
            levels.append(Level(blocks, Upsample(chans[i]) if i != 0 else None, "upsample"))
            c_in = chans[i]
        self.up = nn.ModuleList(reversed(levels))  # up.0 is the highest resolution, as in the release
        self.norm_out = _norm(chans[0])
        self.conv_out = nn.Conv2d(chans[0], cfg.in_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VAE(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quant_conv = nn.Conv2d(2 * cfg.z_channels, 2 * cfg.z_channels, 1)
        self.post_quant_conv = nn.Conv2d(cfg.z_channels, cfg.z_channels, 1)
        self.register_buffer("scale_factor", torch.tensor(1.0))

    def moments(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mel (B, 1, T, n_mels) -> unscaled posterior (mean, logvar), each (B, z, T/d, n_mels/d)."""
        mean, logvar = self.quant_conv(self.encoder(mel)).chunk(2, dim=1)
        return mean, logvar

    def encode(self, mel: torch.Tensor, generator: torch.Generator | None = None, sample: bool = True) -> torch.Tensor:
        """mel (B, 1, T, n_mels) -> scaled latent (B, z, T/d, n_mels/d): a posterior sample (as the release) or its
        mean."""
        mean, logvar = self.moments(mel)
        z = mean
        if sample:
            std = torch.exp(0.5 * logvar.clamp(-30.0, 20.0))
            noise = torch.randn(mean.shape, generator=generator, device=generator.device if generator else mean.device)
            z = mean + std * noise.to(device=mean.device, dtype=mean.dtype)
        return z * self.scale_factor

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """scaled latent (B, z, T', F') -> log-mel (B, 1, T' * d, F' * d)."""
        return self.decoder(self.post_quant_conv(z / self.scale_factor))


def repair_overshoot(
    mel: torch.Tensor, ceiling: torch.Tensor, floor: float, reach: tuple[int, int] = (4, 1), span: int = 50
) -> torch.Tensor:
    """(B, 1, T, n_mels) decoded log-mel -> the same with the decoder's overshoots repaired; (n_mels,) `ceiling`.

    A small VAE's decoder, given a latent unlike its training data, can return a band tens of nats above anything
    it was trained on (+16.5 nats over a 20 s engine, measured): a burst that the vocoder can only render as a
    click at many times full scale. Values above the band's ceiling are such overshoots; they and their
    neighbourhood (`reach`: +-4 frames, +-1 band) are brought down to the band's median over the `span` frames
    on each side, the overshoot left out (the sound the band holds around it; at the clip's ends, the frames on
    the one side there is; the ceiling where the whole span overshoots), and nothing stays above the ceiling. A mel
    with no value above its ceiling comes back unchanged (only floored), bit for bit."""
    mel = mel.clamp(min=floor)
    ceiling = ceiling.to(mel.device, mel.dtype)
    over = mel > ceiling
    if not bool(over.any()):
        return mel
    frames, bands = reach
    near = F.max_pool2d(over.float(), (2 * frames + 1, 2 * bands + 1), 1, (frames, bands)) > 0
    sound = torch.where(near, torch.full_like(mel, float("nan")), mel).transpose(2, 3)  # (B, 1, n_mels, T)
    padded = F.pad(sound, (span, span), value=float("nan"))
    around = padded.unfold(-1, 2 * span + 1, 1).nanmedian(dim=-1).values.transpose(2, 3)
    around = torch.where(torch.isnan(around), ceiling.expand_as(around), around)
    return torch.minimum(torch.where(near, torch.minimum(mel, around), mel), ceiling)
