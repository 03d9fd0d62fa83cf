"""rewas/diffusion.py: one noise schedule, and DDIM and DPM-Solver++ written on it. diffusers is the reference."""

import pytest
import torch

from rewas.config import DiffusionConfig
from rewas.diffusion import DDIM, DPMSolverPP, NoiseSchedule, classifier_free_guidance, make_sampler, sample


def _ddim_reference(cfg: DiffusionConfig):
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_start=cfg.beta_start,
        beta_end=cfg.beta_end,
        beta_schedule=cfg.beta_schedule,
        prediction_type=cfg.prediction,
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        timestep_spacing="leading",
    )


class _Diffusers:
    """A diffusers scheduler behind our sampler interface, for `sample`."""

    init_noise_sigma = 1.0

    def __init__(self, scheduler, takes_noise: bool):
        self.scheduler, self.takes_noise = scheduler, takes_noise

    def set_timesteps(self, steps, device="cpu"):
        self.scheduler.set_timesteps(steps, device=device)
        self.timesteps = self.scheduler.timesteps

    def step(self, out, t, x, eta=1.0, generator=None):
        extra = dict(eta=eta, generator=generator) if self.takes_noise else {}
        return self.scheduler.step(out, t, x, **extra).prev_sample


def test_the_schedule_is_the_releases():
    s = NoiseSchedule(DiffusionConfig())
    betas = s.betas.double()
    assert abs(betas[0] - 0.0015) < 1e-7 and abs(betas[-1] - 0.0195) < 1e-7
    assert abs(float(s.alphas_cumprod[-1]) - 1.423e-4) < 1e-6
    assert torch.equal(s.alphas_cumprod, _ddim_reference(DiffusionConfig()).alphas_cumprod)
    ddim = DDIM(s)
    ddim.set_timesteps(200)
    assert ddim.timesteps.tolist() == list(range(996, 0, -5))
    a = s.alphas_cumprod.double()

    def sigma(t, prev):
        a_t, a_prev = a[t], (a[prev] if prev >= 0 else a[0])  # the release: a_prev(t=1) = alpha_bar[0]
        return float(torch.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)))

    assert abs(sigma(996, 991) - 0.30515) < 5e-5 and abs(sigma(1, -4) - 0.02743) < 5e-5
    assert float(ddim.final_alpha_cumprod) == float(s.alphas_cumprod[0])


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_noising_and_the_training_target(prediction):
    s = NoiseSchedule(DiffusionConfig(prediction=prediction))
    x0, noise, t = torch.randn(3, 8, 4, 4), torch.randn(3, 8, 4, 4), torch.tensor([0, 500, 999])
    a = s.alphas_cumprod[t].view(3, 1, 1, 1)
    x_t = s.add_noise(x0, noise, t)
    torch.testing.assert_close(x_t, a.sqrt() * x0 + (1 - a).sqrt() * noise)
    target = s.target(x0, noise, t)
    if prediction == "epsilon":
        assert target is noise
    else:  # v, and x_0 comes back from (x_t, v) as DDIM recovers it
        torch.testing.assert_close(target, a.sqrt() * noise - (1 - a).sqrt() * x0)
        torch.testing.assert_close(a.sqrt() * x_t - (1 - a).sqrt() * target, x0, atol=1e-5, rtol=1e-5)
    reference = _ddim_reference(DiffusionConfig(prediction=prediction))
    torch.testing.assert_close(x_t, reference.add_noise(x0, noise, t), atol=0, rtol=0)


