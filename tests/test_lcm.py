"""LCM on the shared training loop (methods/lcm): its pieces against their formulas and diffusers', one
iteration call by call, a tiny-sd15 run (the world's images, the EMA target) and its export sampled
with the embedded guidance scale.

Bit-identical resume, with the EMA target in the checkpoint, is tested beside TDM's cases in
test_tdm_train_cli.py.
"""
import json

import numpy as np
import pytest
import torch

from harness.worlds.gmm import sd15_schedule
from harness.worlds.tiny_sd15.judge import PIPELINE
from methods.common.errors import UserError
from methods.lcm import objective as obj
from methods.lcm.config import LCMConfig
from methods.lcm.method import LCMDraws, consistency_pair, ema_update
from methods.tdm.presets import resolve
from methods.tdm.train import train
from methods.tdm.trainer import Roles

SCHEDULE = sd15_schedule()

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_guidance_embedding_is_the_one_pipelines_feed_the_unet():
    from diffusers import StableDiffusionPipeline

    w = torch.tensor([0.0, 2.5, 7.0, 14.0])
    expected = StableDiffusionPipeline.get_guidance_scale_embedding(None, w, embedding_dim=256)
    torch.testing.assert_close(obj.guidance_embedding(w, 256), expected)


def test_boundary_scalings_make_the_consistency_function_the_identity_at_the_data_end():
    c_skip, c_out = obj.boundary_scalings(torch.tensor([0, 19, 999]))
    assert c_skip[0] == 1 and c_out[0] == 0
    torch.testing.assert_close(c_skip[2], torch.tensor(0.25 / (9990.0 ** 2 + 0.25)))
    torch.testing.assert_close(c_out[2], torch.tensor(9990.0 / (9990.0 ** 2 + 0.25) ** 0.5))


def test_the_skeleton_and_the_skip():
    grid = obj.skeleton(50, 1000)
    assert grid[0] == 19 and grid[-1] == 999 and len(grid) == 50 and (grid.diff() == 20).all()
    assert LCMConfig().skip == 20


def test_a_ddim_step_with_the_true_x0_lands_on_the_same_noise():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)
    t, s = torch.tensor([999, 759, 499, 259, 39]), torch.tensor([979, 739, 479, 239, 19])
    alpha_t, sigma_t = SCHEDULE.alpha_sigma(t, x0)
    alpha_s, sigma_s = SCHEDULE.alpha_sigma(s, x0)
    torch.testing.assert_close(obj.ddim_step(alpha_t * x0 + sigma_t * eps, x0, alpha_t, sigma_t, alpha_s, sigma_s),
                               alpha_s * x0 + sigma_s * eps)


def test_the_consistency_losses():
    a, b = torch.tensor([[0.0, 1.0]]), torch.tensor([[0.0, 0.0]])
    torch.testing.assert_close(obj.consistency_loss(a, b, "l2"), torch.tensor(0.5))
    torch.testing.assert_close(obj.consistency_loss(a, b, "huber", c=0.001),
                               torch.tensor(((1 + 1e-6) ** 0.5 - 1e-3) / 2))


class Constant:
    """A denoiser whose x0 is `value` (a cond's "value" when it has one), recording its calls."""

    def __init__(self, value: float):
        self.value, self.calls = value, []
        self.core = torch.nn.Linear(1, 1)

    def x0(self, x, t, cond, step_cond=None):
        self.calls.append((x.clone(), t.clone(), None if step_cond is None else step_cond.clone()))
        value = cond.get("value", torch.full((len(x), 1), self.value))
        return value.to(x.dtype).expand_as(x).clone()


