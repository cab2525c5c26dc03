"""One LCM iteration on the shared loop (diffusers examples/consistency_distillation/
train_lcm_distill_sd_wds.py, full-model variant):

1. a real latent x0 (the world's captioned images through the VAE) is diffused to t_{n+k}, n drawn
   per sample on the 50-step DDIM grid (skip k = 20), with the batch's noise;
2. the student's consistency function at t_{n+k}: f = c_skip x + c_out x0_hat(x, t, w), with the
   guidance scale w (drawn per sample) embedded through `time_cond_proj_dim`;
3. the teacher takes one DDIM step to t_n = t_{n+k} - k, guided as x0_c + w (x0_c - x0_u);
4. the target is the EMA network's consistency function there; the loss is pseudo-Huber between the
   two; the student steps, then the target moves towards it (decay 0.95).

The EMA target sits in the backbone's second trainable copy (the fake score's place for TDM and DMD2):
it starts equal to the student and has no optimiser; the loop checkpoints it.

Deviations, each for a reason: `cond_proj` starts at zero (the student starts as the teacher; the
script initialises it randomly), and the latents are the VAE posterior's mean, not a sample (an
iteration's data then depends on its step alone, which bit-identical resume needs).
The export keeps the w input and carries LCMScheduler: pipelines embed guidance_scale - 1 into
`timestep_cond` and skip CFG, so it samples with `guidance_scale=sample_guidance`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from methods.common.adapters import classifier_free_guidance
from methods.common.errors import UserError
from methods.common.method import MethodBase
from methods.tdm.step_conditioning import STEP_EMBEDDING_DIM
from methods.tdm.trainer import update

from . import objective as obj
from .config import LCMConfig


@dataclass
class LCMDraws:
    """Every random number of an LCM iteration after its batch (whose noise diffuses x0): each row's
    grid index n, then its u for the guidance scale w."""
    n: torch.Tensor  # (local,) long
    u: torch.Tensor  # (local,) float in [0, 1)

    def to(self, device, non_blocking: bool = False) -> "LCMDraws":
        return LCMDraws(self.n.to(device, non_blocking=non_blocking), self.u.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> "LCMDraws":
        return LCMDraws(self.n.pin_memory(), self.u.pin_memory())

    @property
    def graph_key(self) -> tuple:
        return ()  # every iteration has the same shapes


def draw(cfg: LCMConfig, rng, step: int, K: int, shape: tuple[int, ...]) -> LCMDraws:
    return LCMDraws(rng.randint(cfg.num_ddim_timesteps), rng.rand())


def _rows(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.to(like.device, like.dtype).view((-1,) + (1,) * (like.dim() - 1))


def consistency_pair(cfg: LCMConfig, roles, x0, noise, cond, uncond, draws: LCMDraws):
    """The student's consistency function at t_{n+k} and its target at t_n (no gradient)."""
    grid = obj.skeleton(cfg.num_ddim_timesteps, cfg.num_train_timesteps).to(x0.device)
    t_start = grid[draws.n.to(x0.device)]
    t = (t_start - cfg.skip).clamp(min=0)
    w = cfg.w_min + draws.u.to(x0.device) * (cfg.w_max - cfg.w_min)
    w_embedding = obj.guidance_embedding(w, STEP_EMBEDDING_DIM)
    x_start = roles.schedule.add_noise(x0, noise.to(x0.dtype), t_start)
    c_skip, c_out = (_rows(c, x0) for c in obj.boundary_scalings(t_start, cfg.timestep_scaling))
    prediction = c_skip * x_start + c_out * roles.student.x0(x_start, t_start, cond, w_embedding)
    with torch.no_grad():
        x0_teacher = classifier_free_guidance(roles.teacher, x_start, t_start, cond, uncond, _rows(w + 1, x0))
        alpha_t, sigma_t = roles.schedule.alpha_sigma(t_start, x0)
        alpha_s, sigma_s = roles.schedule.alpha_sigma(t, x0)
        x_prev = obj.ddim_step(x_start, x0_teacher.to(x0.dtype), alpha_t, sigma_t, alpha_s, sigma_s)
        c_skip, c_out = (_rows(c, x0) for c in obj.boundary_scalings(t, cfg.timestep_scaling))
        target = c_skip * x_prev + c_out * roles.fake_score.x0(x_prev, t, cond, w_embedding)
    return prediction, target


@torch.no_grad()
def ema_update(target: torch.nn.Module, student: torch.nn.Module, decay: float) -> None:
    """target <- decay target + (1 - decay) student, parameter by parameter."""
    for t, s in zip(target.parameters(), student.parameters()):
        t.lerp_(s.detach().to(t.dtype), 1 - decay)


class LCM(MethodBase):
    name = "lcm"
    title = "LCM"
    config_class = LCMConfig
    backbones = ("sd15", "sdxl")  # UNets with time_cond_proj_dim whose pipelines embed the guidance scale
    solver = "lcm"       # its own LCMScheduler: x0 at each of its timesteps, re-noised
    trained = ("student",)  # the EMA target has no optimiser
    needs_data = True
    folds_condition = False  # the exported UNet keeps its guidance-scale input
    # sampling_timesteps stays None: LCMScheduler's own K steps ([999, 759, 499, 259] at K = 4) lie on the
    # 50-step skeleton it learnt.

    def check(self, config) -> None:
        super().check(config)
        if config.lora_rank:
            raise UserError("LCM-LoRA (no EMA target) is not written yet: set lora_rank=0")

    def draw(self, config, rng, step: int, K: int, shape: tuple[int, ...]) -> LCMDraws:
        return draw(config.method, rng, step, K, shape)

    def train_step(self, cfg: LCMConfig, roles, optimisers: dict, noise, cond, uncond, draws: LCMDraws, K: int,
                   step_cond=None, accelerator=None, options=None, data=None) -> dict:
        prediction, target = consistency_pair(cfg, roles, data, noise, cond, uncond, draws)
        loss = obj.consistency_loss(prediction, target, cfg.loss, cfg.huber_c)
        losses = {"student": update(optimisers["student"], loss, cfg.grad_clip, accelerator, options)}
        ema_update(roles.fake_score.core, roles.student.core, cfg.ema_decay)  # unwrapped from DDP
        return losses

    def export_scheduler(self, scheduler_config: dict):
        from diffusers import LCMScheduler

        return LCMScheduler.from_config(scheduler_config)

    def sampling_guidance(self, cfg: LCMConfig) -> float:
        return cfg.sample_guidance
