"""LCM's pieces as pure functions (diffusers examples/consistency_distillation/train_lcm_distill_sd_wds.py;
LCM paper Eq. 9-10): the guidance-scale embedding, the consistency boundary conditions, the DDIM
skeleton and the teacher's DDIM step, and the consistency loss."""
from __future__ import annotations

import math

import torch

SIGMA_DATA = 0.5


def guidance_embedding(w: torch.Tensor, dim: int) -> torch.Tensor:
    """The sinusoidal embedding of w (n,) -> (n, dim) that diffusers' pipelines feed `timestep_cond`
    (StableDiffusionPipeline.get_guidance_scale_embedding, at w = guidance_scale - 1)."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=w.device) * -(math.log(10000.0) / (half - 1)))
    angles = (w.float() * 1000.0)[:, None] * freqs[None, :]
    emb = torch.cat([angles.sin(), angles.cos()], dim=1)
    return torch.nn.functional.pad(emb, (0, dim % 2))


def boundary_scalings(t: torch.Tensor, timestep_scaling: float = 10.0) -> tuple[torch.Tensor, torch.Tensor]:
    """c_skip(t), c_out(t): f(x_t) = c_skip x_t + c_out x0_hat, with c_skip(0) = 1 and c_out(0) = 0, so
    that the consistency function is the identity at the data end."""
    scaled = t.double() * timestep_scaling
    c_skip = SIGMA_DATA ** 2 / (scaled ** 2 + SIGMA_DATA ** 2)
    c_out = scaled / (scaled ** 2 + SIGMA_DATA ** 2).sqrt()
    return c_skip.float(), c_out.float()


def skeleton(num_ddim_timesteps: int, T: int) -> torch.Tensor:
    """The DDIM grid t_{n+k} = (n + 1) k - 1, n = 0 .. N - 1, k = T / N: [19, 39, ..., 999] at N = 50."""
    k = T // num_ddim_timesteps
    return torch.arange(1, num_ddim_timesteps + 1) * k - 1


def ddim_step(x_t, x0, alpha_t, sigma_t, alpha_s, sigma_s) -> torch.Tensor:
    """The teacher's DDIM step from t to s given its (guided) x0 at x_t: the noise it implies, kept.
    LCM guides as x0_c + w (x0_c - x0_u), which is classifier-free guidance at scale w + 1 (on x0 and
    on epsilon alike: epsilon is affine in x0 at fixed x_t)."""
    eps = (x_t - alpha_t * x0) / sigma_t
    return alpha_s * x0 + sigma_s * eps


def consistency_loss(prediction: torch.Tensor, target: torch.Tensor, loss: str = "huber",
                     c: float = 0.001) -> torch.Tensor:
    """Mean over elements of sqrt((f - f_target)^2 + c^2) - c (pseudo-Huber), or of (f - f_target)^2."""
    d = prediction.float() - target.detach().float()
    if loss == "l2":
        return d.square().mean()
    return ((d.square() + c ** 2).sqrt() - c).mean()