def test_one_ddim_step_equals_the_formula():
    s = DDIM(NoiseSchedule(DiffusionConfig()))
    s.set_timesteps(200)
    x, eps = torch.randn(1, 8, 4, 4), torch.randn(1, 8, 4, 4)
    a = s.schedule.alphas_cumprod
    out = s.step(eps, torch.tensor(996), x, eta=0.0)
    x0 = (x - (1 - a[996]).sqrt() * eps) / a[996].sqrt()
    torch.testing.assert_close(out, a[991].sqrt() * x0 + (1 - a[991]).sqrt() * eps)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_our_ddim_equals_diffusers_to_the_bit(prediction, eta):
    """The shipped audio must not change by a bit when diffusers is no longer used: whole sampling runs, eta's
    noise included, are equal, not close."""
    cfg = DiffusionConfig(prediction=prediction)

    def denoise(x, t):
        return torch.tanh(0.3 * x + 0.001 * float(t)) + 0.05 * torch.sin(x * float(t) / 500)

    for steps in (1, 3, 25, 200):
        ours = sample(
            denoise,
            DDIM(NoiseSchedule(cfg)),
            (2, 8, 16, 16),
            steps=steps,
            eta=eta,
            generator=torch.Generator().manual_seed(0),
        )
        theirs = sample(
            denoise,
            _Diffusers(_ddim_reference(cfg), True),
            (2, 8, 16, 16),
            steps=steps,
            eta=eta,
            generator=torch.Generator().manual_seed(0),
        )
        assert torch.equal(ours, theirs), f"{steps} steps: max |diff| {float((ours - theirs).abs().max())}"


def test_sampling_is_deterministic_and_has_no_weights():
    calls = []

    def denoise(x, t):
        calls.append(int(t))
        return 0.1 * x

    for name in ("ddim", "dpmsolver++"):
        runs = [
            sample(
                denoise,
                make_sampler(NoiseSchedule(DiffusionConfig()), name),
                (1, 8, 16, 16),
                steps=5,
                generator=torch.Generator().manual_seed(3),
            )
            for _ in range(2)
        ]
        assert torch.equal(*runs) and torch.isfinite(runs[0]).all()
    assert len(calls) == 20


def test_cfg_formula():
    u, c = torch.tensor([1.0]), torch.tensor([3.0])
    assert classifier_free_guidance(u, c, 3.0).item() == 7.0
    assert classifier_free_guidance(u, c, 1.0).item() == 3.0


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_our_dpm_solver_equals_diffusers_step_for_step(prediction):
    from diffusers import DPMSolverMultistepScheduler

    cfg = DiffusionConfig(prediction=prediction)
    ref = DPMSolverMultistepScheduler(
        num_train_timesteps=1000,
        beta_start=cfg.beta_start,
        beta_end=cfg.beta_end,
        beta_schedule="scaled_linear",
        prediction_type=prediction,
        algorithm_type="dpmsolver++",
        solver_order=2,
    )
    torch.testing.assert_close(NoiseSchedule(cfg).alphas_cumprod, ref.alphas_cumprod, rtol=0, atol=0)

    def denoise(x, t):  # an eps model that depends on x and t, so both orders of the solver matter
        return torch.tanh(0.3 * x + 0.001 * float(t)) + 0.05 * torch.sin(x * float(t) / 500)

    for steps in (1, 2, 8, 20, 25):
        ours = DPMSolverPP(NoiseSchedule(cfg))
        ours.set_timesteps(steps)
        ref.set_timesteps(steps)
        assert ours.timesteps.tolist() == ref.timesteps.tolist()
        a = sample(denoise, ours, (2, 8, 16, 16), steps=steps, generator=torch.Generator().manual_seed(0))
        b = sample(
            denoise, _Diffusers(ref, False), (2, 8, 16, 16), steps=steps, generator=torch.Generator().manual_seed(0)
        )
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5, msg=f"{steps} steps")


def test_generation_does_not_import_diffusers():
    import subprocess
    import sys

    code = (
        "import sys, torch; from rewas.diffusion import NoiseSchedule, make_sampler, sample\n"
        "from rewas.config import DiffusionConfig\n"
        "for name in ('ddim', 'dpmsolver++'):\n"
        "    sampler = make_sampler(NoiseSchedule(DiffusionConfig()), name)\n"
        "    sample(lambda x, t: 0.1 * x, sampler, (1, 8, 4, 4), steps=3)\n"
        "import rewas.pipeline, rewas.cli\n"
        "assert 'diffusers' not in sys.modules, 'diffusers imported'"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
