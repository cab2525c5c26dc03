"""One TDM iteration, as Algorithm 1 reads: roll the student out, update the fake score,
update the generator. Networks enter through the denoiser contract (`x0(x_t, t, cond, step_cond)`),
so the same step trains the gmm world's exact-teacher students and diffusers backbones.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from methods.common.adapters import classifier_free_guidance

from . import objective as obj
from .config import TDMConfig
from .trajectory import student_trajectory


@dataclass
class Roles:
    student: object      # denoiser with trainable parameters, initialised from the teacher
    fake_score: object   # denoiser with trainable parameters, initialised from the teacher
    teacher: object      # frozen denoiser; real score
    schedule: object


def teacher_x0(roles: Roles, x_tau, tau, cond, uncond, guidance: float):
    """Real score with classifier-free guidance (conditional and unconditional rows in one batch)."""
    with torch.no_grad():
        if guidance == 1.0 or uncond is None:
            return roles.teacher.x0(x_tau, tau, cond)
        return classifier_free_guidance(roles.teacher, x_tau, tau, cond, uncond, guidance)


def _tau(cfg: TDMConfig, sample, generator):
    hi = sample.t_next if cfg.interval == "paper" else torch.full_like(sample.t_next, cfg.num_train_timesteps)
    return obj.sample_tau(sample.t_i, hi, generator)


def fake_score_step(cfg: TDMConfig, roles: Roles, sample, cond, step_cond, generator) -> torch.Tensor:
    """Eq. 7 with the importance weights of Sec. 3.1 (or without, for the ablation)."""
    x_i, x0_hat = sample.x_i.detach(), sample.x0_hat.detach()
    tau = _tau(cfg, sample, generator)
    noise = torch.randn(x_i.shape, generator=generator, device=x_i.device, dtype=x_i.dtype)
    if cfg.importance_weights == "none":
        x_tau, weight = roles.schedule.add_noise(x0_hat, noise, tau), None
    else:
        x_tau = obj.diffuse_from(roles.schedule, x_i, sample.t_i, tau, noise)
        weight = obj.importance_weight(roles.schedule, x_tau, x_i, x0_hat, sample.t_i, tau, cfg.importance_weights)
    return obj.fake_score_loss(roles.fake_score.x0(x_tau, tau, cond, step_cond), x0_hat, weight)


def generator_step(cfg: TDMConfig, roles: Roles, sample, cond, uncond, step_cond, generator) -> torch.Tensor:
    """Eq. 6 / Eq. 11 on the trajectory sample x_i (or on x0_hat, for the Table 7 ablation)."""
    x = sample.x_i if cfg.match == "noisy" else sample.x0_hat
    t_x = sample.t_i if cfg.match == "noisy" else torch.full_like(sample.t_i, obj.CLEAN)
    tau = _tau(cfg, sample, generator)
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    x_tau = obj.diffuse_from(roles.schedule, x.detach(), t_x, tau, noise)
    x0_real = teacher_x0(roles, x_tau, tau, cond, uncond, cfg.guidance)
    with torch.no_grad():
        x0_fake = roles.fake_score.x0(x_tau, tau, cond, step_cond)
    delta = obj.score_difference(x0_real, x0_fake)
    if cfg.loss == "pseudo_huber":
        return obj.pseudo_huber_loss(x, delta)
    normaliser = obj.dmd_normaliser(sample.x0_hat, x0_real)
    if cfg.loss == "kl":
        return obj.reverse_kl_loss(x, delta, normaliser)
    if cfg.loss == "pseudo_huber_script":
        return obj.pseudo_huber_script_loss(x, delta, normaliser)
    raise ValueError(f"loss {cfg.loss!r} is not available in this step (fisher needs the score networks' grads)")


def train_step(cfg: TDMConfig, roles: Roles, optimisers: dict, noise, cond, uncond, generator,
               K: int, step_cond=None) -> dict:
    """Algorithm 1, lines 3-13, for one batch and one step count K."""
    m = torch.randint(0, K, (len(noise),), generator=generator, device=noise.device)
    sample = student_trajectory(roles.student, roles.schedule, noise, cond, K, m, cfg.solver, step_cond,
                                cfg.num_train_timesteps)
    losses = {}
    for name, compute in (
        ("fake_score", lambda: fake_score_step(cfg, roles, sample, cond, step_cond, generator)),
        ("student", lambda: generator_step(cfg, roles, sample, cond, uncond, step_cond, generator)),
    ):
        loss = compute()
        opt = optimisers[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], cfg.grad_clip)
        opt.step()
        losses[name] = loss.item()
    return losses
