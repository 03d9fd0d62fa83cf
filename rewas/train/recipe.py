"""A training run's settings (`rewas train --steps ... --lr ...`), apart from the trainer so that the command line
states their defaults in its help without importing torch."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 100_000
    batch_size: int = 8
    lr: float = 1e-5
    warmup: int = 2000
    weight_decay: float = 0.01
    grad_accum: int = 1
    mixed_precision: str = "no"  # "no", "fp16", "bf16"
    text_dropout: float = 0.3
    checkpoint_every: int = 1000
    log_every: int = 50
    seed: int = 0
    num_workers: int = 0
    crop_frames: int = 0  # >0: train on random crops of this many mel frames (convolutional parts; 0 = whole window)
    vocoder_input: str = (
        "mel"  # vocoder: "mel" (the true log-mel) or "vae" (the model's VAE decoding of the cached latents)
    )
    lr_schedule: str = "constant"  # after the warm-up: "constant", or "cosine" (down to 0 at `steps`)
    ema_decay: float = 0.0  # >0: keep an exponential moving average of the weights and save it as the model
    envelope_augment: float = 0.0  # adapter, UNet: the share of clips heard under a random gain envelope (augment.py)
    envelope_db: float = 12.0  # the envelopes' largest swing, +-dB
    # phi: "tokens" (MSE to each token's energy, the paper) or "curve" (L1 between the curve the pipeline builds from
    # the tokens and the adapter's control target: the error the control ratio measures)
    phi_target: str = "tokens"

    def __post_init__(self):
        if self.lr_schedule not in ("constant", "cosine"):
            raise UserError(f"lr_schedule must be 'constant' or 'cosine', not {self.lr_schedule!r}")
        if not 0.0 <= self.envelope_augment <= 1.0:
            raise UserError(f"envelope_augment is a share of clips, 0 to 1, not {self.envelope_augment}")
        if not 0.0 < self.envelope_db <= 40.0:
            raise UserError(f"envelope_db must be in (0, 40] dB, not {self.envelope_db}")
        if self.phi_target not in ("tokens", "curve"):
            raise UserError(f"phi_target must be 'tokens' or 'curve', not {self.phi_target!r}")
