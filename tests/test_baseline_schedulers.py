"""PeRFlow's and InstaFlow's samplers (baselines/schedulers.py): closed-form steps against straight-line
flows built here from the DDPM schedule, the stock SD / SDXL pipelines running them, config round trips."""
import json
import math
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler, PNDMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

from baselines.schedulers import PeRFlowScheduler, RectifiedFlowEulerScheduler
from harness.worlds.tiny_sd15.judge import PIPELINE

pytestmark = pytest.mark.usefixtures("one_thread")

SD15_SCHEDULER = json.loads((PIPELINE / "scheduler" / "scheduler_config.json").read_text())  # SD-1.5's PNDM config


def sd15_config():
    return PNDMScheduler.from_config(SD15_SCHEDULER).config


# ---------------------------------------------------------------------------- InstaFlow


@pytest.mark.parametrize("n, expected", [(1, [1000.0]), (2, [1000.0, 500.0]), (3, [1000.0, 2000 / 3, 1000 / 3]),
                                         (4, [1000.0, 750.0, 500.0, 250.0])])
def test_instaflow_timesteps_are_one_minus_i_over_n_times_1000(n, expected):
    s = RectifiedFlowEulerScheduler()
    s.set_timesteps(n)
    assert s.timesteps.dtype == torch.float32 and s.timesteps.tolist() == pytest.approx(expected, abs=1e-4)
    assert (s.order, s.init_noise_sigma, len(s)) == (1, 1.0, 1000)


def test_instaflow_one_step_with_a_constant_velocity_is_x_plus_v():
    x, v = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)).unbind(0)
    s = RectifiedFlowEulerScheduler()
    s.set_timesteps(1)
    assert torch.equal(s.step(v, s.timesteps[0], x).prev_sample, x + v)
    assert torch.equal(s.scale_model_input(x, s.timesteps[0]), x)


@pytest.mark.parametrize("n", [2, 3, 5])
def test_instaflow_n_steps_add_each_velocity_times_one_over_n(n):
    g = torch.Generator().manual_seed(1)
    x0, c = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    s = RectifiedFlowEulerScheduler()
    s.set_timesteps(n)
    x = x0
    for i, t in enumerate(s.timesteps):
        x = s.step((i + 1) * c, t, x, return_dict=False)[0]  # a velocity that changes from step to step
        assert torch.allclose(x, x0 + sum(range(1, i + 2)) / n * c, atol=1e-5)
    x = x0  # a constant velocity still takes the noise exactly to x + v
    for t in s.timesteps:
        x = s.step(c, t, x).prev_sample
    assert torch.allclose(x, x0 + c, atol=1e-6)


def test_instaflow_explicit_timesteps_step_by_their_gaps():
    x0, v = torch.zeros(3), torch.tensor([1.0, -2.0, 4.0])
    s = RectifiedFlowEulerScheduler()
    s.set_timesteps(timesteps=[1000, 600, 200])
    x = x0
    for t in s.timesteps:
        x = s.step(v * float(t), t, x).prev_sample
    assert torch.allclose(x, v * (0.4 * 1000 + 0.4 * 600 + 0.2 * 200))
    with pytest.raises(ValueError, match="decreasing"):
        s.set_timesteps(timesteps=[200, 600])
    with pytest.raises(ValueError, match="not in the schedule"):
        s.step(v, 999.0, x)
    with pytest.raises(ValueError, match=">= 1"):
        s.set_timesteps(0)


# ---------------------------------------------------------------------------- PeRFlow


SD15_ALPHAS_CUMPROD = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear").alphas_cumprod


def alpha_bar(timestep: int) -> float:
    """ᾱ of SD-1.5's DDPM schedule at a PeRFlow timestep T (DDPM index T - 1, index 0 at T = 0)."""
    return float(SD15_ALPHAS_CUMPROD[max(timestep - 1, 0)])


