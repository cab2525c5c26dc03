"""methods.common: schedule conversions, and DDIM / DPM-Solver++(2M) against diffusers' schedulers."""
import pytest
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

from harness.worlds.tiny_sd15.models import SD15_SCHEDULER_CONFIG
from methods.common import schedule as sch
from methods.common.solvers import sample, trailing_timesteps

SCHEDULE = sch.NoiseSchedule.from_config(SD15_SCHEDULER_CONFIG)


def toy_x0(x, t):
    """A smooth, deterministic stand-in for a network's x0 prediction."""
    return torch.tanh(0.7 * x + 0.001 * t.view(-1, 1, 1, 1).float())


def test_conversions_round_trip():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(4, 3, 8, 8, generator=g), torch.randn(4, 3, 8, 8, generator=g)
    t = torch.tensor([0, 10, 500, 999])
    alpha, sigma = SCHEDULE.alpha_sigma(t, x0)
    x_t = SCHEDULE.add_noise(x0, eps, t)
    torch.testing.assert_close(sch.eps_to_x0(x_t, eps, alpha, sigma), x0, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(sch.x0_to_eps(x_t, x0, alpha, sigma), eps, rtol=1e-4, atol=1e-4)
    v = sch.to_v(x0, eps, alpha, sigma)
    torch.testing.assert_close(sch.v_to_x0(x_t, v, alpha, sigma), x0, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(sch.v_to_eps(x_t, v, alpha, sigma), eps, rtol=1e-4, atol=1e-4)


def test_trailing_timesteps_match_the_paper_and_diffusers():
    assert trailing_timesteps(4) == [999, 749, 499, 249]
    assert trailing_timesteps(1) == [999]
    s = DDIMScheduler.from_config(SD15_SCHEDULER_CONFIG, timestep_spacing="trailing")
    for k in (1, 2, 4, 8, 25):
        s.set_timesteps(k)
        assert trailing_timesteps(k) == s.timesteps.tolist()


def _diffusers_sample(scheduler, x, steps):
    scheduler.set_timesteps(steps)
    for t in scheduler.timesteps:
        x0 = toy_x0(x, t.repeat(len(x)))
        alpha, sigma = SCHEDULE.alpha_sigma(t.repeat(len(x)), x)
        eps = sch.x0_to_eps(x, x0, alpha, sigma)
        x = scheduler.step(eps, t, x).prev_sample
    return x


@pytest.mark.parametrize("steps", [1, 2, 4, 8])
@pytest.mark.parametrize("solver", ["ddim", "dpmpp"])
def test_solvers_match_diffusers(solver, steps):
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    if solver == "ddim":
        # set_alpha_to_one: end at the clean sample, as ours does (SD-1.5's own config stops
        # at alphas_cumprod[0], a sigma of 0.03)
        ref = DDIMScheduler.from_config(SD15_SCHEDULER_CONFIG, timestep_spacing="trailing", set_alpha_to_one=True)
    else:
        ref = DPMSolverMultistepScheduler.from_config(SD15_SCHEDULER_CONFIG, algorithm_type="dpmsolver++",
                                                      solver_order=2, timestep_spacing="trailing")
    expected = _diffusers_sample(ref, x.clone(), steps)
    ours = sample(SCHEDULE, toy_x0, x.clone(), trailing_timesteps(steps), solver)
    torch.testing.assert_close(ours, expected.to(ours.dtype), rtol=1e-5, atol=1e-5)
