"""One DMD2 iteration on the shared loop, without the GAN term (tianweiy/DMD2 main/sd_unified_model.py,
main/sd_guidance.py, main/train_sd.py):

1. backward simulation: from pure noise, run the student (no gradient) for s of its K steps, s drawn
   for the whole batch; each step predicts x0 and re-noises it to the next timestep with fresh noise;
2. the student predicts x0 at the s-th timestep from that input (with gradient on a generator turn);
3. generator turn (every `generator_every` iterations, the two time-scale rule): the distribution-
   matching loss on x0, the teacher's guided x0 against the fake score's at a diffused x0;
4. every iteration: the fake score learns the student's samples by denoising score matching.

The student is sampled as it was trained: x0 at each of its K timesteps, re-noised with fresh noise
between them; diffusers' LCMScheduler does exactly that (its boundary condition c_skip is below
1e-7 at these timesteps), so the exported folder carries one.

Iterations differ in cost (s student calls, and a generator turn adds the teacher's guided pass, the
fake score's and the student's backward), so the loop's FLOP count, taken at iteration 0, is that
iteration's, not an average.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from methods.common.method import MethodBase
from methods.tdm.objective import student_timesteps
from methods.tdm.trainer import teacher_x0, update

from . import objective as obj
from .config import DMD2Config


@dataclass
class DMD2Draws:
    """Every random number of a DMD2 iteration after its batch (whose noise diffuses the simulated
    sample to the training timestep), in this order: the simulated step count s (one for the whole
    global batch, as DMD2 broadcasts it), the backward simulation's K - 1 noises (its start, then one
    per re-noising; the first s are used), the distribution-matching loss's (u, noise) and the fake
    score's (u, noise). `generator_turn` is fixed by the iteration's number."""
    s: int
    generator_turn: bool
    simulation: list[torch.Tensor]
    generator: tuple[torch.Tensor, torch.Tensor]
    fake: tuple[torch.Tensor, torch.Tensor]

    def _map(self, move) -> "DMD2Draws":
        return DMD2Draws(self.s, self.generator_turn, [move(t) for t in self.simulation],
                         (move(self.generator[0]), move(self.generator[1])), (move(self.fake[0]), move(self.fake[1])))

    def to(self, device, non_blocking: bool = False) -> "DMD2Draws":
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> "DMD2Draws":
        return self._map(lambda t: t.pin_memory())

    @property
    def graph_key(self) -> tuple:
        return (self.s, self.generator_turn)


def draw(cfg: DMD2Config, rng, step: int, K: int, shape: tuple[int, ...], dtype=torch.float32) -> DMD2Draws:
    s = rng.choice(list(range(K)))
    simulation = [rng.randn(*shape, dtype=dtype) for _ in range(K - 1)]
    generator = (rng.rand(), rng.randn(*shape, dtype=dtype))
    fake = (rng.rand(), rng.randn(*shape, dtype=dtype))
    # The generator's turn closes each run of `generator_every` iterations (DMD2 opens it: the same rule
    # shifted by one), so that logging every `generator_every` iterations logs its loss.
    return DMD2Draws(s, (step + 1) % cfg.generator_every == 0, simulation, generator, fake)


def uniform_timestep(u: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """Integers uniform in [lo, hi] from u in [0, 1)."""
    return (lo + (u * (hi - lo + 1)).long()).clamp(max=hi)


@torch.no_grad()
def backward_simulation(roles, noise, cond, draws: DMD2Draws, timesteps: list[int], step_cond=None) -> torch.Tensor:
    """The student's input at its s-th timestep, as it meets it when sampling: the x0 it predicts after
    s - 1 steps from pure noise, diffused to timesteps[s] with the batch's noise. At s = 0, pure noise."""
    if draws.s == 0:
        return noise
    x = draws.simulation[0].to(noise.dtype)
    for k in range(draws.s):
        t = torch.full((len(x),), timesteps[k], device=x.device, dtype=torch.long)
        x0 = roles.student.x0(x, t, cond, step_cond)
        if k + 1 < draws.s:
            x = roles.schedule.add_noise(x0, draws.simulation[k + 1].to(x0.dtype), torch.full_like(t, timesteps[k + 1]))
    t_s = torch.full((len(x),), timesteps[draws.s], device=x.device, dtype=torch.long)
    return roles.schedule.add_noise(x0, noise.to(x0.dtype), t_s)


