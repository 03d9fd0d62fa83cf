"""⑥ Samplers: DDIM (the release's) and DPM-Solver++ over a plain denoiser function, with classifier-free guidance.

No weights live here. A denoiser maps (x_t (B, C, T, F), t (scalar tensor)) -> eps of the same shape. The
schedulers are diffusers', configured to the training schedule of DESIGN §2 ("scaled linear" betas
0.0015 -> 0.0195 over 1000 steps). DDIM with steps_offset=1 and leading spacing gives the release's timesteps
1, 6, ..., 996 for 200 steps, and uses alpha_bar[0] as the final "previous" alpha, exactly as the release does.
"""

from __future__ import annotations

import inspect
from typing import Callable

import torch

from .config import SamplerConfig

SCHEDULERS = ("ddim", "dpmsolver++")
Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def make_scheduler(cfg: SamplerConfig, name: str | None = None):
    """A fresh diffusers scheduler for `name` (default: the config's)."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    name = name or cfg.scheduler
    common = dict(
        num_train_timesteps=cfg.num_train_timesteps, beta_start=cfg.beta_start, beta_end=cfg.beta_end,
        beta_schedule=cfg.beta_schedule, prediction_type="epsilon",
    )
    if name == "ddim":
        return DDIMScheduler(**common, clip_sample=False, set_alpha_to_one=False, steps_offset=1, timestep_spacing="leading")
    if name == "dpmsolver++":
        return DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++", solver_order=2)
    raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")


def classifier_free_guidance(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, scale: float) -> torch.Tensor:
    """eps = eps_u + s * (eps_c - eps_u)."""
    return eps_uncond + scale * (eps_cond - eps_uncond)


def randn(shape, generator: torch.Generator | None, device, dtype=torch.float32) -> torch.Tensor:
    """Noise drawn on the generator's device, then moved: the same seed gives the same noise on any device."""
    gen_device = generator.device if generator is not None else torch.device("cpu")
    return torch.randn(shape, generator=generator, device=gen_device, dtype=torch.float32).to(device=device, dtype=dtype)


@torch.no_grad()
def sample(
    denoise: Denoiser,
    scheduler,
    shape: tuple[int, ...],
    *,
    steps: int,
    generator: torch.Generator | None = None,
    eta: float = 1.0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    callback: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Run the reverse process from pure noise; returns x_0 of `shape` (float32)."""
    scheduler.set_timesteps(steps, device=device)
    x = randn(shape, generator, device) * scheduler.init_noise_sigma
    accepts = inspect.signature(scheduler.step).parameters
    extra = {k: v for k, v in (("eta", eta), ("generator", generator)) if k in accepts}
    timesteps = scheduler.timesteps
    for i, t in enumerate(timesteps):
        model_in = scheduler.scale_model_input(x, t).to(dtype)
        eps = denoise(model_in, t).float()
        x = scheduler.step(eps, t, x, **extra).prev_sample
        if callback is not None:
            callback(i + 1, len(timesteps))
    return x
