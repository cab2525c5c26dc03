"""One TDM iteration, as Algorithm 1 reads: roll the student out, update the fake score,
update the generator. Networks enter through the denoiser contract (`x0(x_t, t, cond, step_cond)`),
so the same step trains the gmm world's exact-teacher students and diffusers backbones.

Every random number comes from a `BatchRandom`, drawn for the global batch, so one process
and several compute the same thing (see `randomness.py`).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from methods.common.adapters import classifier_free_guidance

from . import objective as obj
from .config import TDMConfig
from .randomness import BatchRandom
from .trajectory import student_trajectory


@dataclass
class Roles:
    student: object      # denoiser with trainable parameters, initialised from the teacher
    fake_score: object   # denoiser with trainable parameters, initialised from the teacher
    teacher: object      # frozen denoiser; real score
    schedule: object


def teacher_x0(roles: Roles, x_tau, tau, cond, uncond, guidance: float, grad: bool = False):
    """Real score with classifier-free guidance (conditional and unconditional rows in one batch).

    `grad=True` lets gradients reach x_tau (never the teacher's weights): the Fisher loss needs it.
    """
    with contextlib.nullcontext() if grad else torch.no_grad():
        if guidance == 1.0 or uncond is None:
            return roles.teacher.x0(x_tau, tau, cond)
        return classifier_free_guidance(roles.teacher, x_tau, tau, cond, uncond, guidance)


def _tau(cfg: TDMConfig, sample, rng: BatchRandom):
    hi = sample.t_next if cfg.interval == "paper" else torch.full_like(sample.t_next, cfg.num_train_timesteps)
    return obj.sample_tau(sample.t_i, hi, rng.rand())


def fake_score_step(cfg: TDMConfig, roles: Roles, sample, cond, step_cond, rng: BatchRandom) -> torch.Tensor:
    """Eq. 7 with the importance weights of Sec. 3.1 (or without, for the ablation)."""
    x_i, x0_hat = sample.x_i.detach(), sample.x0_hat.detach()
    tau = _tau(cfg, sample, rng)
    noise = rng.randn(*x_i.shape[1:], dtype=x_i.dtype)
    if cfg.importance_weights == "none":
        x_tau, weight = roles.schedule.add_noise(x0_hat, noise, tau), None
    else:
        x_tau = obj.diffuse_from(roles.schedule, x_i, sample.t_i, tau, noise)
        weight = obj.importance_weight(roles.schedule, x_tau, x_i, x0_hat, sample.t_i, tau, cfg.importance_weights)
    return obj.fake_score_loss(roles.fake_score.x0(x_tau, tau, cond, step_cond), x0_hat, weight)


def generator_step(cfg: TDMConfig, roles: Roles, sample, cond, uncond, step_cond, rng: BatchRandom) -> torch.Tensor:
    """Eq. 6 / Eq. 11 on the trajectory sample x_i (or on x0_hat, for the Table 7 ablation)."""
    x = sample.x_i if cfg.match == "noisy" else sample.x0_hat
    t_x = sample.t_i if cfg.match == "noisy" else torch.full_like(sample.t_i, obj.CLEAN)
    tau = _tau(cfg, sample, rng)
    noise = rng.randn(*x.shape[1:], dtype=x.dtype)
    if cfg.loss == "fisher":
        return _fisher_step(cfg, roles, sample, x, t_x, tau, noise, cond, uncond, step_cond)
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
    return obj.pseudo_huber_script_loss(x, delta, normaliser)


def _fisher_step(cfg, roles, sample, x, t_x, tau, noise, cond, uncond, step_cond) -> torch.Tensor:
    """Table 8: the Fisher divergence, whose gradient reaches the student through x_tau and
    both score networks' inputs (their weights are not updated here)."""
    x_tau = obj.diffuse_from(roles.schedule, x, t_x, tau, noise)
    x0_real = teacher_x0(roles, x_tau, tau, cond, uncond, cfg.guidance, grad=True)
    x0_fake = roles.fake_score.x0(x_tau, tau, cond, step_cond)
    normaliser = obj.dmd_normaliser(sample.x0_hat, x0_real.detach())
    return obj.fisher_loss(x0_real, x0_fake, sample.x0_hat, normaliser=normaliser)


def train_step(cfg: TDMConfig, roles: Roles, optimisers: dict, noise, cond, uncond, rng: BatchRandom,
               K: int, step_cond=None, accelerator=None) -> dict:
    """Algorithm 1, lines 3-13, for one batch and one step count K; the losses of this process's rows."""
    m_global = rng.randint_global(K)  # which segment of the trajectory each sample trains (line 4)
    sample = student_trajectory(roles.student, roles.schedule, noise, cond, K, rng.local(m_global), cfg.solver,
                                step_cond, cfg.num_train_timesteps, rollout_to=int(m_global.min()))
    losses = {}
    for _ in range(cfg.fake_updates):  # lines 7-10
        loss = fake_score_step(cfg, roles, sample, cond, step_cond, rng)
        losses["fake_score"] = _update(optimisers["fake_score"], loss, cfg.grad_clip, accelerator)
    loss = generator_step(cfg, roles, sample, cond, uncond, step_cond, rng)  # lines 11-13
    losses["student"] = _update(optimisers["student"], loss, cfg.grad_clip, accelerator)
    return losses


def _update(optimiser, loss: torch.Tensor, grad_clip: float, accelerator=None) -> torch.Tensor:
    """One clipped AdamW step on one role's loss (through accelerate when it is there: DDP, scaling).

    Returns the detached loss of this process's rows; no `.item()`, which would wait for the GPU
    every iteration. Under DDP the gradient is averaged over processes before clipping, so the
    clip sees the global batch's gradient norm, as one process would.
    """
    optimiser.zero_grad(set_to_none=True)
    params = [p for g in optimiser.param_groups for p in g["params"]]
    if accelerator is None:
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    else:
        accelerator.backward(loss)
        if accelerator.is_fsdp2:  # torch's clip handles sharded (DTensor) gradients; accelerate's would
            torch.nn.utils.clip_grad_norm_(params, grad_clip)  # compare our list with each network's, elementwise
        else:
            accelerator.clip_grad_norm_(params, grad_clip)
    optimiser.step()
    return loss.detach()