def generator_loss(cfg: DMD2Config, roles, x0, cond, uncond, u, eps) -> torch.Tensor:
    """The distribution-matching loss on the student's x0 (DMD Eq. 7, DMD2's normaliser)."""
    lo, hi = cfg.tau_bounds()
    tau = uniform_timestep(u, lo, hi)
    with torch.no_grad():
        x_tau = roles.schedule.add_noise(x0.detach(), eps.to(x0.dtype), tau)
        x0_real = teacher_x0(roles, x_tau, tau, cond, uncond, cfg.guidance)
        x0_fake = roles.fake_score.x0(x_tau, tau, cond)  # the fake score gets no guidance
        grad = obj.dmd_gradient(x0.detach(), x0_real, x0_fake)
    return obj.distribution_matching_loss(x0, grad)


def fake_score_loss(cfg: DMD2Config, roles, x0, cond, u, eps) -> torch.Tensor:
    """Denoising score matching on the student's samples at tau uniform in [0, T)."""
    x0 = x0.detach()
    tau = uniform_timestep(u, 0, cfg.num_train_timesteps - 1)
    eps = eps.to(x0.dtype)
    x_tau = roles.schedule.add_noise(x0, eps, tau)
    alpha, sigma = roles.schedule.alpha_sigma(tau, x0)
    return obj.fake_score_loss(roles.fake_score.x0(x_tau, tau, cond), x_tau, eps, alpha, sigma)


class DMD2(MethodBase):
    name = "dmd2"
    title = "DMD2"
    config_class = DMD2Config
    backbones = ("sd15", "sdxl", "pixart", "gmm")  # image backbones; the video export is TDM's own for now
    # Its iterations read nothing back from the GPU, and (K, s, turn) fixes their kernels (DMD2Draws.graph_key),
    # so they should replay as TDM's do; False until tests/test_tdm_cuda.py's DMD2 case has passed on a GPU.
    cuda_graphs = False
    solver = "lcm"       # sampled as trained: x0 at each timestep, re-noised with fresh noise

    def draw(self, config, rng, step: int, K: int, shape: tuple[int, ...]) -> DMD2Draws:
        return draw(config.method, rng, step, K, shape)

    def train_step(self, cfg: DMD2Config, roles, optimisers: dict, noise, cond, uncond, draws: DMD2Draws, K: int,
                   step_cond=None, accelerator=None, options=None, data=None) -> dict:
        timesteps = student_timesteps(K, cfg.num_train_timesteps, cfg.timesteps)
        x_s = backward_simulation(roles, noise, cond, draws, timesteps)
        t_s = torch.full((len(noise),), timesteps[draws.s], device=noise.device, dtype=torch.long)
        losses = {}
        with contextlib.nullcontext() if draws.generator_turn else torch.no_grad():
            x0 = roles.student.x0(x_s, t_s, cond)
        if draws.generator_turn:  # the student's loss is logged on its turns only
            loss = generator_loss(cfg, roles, x0, cond, uncond, *draws.generator)
            losses["student"] = update(optimisers["student"], loss, cfg.grad_clip, accelerator, options)
        loss = fake_score_loss(cfg, roles, x0, cond, *draws.fake)
        losses["fake_score"] = update(optimisers["fake_score"], loss, cfg.grad_clip_fake, accelerator, options)
        return losses

    def export_scheduler(self, scheduler_config: dict):
        from diffusers import LCMScheduler

        return LCMScheduler.from_config(scheduler_config)

    def sampling_timesteps(self, cfg: DMD2Config, K: int) -> list[int]:
        """Always explicit: LCMScheduler's own K-step spacing ([999, 759, 499, 259] at K = 4) is not
        DMD2's [999, 749, 499, 249]."""
        return student_timesteps(K, cfg.num_train_timesteps, cfg.timesteps)
