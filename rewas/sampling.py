"""⑥ Samplers: DDIM (the release's) and DPM-Solver++ over a plain denoiser function, with classifier-free guidance.

No weights live here. A denoiser maps (x_t (B, C, T, F), t (scalar tensor)) -> eps of the same shape. Both follow
the training schedule of DESIGN §2 ("scaled linear" betas 0.0015 -> 0.0195 over 1000 steps).

* DDIM is diffusers' `DDIMScheduler`: steps_offset=1 and leading spacing give the release's timesteps
  1, 6, ..., 996 for 200 steps, and alpha_bar[0] is the final "previous" alpha, exactly as the release does.
* DPM-Solver++ (2M, midpoint, first order on the last step) is our own `DPMSolverPP`, equal to diffusers'
  `DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2)` step for step (tested). It exists
  because importing diffusers costs about 3 s, which is most of the small default model's CPU budget.
"""

from __future__ import annotations

import inspect
from typing import Callable

import torch

from .config import SamplerConfig
from .errors import UserError

SCHEDULERS = ("ddim", "dpmsolver++")
Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def alphas_cumprod(cfg: SamplerConfig) -> torch.Tensor:
    """alpha_bar_t, t = 0 .. T-1, of the training schedule (float32, as diffusers computes it)."""
    if cfg.beta_schedule != "scaled_linear":
        raise UserError(f"unsupported beta schedule {cfg.beta_schedule!r}")
    betas = torch.linspace(cfg.beta_start**0.5, cfg.beta_end**0.5, cfg.num_train_timesteps, dtype=torch.float32) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def make_scheduler(cfg: SamplerConfig, name: str | None = None):
    """A fresh scheduler for `name` (default: the config's)."""
    name = name or cfg.scheduler
    if name == "ddim":
        from diffusers import DDIMScheduler

        return DDIMScheduler(num_train_timesteps=cfg.num_train_timesteps, beta_start=cfg.beta_start, beta_end=cfg.beta_end,
                             beta_schedule=cfg.beta_schedule, prediction_type=cfg.prediction, clip_sample=False,
                             set_alpha_to_one=False, steps_offset=1, timestep_spacing="leading")
    if name == "dpmsolver++":
        return DPMSolverPP(alphas_cumprod(cfg), cfg.prediction)
    raise UserError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")


class DPMSolverPP:
    """Multistep DPM-Solver++ (Lu et al. 2022), second order, for epsilon or v prediction, with a scheduler's interface.

    Timesteps are spaced evenly over [0, T-1] ("linspace"); sigma_t = sqrt((1 - alpha_bar) / alpha_bar) is
    interpolated at them, and the last step goes to sigma = 0 with a first-order update, returning the x_0 estimate.
    """

    init_noise_sigma = 1.0

    def __init__(self, alphas_cumprod: torch.Tensor, prediction: str = "epsilon"):
        if prediction not in ("epsilon", "v_prediction"):
            raise UserError(f"unknown prediction type {prediction!r}")
        self.alphas_cumprod, self.prediction = alphas_cumprod, prediction
        self.timesteps = torch.zeros(0, dtype=torch.long)

    def set_timesteps(self, steps: int, device: torch.device | str = "cpu") -> None:
        import numpy as np

        n = len(self.alphas_cumprod)
        self.timesteps = torch.from_numpy(np.linspace(0, n - 1, steps + 1).round()[::-1][:-1].copy().astype(np.int64)).to(device)
        all_sigmas = ((1 - self.alphas_cumprod) / self.alphas_cumprod).double().sqrt().numpy()
        sigmas = np.interp(self.timesteps.cpu().numpy(), np.arange(n), all_sigmas)
        self.sigmas = torch.from_numpy(np.concatenate([sigmas, [0.0]]).astype(np.float32))
        self._index, self._previous = 0, None

    def scale_model_input(self, x: torch.Tensor, t) -> torch.Tensor:
        return x

    @staticmethod
    def _alpha_sigma(sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        alpha = 1.0 / (sigma**2 + 1).sqrt()
        return alpha, sigma * alpha

    def step(self, out: torch.Tensor, t, x: torch.Tensor):
        i = self._index
        x, out = x.float(), out.float()
        alpha_s, sigma_s = self._alpha_sigma(self.sigmas[i])
        alpha_t, sigma_t = self._alpha_sigma(self.sigmas[i + 1])
        x0 = alpha_s * x - sigma_s * out if self.prediction == "v_prediction" else (x - sigma_s * out) / alpha_s  # data prediction
        lam = lambda a, s: torch.log(a) - torch.log(s)  # noqa: E731  (log-SNR / 2; +inf at sigma = 0)
        h = lam(alpha_t, sigma_t) - lam(alpha_s, sigma_s)
        last = i == len(self.timesteps) - 1
        update = x0
        if self._previous is not None and not last:  # second order: midpoint correction from the previous x_0
            alpha_p, sigma_p = self._alpha_sigma(self.sigmas[i - 1])
            r = (lam(alpha_s, sigma_s) - lam(alpha_p, sigma_p)) / h
            update = x0 + 0.5 * (x0 - self._previous) / r
        prev = (sigma_t / sigma_s) * x - alpha_t * torch.expm1(-h) * update
        self._previous, self._index = x0, i + 1
        return _Step(prev)


class _Step:
    def __init__(self, prev_sample: torch.Tensor):
        self.prev_sample = prev_sample


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