class StraightWindowsModel:
    """The perfect PeRFlow network for one (x0, z): inside window [T_s, T_e] the flow is the straight
    line from X_s = sqrt(ᾱ_s) x0 + sqrt(1 - ᾱ_s) z to X_e (same with ᾱ_e), and the output is what
    the prediction type asks for on that line (the training targets of PeRFlow's train_perflow.py)."""

    def __init__(self, edges, prediction_type, x0, z):
        self.edges, self.prediction_type = edges, prediction_type
        self.points = [math.sqrt(alpha_bar(T)) * x0 + math.sqrt(1 - alpha_bar(T)) * z for T in edges]

    def window(self, timestep):
        return next(k for k in range(len(self.edges) - 1) if self.edges[k] >= timestep > self.edges[k + 1])

    def on_line(self, timestep):
        k = self.window(timestep) if timestep > self.edges[-1] else len(self.edges) - 2
        T_s, T_e = self.edges[k], self.edges[k + 1]
        return self.points[k] + (timestep - T_s) / (T_e - T_s) * (self.points[k + 1] - self.points[k])

    def __call__(self, timestep):
        k = self.window(int(timestep))
        x_s, x_e = self.points[k], self.points[k + 1]
        a_s, a_e = alpha_bar(self.edges[k]), alpha_bar(self.edges[k + 1])
        if self.prediction_type == "velocity":
            return (x_e - x_s) / ((self.edges[k + 1] - self.edges[k]) / 1000)
        if self.prediction_type == "diff_eps":  # x_s = γ x_e + sqrt(1 - γ²) ε
            gamma = math.sqrt(a_s / a_e)
            return (x_s - gamma * x_e) / math.sqrt(1 - gamma**2)
        # ddim_eps: x_e = sqrt(ᾱ_e) x̂0 + sqrt(1 - ᾱ_e) ε with x̂0 = (x_s - sqrt(1 - ᾱ_s) ε) / sqrt(ᾱ_s)
        return (x_e - math.sqrt(a_e / a_s) * x_s) / (math.sqrt(1 - a_e) - math.sqrt(a_e / a_s * (1 - a_s)))


def run(scheduler, model, x):
    for t in scheduler.timesteps:
        x = scheduler.step(model(int(t)), t, x).prev_sample
        yield int(t), x