def test_one_iteration_call_by_call():
    """The student at t_{n+k}, the teacher guided at scale w + 1 there, one DDIM step, the target at t_n
    with the same w embedding."""
    cfg = LCMConfig(w_min=2.0, w_max=2.0)  # w = 2
    n, g = 3, torch.Generator().manual_seed(1)
    x0, noise = torch.randn(n, 2, generator=g), torch.randn(n, 2, generator=g)
    draws = LCMDraws(torch.tensor([0, 10, 49]), torch.zeros(n))
    student, target = Constant(0.5), Constant(-1.0)
    teacher = Constant(0.0)
    cond = {"value": torch.full((n, 1), 1.0)}
    uncond = {"value": torch.full((n, 1), 0.25)}  # guided teacher x0 = 0.25 + 3 (1 - 0.25) = 2.5
    prediction, target_value = consistency_pair(cfg, Roles(student, target, teacher, SCHEDULE), x0, noise, cond,
                                                uncond, draws)
    t_start, t = torch.tensor([19, 219, 999]), torch.tensor([0, 199, 979])
    x_start = SCHEDULE.add_noise(x0, noise, t_start)
    (xs, ts, w_emb), = student.calls
    torch.testing.assert_close(xs, x_start)
    assert ts.tolist() == t_start.tolist()
    torch.testing.assert_close(w_emb, obj.guidance_embedding(torch.full((n,), 2.0), 256))
    c_skip, c_out = (c.view(-1, 1) for c in obj.boundary_scalings(t_start))
    torch.testing.assert_close(prediction, c_skip * x_start + c_out * 1.0)  # the student's x0 is cond's 1.0
    alpha_t, sigma_t = SCHEDULE.alpha_sigma(t_start, x0)
    alpha_s, sigma_s = SCHEDULE.alpha_sigma(t, x0)
    x_prev = obj.ddim_step(x_start, torch.full_like(x0, 2.5), alpha_t, sigma_t, alpha_s, sigma_s)
    (xt, tt, w_target), = target.calls
    torch.testing.assert_close(xt, x_prev)
    assert tt.tolist() == t.tolist() and torch.equal(w_target, w_emb)
    c_skip, c_out = (c.view(-1, 1) for c in obj.boundary_scalings(t))
    torch.testing.assert_close(target_value, c_skip * x_prev + c_out * 1.0)
    torch.testing.assert_close(target_value[0], x_prev[0])  # at t_n = 0 the target is the point itself


def test_the_ema_moves_the_target_a_twentieth_of_the_way():
    target, student = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = [p.detach().clone() for p in target.parameters()]
    ema_update(target, student, 0.95)
    for b, t, s in zip(before, target.parameters(), student.parameters()):
        torch.testing.assert_close(t, 0.95 * b + 0.05 * s)


def test_lcm_refuses_what_it_cannot_run(tmp_path):
    with pytest.raises(UserError, match="captioned images"):
        config = resolve("tiny-sd15-lcm-4step", [f"output_dir={tmp_path}", "tracker=none",
                                                 f"prompts={tmp_path / 'prompts.txt'}"])
        (tmp_path / "prompts.txt").write_text("a red circle\n")
        train(config, "cpu", show_progress=False)
    with pytest.raises(UserError, match="one K"):
        resolve("tiny-sd15-lcm-4step", ["steps=1,2,4"])


