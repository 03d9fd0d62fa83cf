"""⑥ The diffusion process: one noise schedule, used by training and by both samplers.

`NoiseSchedule` owns the trained process (DiffusionConfig: the betas and what the model predicts): alpha_bar_t,
noising x_0 to x_t, the training target (epsilon or v), and x_0 / epsilon recovered from a model output. The
samplers are written on it:

* `DDIM`, the release's sampler: "leading" timesteps with offset 1 (1, 6, ..., 996 for 200 steps), alpha_bar[0]
  as the last "previous" alpha, eta-scaled noise. It computes what diffusers' DDIMScheduler computes, operation
  for operation, so the audio is the same to the bit (tests/test_diffusers_parity.py keeps diffusers as the
  reference).
* `DPMSolverPP`, multistep DPM-Solver++ (Lu et al. 2022), second order with a first-order last step to
  sigma = 0; equal to diffusers' DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2).

Importing diffusers costs about 3 s, most of the small default model's CPU budget, so neither sampler uses it.
A denoiser maps (x_t (B, C, T, F), t (0-d tensor)) -> the model output (epsilon or v) of x_t's shape.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .config import DiffusionConfig
from .errors import UserError

SAMPLERS = ("ddim", "dpmsolver++")
Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class NoiseSchedule:
    """The forward process q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I), t = 0 .. T-1."""

    def __init__(self, cfg: DiffusionConfig):
        if cfg.beta_schedule != "scaled_linear":
            raise UserError(f"unsupported beta schedule {cfg.beta_schedule!r} (supported: scaled_linear)")
        if cfg.prediction not in ("epsilon", "v_prediction"):
            raise UserError(f"unknown prediction type {cfg.prediction!r} (epsilon or v_prediction)")
        self.config = cfg
        self.prediction = cfg.prediction
        # float32 and in this order, as the release (and diffusers) computes it: "scaled linear" is linear in sqrt(beta)
        self.betas = (
            torch.linspace(cfg.beta_start**0.5, cfg.beta_end**0.5, cfg.num_train_timesteps, dtype=torch.float32) ** 2
        )
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, dim=0)

    def __len__(self) -> int:
        return len(self.alphas_cumprod)

    def _alpha_bar(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """alpha_bar at integer timesteps t (B,), shaped to broadcast over a batch like `like`."""
        return self.alphas_cumprod.to(like.device)[t].view(-1, *([1] * (like.dim() - 1)))

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(alpha_bar) x_0 + sqrt(1 - alpha_bar) noise, for a batch of timesteps t (B,)."""
        a = self._alpha_bar(t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the model is trained to predict: the noise, or v = sqrt(alpha_bar) noise - sqrt(1 - alpha_bar) x_0
        (Salimans & Ho 2022)."""
        if self.prediction == "epsilon":
            return noise
        a = self._alpha_bar(t, x0)
        return a.sqrt() * noise - (1 - a).sqrt() * x0


class DDIM:
    """DDIM (Song et al. 2021) with the release's settings. `step` returns x at the previous timestep."""

    init_noise_sigma = 1.0

    def __init__(self, schedule: NoiseSchedule, steps_offset: int = 1):
        self.schedule, self.steps_offset = schedule, steps_offset
        self.final_alpha_cumprod = schedule.alphas_cumprod[0]  # the release does not set it to one
        self.timesteps = torch.zeros(0, dtype=torch.long)
        self.steps = 0

    def set_timesteps(self, steps: int, device: torch.device | str = "cpu") -> None:
        """ "Leading" spacing: t_i = i * (T // steps) + offset, descending."""
        ratio = len(self.schedule) // steps
        timesteps = (np.arange(0, steps) * ratio).round()[::-1].copy().astype(np.int64) + self.steps_offset
        self.timesteps, self.steps = torch.from_numpy(timesteps).to(device), steps

    def step(
        self,
        out: torch.Tensor,
        t: torch.Tensor,
        x: torch.Tensor,
        *,
        eta: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        # every operation below is diffusers' DDIMScheduler.step's, in its order and dtypes, so results are bit-equal
        a = self.schedule.alphas_cumprod
        prev_t = t - len(self.schedule) // self.steps
        alpha_t = a[t]
        alpha_prev = a[prev_t] if prev_t >= 0 else self.final_alpha_cumprod
        beta_t = 1 - alpha_t
        if self.schedule.prediction == "epsilon":
            x0 = (x - beta_t ** (0.5) * out) / alpha_t ** (0.5)
            eps = out
        else:
            x0 = (alpha_t**0.5) * x - (beta_t**0.5) * out
            eps = (alpha_t**0.5) * out + (beta_t**0.5) * x
        variance = ((1 - alpha_prev) / beta_t) * (1 - alpha_t / alpha_prev)
        std = eta * variance ** (0.5)
        prev = alpha_prev ** (0.5) * x0 + (1 - alpha_prev - std**2) ** (0.5) * eps
        if eta > 0:
            prev = prev + std * randn(out.shape, generator, out.device, out.dtype)
        return prev


class DPMSolverPP:
    """Multistep DPM-Solver++, second order (midpoint), for epsilon or v prediction.

    Timesteps are spaced evenly over [0, T-1] ("linspace"); sigma_t = sqrt((1 - alpha_bar) / alpha_bar) is
    interpolated at them, and the last step goes to sigma = 0 with a first-order update, returning the x_0 estimate.
    """

    init_noise_sigma = 1.0

    def __init__(self, schedule: NoiseSchedule):
        self.schedule = schedule
        self.timesteps = torch.zeros(0, dtype=torch.long)

    def set_timesteps(self, steps: int, device: torch.device | str = "cpu") -> None:
        n = len(self.schedule)
        self.timesteps = torch.from_numpy(
            np.linspace(0, n - 1, steps + 1).round()[::-1][:-1].copy().astype(np.int64)
        ).to(device)
        alphas_cumprod = self.schedule.alphas_cumprod
        all_sigmas = ((1 - alphas_cumprod) / alphas_cumprod).double().sqrt().numpy()
        sigmas = np.interp(self.timesteps.cpu().numpy(), np.arange(n), all_sigmas)
        self.sigmas = torch.from_numpy(np.concatenate([sigmas, [0.0]]).astype(np.float32))
        self._index, self._previous = 0, None

    @staticmethod
    def _alpha_sigma(sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        alpha = 1.0 / (sigma**2 + 1).sqrt()
        return alpha, sigma * alpha

    def step(self, out: torch.Tensor, t: torch.Tensor, x: torch.Tensor, **unused) -> torch.Tensor:
        i = self._index
        x, out = x.float(), out.float()
        alpha_s, sigma_s = self._alpha_sigma(self.sigmas[i])
        alpha_t, sigma_t = self._alpha_sigma(self.sigmas[i + 1])
        # data prediction; sigma here is the sampler's (1 - alpha_bar) / alpha_bar parametrisation, not alpha_bar's
        x0 = (
            alpha_s * x - sigma_s * out if self.schedule.prediction == "v_prediction" else (x - sigma_s * out) / alpha_s
        )
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
        return prev


def make_sampler(schedule: NoiseSchedule, name: str) -> DDIM | DPMSolverPP:
    if name == "ddim":
        return DDIM(schedule)
    if name == "dpmsolver++":
        return DPMSolverPP(schedule)
    raise UserError(f"unknown scheduler {name!r}; choose one of {', '.join(SAMPLERS)}")


def classifier_free_guidance(out_uncond: torch.Tensor, out_cond: torch.Tensor, scale: float) -> torch.Tensor:
    """out = out_u + s * (out_c - out_u)."""
    return out_uncond + scale * (out_cond - out_uncond)


def randn(shape, generator: torch.Generator | None, device, dtype=torch.float32) -> torch.Tensor:
    """Noise drawn on the generator's device, then moved: the same seed gives the same noise on any device."""
    gen_device = generator.device if generator is not None else torch.device("cpu")
    return torch.randn(shape, generator=generator, device=gen_device, dtype=dtype).to(device=device)


@torch.no_grad()
def sample(
    denoise: Denoiser,
    sampler: DDIM | DPMSolverPP,
    shape: tuple[int, ...],
    *,
    steps: int,
    generator: torch.Generator | None = None,
    eta: float = 1.0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    callback: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Run the reverse process from pure noise; returns x_0 of `shape` (float32). The model runs in `dtype`, the
    sampler's arithmetic in float32."""
    sampler.set_timesteps(steps, device=device)
    x = randn(shape, generator, device) * sampler.init_noise_sigma
    timesteps = sampler.timesteps
    for i, t in enumerate(timesteps):
        out = denoise(x.to(dtype), t).float()
        x = sampler.step(out, t, x, eta=eta, generator=generator)
        if callback is not None:
            callback(i + 1, len(timesteps))
    return x
