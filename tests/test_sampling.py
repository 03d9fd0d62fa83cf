import pytest
import torch

from rewas.config import SamplerConfig
from rewas.sampling import classifier_free_guidance, make_scheduler, sample


def test_ddim_schedule_matches_the_release():
    s = make_scheduler(SamplerConfig())
    betas = s.betas.double()
    assert abs(betas[0] - 0.0015) < 1e-7 and abs(betas[-1] - 0.0195) < 1e-7
    assert abs(float(s.alphas_cumprod[-1]) - 1.423e-4) < 1e-6
    s.set_timesteps(200)
    assert s.timesteps.tolist() == list(range(996, 0, -5))
    a = s.alphas_cumprod.double()

    def sigma(t, prev):
        a_t, a_prev = a[t], (a[prev] if prev >= 0 else a[0])  # the release: a_prev(t=1) = alpha_bar[0]
        return float(torch.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)))

    assert abs(sigma(996, 991) - 0.30515) < 5e-5 and abs(sigma(1, -4) - 0.02743) < 5e-5
    assert abs(float(s.final_alpha_cumprod) - float(a[0])) < 1e-7


def test_one_ddim_step_equals_the_formula():
    s = make_scheduler(SamplerConfig())
    s.set_timesteps(200)
    x, eps = torch.randn(1, 8, 4, 4), torch.randn(1, 8, 4, 4)
    a = s.alphas_cumprod
    out = s.step(eps, 996, x, eta=0.0).prev_sample
    x0 = (x - (1 - a[996]).sqrt() * eps) / a[996].sqrt()
    torch.testing.assert_close(out, a[991].sqrt() * x0 + (1 - a[991]).sqrt() * eps)


def test_sampling_is_deterministic_and_has_no_weights():
    calls = []

    def denoise(x, t):
        calls.append(int(t))
        return 0.1 * x

    for name in ("ddim", "dpmsolver++"):
        runs = [sample(denoise, make_scheduler(SamplerConfig(), name), (1, 8, 16, 16), steps=5,
                       generator=torch.Generator().manual_seed(3)) for _ in range(2)]
        assert torch.equal(*runs) and torch.isfinite(runs[0]).all()
    assert len(calls) == 20


def test_cfg_formula():
    u, c = torch.tensor([1.0]), torch.tensor([3.0])
    assert classifier_free_guidance(u, c, 3.0).item() == 7.0
    assert classifier_free_guidance(u, c, 1.0).item() == 3.0


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_our_dpm_solver_equals_diffusers_step_for_step(prediction):
    from diffusers import DPMSolverMultistepScheduler

    cfg = SamplerConfig(prediction=prediction)
    ref = DPMSolverMultistepScheduler(num_train_timesteps=1000, beta_start=cfg.beta_start, beta_end=cfg.beta_end,
                                      beta_schedule="scaled_linear", prediction_type=prediction,
                                      algorithm_type="dpmsolver++", solver_order=2)
    torch.testing.assert_close(make_scheduler(cfg, "dpmsolver++").alphas_cumprod, ref.alphas_cumprod, rtol=0, atol=0)

    def denoise(x, t):  # an eps model that depends on x and t, so both orders of the solver matter
        return torch.tanh(0.3 * x + 0.001 * float(t)) + 0.05 * torch.sin(x * float(t) / 500)

    for steps in (1, 2, 8, 20, 25):
        ours = make_scheduler(cfg, "dpmsolver++")
        ours.set_timesteps(steps)
        ref.set_timesteps(steps)
        assert ours.timesteps.tolist() == ref.timesteps.tolist()
        a = sample(denoise, ours, (2, 8, 16, 16), steps=steps, generator=torch.Generator().manual_seed(0))
        b = sample(denoise, ref, (2, 8, 16, 16), steps=steps, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5, msg=f"{steps} steps")


def test_the_default_sampler_does_not_import_diffusers():
    import subprocess
    import sys

    code = ("import sys, torch; from rewas.sampling import make_scheduler, sample; from rewas.config import SamplerConfig\n"
            "sample(lambda x, t: 0.1 * x, make_scheduler(SamplerConfig(), 'dpmsolver++'), (1, 8, 4, 4), steps=3)\n"
            "import rewas.pipeline, rewas.cli\n"
            "assert 'diffusers' not in sys.modules, 'diffusers imported'")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).returncode == 0