@pytest.mark.parametrize("prediction_type", ["diff_eps", "ddim_eps", "velocity"])
@pytest.mark.parametrize("windows, steps", [(4, 4), (4, 8), (4, 6), (2, 2), (1, 1), (1, 3), (3, 6)])
def test_perflow_lands_on_every_window_end_of_a_straight_flow(prediction_type, windows, steps):
    g = torch.Generator().manual_seed(2)
    x0, z = torch.randn(2, 4, 8, 8, generator=g).unbind(0)
    edges = [1000 * (windows - k) // windows for k in range(windows + 1)]
    model = StraightWindowsModel(edges, prediction_type, x0, z)
    s = PeRFlowScheduler(prediction_type=prediction_type, num_time_windows=windows)
    s.set_timesteps(steps)
    assert len(s.timesteps) == steps and set(edges[:-1]) <= set(s.timesteps.tolist())
    following = s.timesteps.tolist()[1:] + [0]
    for (t, x), t_next in zip(run(s, model, model.points[0]), following):
        assert torch.allclose(x, model.on_line(t_next), atol=1e-5), (t, t_next)  # on the line at every step
    assert torch.allclose(x, model.points[-1], atol=1e-5)  # the clean end: sqrt(ᾱ_0) x0 + sqrt(1 - ᾱ_0) z


def test_perflow_prediction_types_are_not_interchangeable():
    x0, z = torch.randn(2, 16, generator=torch.Generator().manual_seed(3)).unbind(0)
    model = StraightWindowsModel([1000, 750, 500, 250, 0], "diff_eps", x0, z)
    s = PeRFlowScheduler(prediction_type="ddim_eps")
    s.set_timesteps(4)
    x = s.step(model(1000), 1000, model.points[0]).prev_sample
    assert (x - model.points[1]).abs().max() > 1e-2


def test_perflow_windows_and_timesteps_follow_the_ddpm_alpha_bar_construction():
    s = PeRFlowScheduler.from_config(sd15_config(), prediction_type="diff_eps")
    assert torch.equal(s.alphas_cumprod, DDPMScheduler.from_config(sd15_config()).alphas_cumprod)
    assert s.window_edges == [1000, 750, 500, 250, 0]
    for steps, expected in [(4, [1000, 750, 500, 250]), (5, [1000, 875, 750, 500, 250]),
                            (6, [1000, 875, 750, 625, 500, 250]), (8, [1000, 875, 750, 625, 500, 375, 250, 125]),
                            (12, [1000, 916, 833, 750, 666, 583, 500, 416, 333, 250, 166, 83])]:
        s.set_timesteps(steps)
        assert s.timesteps.dtype == torch.int64 and s.timesteps.tolist() == expected
    # diff_eps at window 0 uses γ = sqrt(ᾱ[999] / ᾱ[749]); window 3 ends at ᾱ[0], not 1
    assert s.window_end_coefficients(0)[0] == pytest.approx(math.sqrt(alpha_bar(750) / alpha_bar(1000)))
    assert s.window_end_coefficients(3)[0] == pytest.approx(math.sqrt(alpha_bar(1) / alpha_bar(250)))
    assert alpha_bar(1) < 1
    # K = 3: the original's window starts 1000 * 2/3 -> 666 and ᾱ index 665
    three = PeRFlowScheduler(num_time_windows=3)
    assert three.window_edges == [1000, 666, 333, 0]
    assert three.alpha_bar(three.window_edges[1]) == float(SD15_ALPHAS_CUMPROD[665])
    three.set_timesteps(6)
    assert three.timesteps.tolist() == [1000, 833, 666, 500, 333, 166]


def test_perflow_fewer_steps_than_windows_is_an_error_not_a_silent_raise():
    s = PeRFlowScheduler(num_time_windows=4)
    with pytest.raises(ValueError, match=r"num_inference_steps=1 .*num_time_windows=4.*num_time_windows=1"):
        s.set_timesteps(1)
    with pytest.raises(ValueError, match="num_time_windows=3"):
        s.set_timesteps(3)
    one = PeRFlowScheduler(num_time_windows=1)
    one.set_timesteps(1)
    assert one.timesteps.tolist() == [1000]


def test_perflow_explicit_timesteps_must_start_every_window():
    x0, z = torch.randn(2, 16, generator=torch.Generator().manual_seed(4)).unbind(0)
    model = StraightWindowsModel([1000, 750, 500, 250, 0], "ddim_eps", x0, z)
    s = PeRFlowScheduler(prediction_type="ddim_eps")
    s.set_timesteps(timesteps=[1000, 900, 750, 500, 400, 250])
    *_, (_, x) = run(s, model, model.points[0])
    assert torch.allclose(x, model.points[-1], atol=1e-5)
    with pytest.raises(ValueError, match=r"lack the window starts \[750\]"):
        s.set_timesteps(timesteps=[1000, 500, 250])
    with pytest.raises(ValueError, match="exactly one"):
        s.set_timesteps(4, timesteps=[1000, 750, 500, 250])
    with pytest.raises(ValueError, match="not in the schedule"):
        s.step(x, 999, x)


# ---------------------------------------------------------------------------- configs


def public(config):
    return {k: v for k, v in config.items() if not k.startswith("_")}


def test_configs_round_trip_through_save_config(tmp_path):
    for scheduler in (PeRFlowScheduler(prediction_type="ddim_eps", num_time_windows=2, beta_schedule="linear"),
                      RectifiedFlowEulerScheduler()):
        folder = tmp_path / type(scheduler).__name__
        scheduler.save_config(folder)
        saved = json.loads((folder / "scheduler_config.json").read_text())
        assert saved["_class_name"] == type(scheduler).__name__
        again = type(scheduler).from_pretrained(folder)
        assert public(again.config) == public(scheduler.config)
        again = type(scheduler).from_config(scheduler.config)
        scheduler.set_timesteps(3)
        again.set_timesteps(3)
        assert torch.equal(again.timesteps, scheduler.timesteps)


def test_from_an_sd15_scheduler_config():
    # the SD config's own keys (steps_offset, skip_prk_steps, ...) ride along in .config, unused,
    # as diffusers keeps them for its compatible classes; the schedule is SD-1.5's
    s = PeRFlowScheduler.from_config(sd15_config(), prediction_type="diff_eps", num_time_windows=2)
    assert (s.config.beta_schedule, s.config.beta_end, s.config.num_time_windows) == ("scaled_linear", 0.012, 2)
    plain = PeRFlowScheduler(prediction_type="diff_eps", num_time_windows=2)
    s.set_timesteps(2)
    plain.set_timesteps(2)
    assert torch.equal(s.alphas_cumprod, plain.alphas_cumprod) and torch.equal(s.timesteps, plain.timesteps)
    with pytest.raises(ValueError, match="'epsilon'.*prediction_type="):
        PeRFlowScheduler.from_config(sd15_config())  # SD's own 'epsilon' is no PeRFlow type
    r = RectifiedFlowEulerScheduler.from_config(sd15_config())
    r.set_timesteps(1)
    assert r.config.num_train_timesteps == 1000 and r.timesteps.tolist() == [1000.0]


# ---------------------------------------------------------------------------- the stock pipelines


@contextmanager
def unet_calls(unet):
    """[timestep, input, output] of every UNet forward inside the block."""
    calls = []
    hooks = [unet.register_forward_pre_hook(lambda m, args: calls.append([float(args[1]), args[0].clone()])),
             unet.register_forward_hook(lambda m, args, out: calls[-1].append(out[0].detach().clone()))]
    try:
        yield calls
    finally:
        for hook in hooks:
            hook.remove()


@pytest.fixture(scope="module")
def sd15():
    return StableDiffusionPipeline.from_pretrained(PIPELINE, safety_checker=None, feature_extractor=None,
                                                   requires_safety_checker=False)


def with_scheduler(pipe, cls, **overrides):
    """The stock pipeline on the same modules, with cls built from its scheduler's config."""
    out = StableDiffusionPipeline(**{**pipe.components, "scheduler": cls.from_config(pipe.scheduler.config,
                                                                                       **overrides)},
                                  requires_safety_checker=False)
    out.set_progress_bar_config(disable=True)
    return out


@pytest.mark.parametrize("cls, overrides, steps, expected", [
    (RectifiedFlowEulerScheduler, {}, 1, [1000.0]),
    (RectifiedFlowEulerScheduler, {}, 3, [1000.0, 2000 / 3, 1000 / 3]),
    (PeRFlowScheduler, {"prediction_type": "diff_eps"}, 4, [1000, 750, 500, 250]),
    (PeRFlowScheduler, {"prediction_type": "diff_eps", "num_time_windows": 2}, 2, [1000, 500]),
    (PeRFlowScheduler, {"prediction_type": "ddim_eps", "num_time_windows": 1}, 1, [1000]),
    (PeRFlowScheduler, {"prediction_type": "velocity"}, 6, [1000, 875, 750, 625, 500, 250]),
])
def test_stock_sd_pipeline_runs_the_scheduler(sd15, cls, overrides, steps, expected):
    pipe = with_scheduler(sd15, cls, **overrides)
    with unet_calls(pipe.unet) as calls:
        out = pipe("a red circle", num_inference_steps=steps, guidance_scale=1.0, output_type="np",
                   generator=torch.Generator().manual_seed(0)).images
    assert out.shape == (1, 64, 64, 3) and np.isfinite(out).all()
    assert len(calls) == steps
    assert [c[0] for c in calls] == pytest.approx(expected, abs=1e-3)


@pytest.mark.parametrize("cls, overrides, sign", [
    (RectifiedFlowEulerScheduler, {}, 1.0),  # InstaFlow's v = dx/ds, s from noise (0) to data (1)
    (PeRFlowScheduler, {"prediction_type": "velocity", "num_time_windows": 1}, -1.0),  # PeRFlow's v = dx/dt, t 1 -> 0
])
def test_one_pipeline_step_is_the_noise_plus_or_minus_the_unet_output(sd15, cls, overrides, sign):
    pipe = with_scheduler(sd15, cls, **overrides)
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    with unet_calls(pipe.unet) as calls:
        latents = pipe("a red circle", num_inference_steps=1, guidance_scale=1.0, latents=noise.clone(),
                       output_type="latent").images
    [(t, x_in, v)] = calls
    assert t == 1000.0 and torch.equal(x_in, noise)  # init_noise_sigma 1, scale_model_input the identity
    assert torch.allclose(latents, noise + sign * v, atol=1e-6)


def test_perflow_with_explicit_timesteps_in_the_pipeline(sd15):
    pipe = with_scheduler(sd15, PeRFlowScheduler, prediction_type="diff_eps", num_time_windows=2)
    with unet_calls(pipe.unet) as calls:
        pipe("a red circle", timesteps=[1000, 800, 500], guidance_scale=1.0, output_type="latent")
    assert [c[0] for c in calls] == [1000, 800, 500]


def test_stock_sdxl_pipeline_runs_both_schedulers(tmp_path_factory):
    from methods.common.random_pipelines import random_sdxl_pipeline
    from tests.tiny_models import TINY_SDXL

    folder = random_sdxl_pipeline(tmp_path_factory.mktemp("sdxl") / "pipe", **TINY_SDXL)
    pipe = StableDiffusionXLPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    for scheduler, steps, expected in [
            (PeRFlowScheduler.from_config(pipe.scheduler.config, prediction_type="ddim_eps"), 4, [1000, 750, 500, 250]),
            (RectifiedFlowEulerScheduler.from_config(pipe.scheduler.config), 2, [1000, 500])]:
        pipe.scheduler = scheduler
        with unet_calls(pipe.unet) as calls:
            out = pipe("a red circle", num_inference_steps=steps, guidance_scale=1.0, height=64, width=64,
                       output_type="np").images
        assert np.isfinite(out).all() and [c[0] for c in calls] == pytest.approx(expected)
