"""DDIM and DPM-Solver++(2M) as pure functions over arbitrary timestep lists.

Every solver step has the same contract (in the spirit of k-diffusion's samplers): it maps
the current state x at `t_cur` and the model's x0 prediction to the state at `t_next`
(`None` means the clean end of the trajectory). The multistep solver also takes the
previous step's x0 prediction and timestep. `sample` runs any of them over a list.
"""
from __future__ import annotations

from typing import Callable

import torch

from .schedule import NoiseSchedule, x0_to_eps

X0Fn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t, t) -> x0 prediction


def _t(value: int, x: torch.Tensor) -> torch.Tensor:
    return torch.full((len(x),), int(value), device=x.device, dtype=torch.long)


def ddim_step(schedule: NoiseSchedule, x: torch.Tensor, x0: torch.Tensor, t_cur: int, t_next: int | None):
    """Deterministic DDIM (eta = 0): keep the implied noise, move to t_next.

    The clean end returns x0 itself (diffusers' DDIM with set_alpha_to_one=True; SD-1.5's
    config instead stops at alphas_cumprod[0], a sigma of 0.03)."""
    if t_next is None:
        return x0
    alpha, sigma = schedule.alpha_sigma(_t(t_cur, x), x)
    alpha_next, sigma_next = schedule.alpha_sigma(_t(t_next, x), x)
    return alpha_next * x0 + sigma_next * x0_to_eps(x, x0, alpha, sigma)


def dpmpp_2m_step(schedule: NoiseSchedule, x: torch.Tensor, x0: torch.Tensor, t_cur: int, t_next: int | None,
                  x0_prev: torch.Tensor | None = None, t_prev: int | None = None):
    """DPM-Solver++(2M) in data prediction (Lu et al. 2022, Alg. 2). First order (then equal
    to DDIM) without a previous step, and at the clean end, as diffusers' `lower_order_final`."""
    if t_next is None:
        return x0
    alpha, sigma = schedule.alpha_sigma(_t(t_cur, x), x)
    alpha_next, sigma_next = schedule.alpha_sigma(_t(t_next, x), x)
    lam, lam_next = torch.log(alpha / sigma), torch.log(alpha_next / sigma_next)
    h = lam_next - lam
    d = x0
    if x0_prev is not None:
        alpha_prev, sigma_prev = schedule.alpha_sigma(_t(t_prev, x), x)
        r = (lam - torch.log(alpha_prev / sigma_prev)) / h
        d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev
    return (sigma_next / sigma) * x - alpha_next * torch.expm1(-h) * d


def sample(schedule: NoiseSchedule, x0_fn: X0Fn, x: torch.Tensor, timesteps: list[int], solver: str = "ddim",
           return_trajectory: bool = False):
    """Run `solver` from x at timesteps[0] through every listed timestep to the clean end.

    With `return_trajectory`, also the states at each listed timestep (x at timesteps[i]).
    """
    states, x0_prev, t_prev = [], None, None
    for i, t_cur in enumerate(timesteps):
        states.append(x)
        t_next = timesteps[i + 1] if i + 1 < len(timesteps) else None
        x0 = x0_fn(x, _t(t_cur, x))
        if solver == "ddim":
            x = ddim_step(schedule, x, x0, t_cur, t_next)
        elif solver == "dpmpp":
            x = dpmpp_2m_step(schedule, x, x0, t_cur, t_next, x0_prev, t_prev)
        else:
            raise ValueError(f"unknown solver {solver!r}; expected 'ddim' or 'dpmpp'")
        x0_prev, t_prev = x0, t_cur
    return (x, states) if return_trajectory else x


def trailing_timesteps(steps: int, num_train_timesteps: int = 1000) -> list[int]:
    """t_i = T * i / K, evaluated from the noisy end: [999, 749, 499, 249] for K = 4.

    The same values as diffusers' "trailing" spacing, and the TDM paper's t_i = T i / K.
    """
    return [round(num_train_timesteps * (steps - i) / steps) - 1 for i in range(steps)]