def test_a_tiny_sd15_run_learns_from_the_worlds_images_and_exports_an_lcm_pipeline(tmp_path):
    from diffusers import LCMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from safetensors.torch import load_file

    from baselines.tdm_student import StudentSampler

    out = tmp_path / "run"
    config = resolve("tiny-sd15-lcm-4step", ["batch_size=4", "iterations=1", "checkpoint_every=1", "log_every=1",
                                             "tracker=none", f"output_dir={out}"])
    summary = train(config, "cpu", show_progress=False)
    assert summary["exported"] == [str(out / "student-K4")]
    # The target is the EMA of the student: 0.95 of its start (the teacher; cond_proj at zero) after one step.
    ck = out / "checkpoints" / "step-000001"
    student, target = load_file(ck / "model.safetensors"), torch.load(ck / "custom_checkpoint_0.pkl", weights_only=True)
    teacher = UNet2DConditionModel.from_pretrained(str(PIPELINE / "unet")).state_dict()
    assert set(target) == set(student) and not (ck / "model_1.safetensors").exists()
    moved = [k for k in student if not torch.equal(student[k], teacher.get(k, torch.zeros_like(student[k])))]
    assert moved  # one step changed the student
    for key in student:
        start = teacher.get(key, torch.zeros_like(student[key]))
        torch.testing.assert_close(target[key], 0.95 * start + 0.05 * student[key], rtol=1e-5, atol=1e-7)

    card = json.loads((out / "student-K4" / "tdm_student.json").read_text())
    assert card["method"] == "LCM" and card["guidance_scale"] == 3.5 and card["timesteps"] == [999, 759, 499, 259]
    pipe = StableDiffusionPipeline.from_pretrained(str(out / "student-K4"))
    assert isinstance(pipe.scheduler, LCMScheduler) and pipe.unet.config.time_cond_proj_dim == 256  # not folded
    with pytest.raises(UserError, match="LCM student, sampled with solver 'lcm'"):
        StudentSampler.from_run(out, 4, "dpmpp")
    sampler = StudentSampler.from_run(out, 4, "lcm", batch_size=2)
    calls = []
    sampler.pipe.unet.register_forward_pre_hook(lambda module, args, kwargs: calls.append(kwargs.get("timestep_cond")),
                                                with_kwargs=True)
    images = sampler.sample(["a red circle", "a blue square"], [0, 1])
    assert images.shape[0] == 2 and images.dtype == np.uint8
    assert len(calls) == 4 and all(c is not None and c.shape == (2, 256) for c in calls)  # no CFG: w is embedded
    torch.testing.assert_close(calls[0][0], obj.guidance_embedding(torch.tensor([2.5]), 256)[0])


def test_tdm_starts_from_an_lcm_student_folded_at_its_guidance_scale(tmp_path):
    """Fig. 8's set-up: TDM initialised from LCM. The LCM UNet's guidance input is folded at the scale its
    card samples with, so the student TDM starts from computes what the LCM student computes there."""
    from diffusers import UNet2DConditionModel

    from methods.tdm.backbones import load_backbone

    lcm = tmp_path / "lcm"
    train(resolve("tiny-sd15-lcm-4step", ["batch_size=4", "iterations=1", "checkpoint_every=0", "tracker=none",
                                          f"output_dir={lcm}"]), "cpu", show_progress=False)
    # One step barely moves cond_proj from zero: give it weights whose fold matters.
    lcm_unet = UNet2DConditionModel.from_pretrained(str(lcm / "student-K4" / "unet"))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        lcm_unet.time_embedding.cond_proj.weight.copy_(
            0.1 * torch.randn(lcm_unet.time_embedding.cond_proj.weight.shape, generator=g))
    lcm_unet.save_pretrained(str(lcm / "student-K4" / "unet"))
    settings = ["batch_size=4", "iterations=1", "checkpoint_every=0", "tracker=none", f"output_dir={tmp_path / 'tdm'}",
                f"student_init={lcm / 'student-K4'}"]
    config = resolve("tiny-sd15-4step", settings)
    student = load_backbone(config, torch.device("cpu"), torch.float32).modules["student"]
    assert student.config.time_cond_proj_dim is None
    x = torch.randn(2, 4, 8, 8, generator=g)
    text = torch.randn(2, 77, lcm_unet.config.cross_attention_dim, generator=g)
    t = torch.tensor([999, 259])
    w = obj.guidance_embedding(torch.tensor([2.5, 2.5]), 256)
    with torch.no_grad():
        folded = student(x, t, text).sample
        torch.testing.assert_close(folded, lcm_unet(x, t, text, timestep_cond=w).sample, rtol=1e-4, atol=1e-5)
        other = lcm_unet(x, t, text, timestep_cond=obj.guidance_embedding(torch.tensor([7.0, 7.0]), 256)).sample
        assert (folded - other).abs().max() > 1e-3  # the guidance input matters: the fold picked w = 2.5
    summary = train(config, "cpu", show_progress=False)  # and TDM trains from it
    assert summary["iterations"] == 1 and summary["exported"]
