"""The student's K-step trajectory (Sec. 3.1): roll out without gradient, then one step with it.

Gradient flows through one student step only: each sample is rolled out (no grad) to the
start of its chosen segment, b_{m+1}, and the step from b_{m+1} to b_m is taken with grad.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from methods.common.solvers import ddim_step, dpmpp_2m_step

from .objective import CLEAN, interval_bounds


@dataclass
class TrajectorySample:
    x_i: torch.Tensor       # the student's sample at level t_i (clean when t_i == CLEAN), with grad
    x0_hat: torch.Tensor    # the clean prediction that produced it, with grad
    t_i: torch.Tensor       # (n,) level of x_i: b_m
    t_next: torch.Tensor    # (n,) upper end of its interval: b_{m+1}


def _step(schedule, solver, x, x0, t_cur, t_next, prev):
    """One solver step for samples that share (t_cur, t_next); prev = (x0_prev, t_prev) or None."""
    t_next = None if t_next == CLEAN else t_next
    if solver == "ddim" or prev is None:
        return ddim_step(schedule, x, x0, t_cur, t_next)
    return dpmpp_2m_step(schedule, x, x0, t_cur, t_next, *prev)


def student_trajectory(student, schedule, noise: torch.Tensor, cond: dict, K: int, m: torch.Tensor,
                       solver: str = "ddim", step_cond: torch.Tensor | None = None, T: int = 1000,
                       rollout_to: int | None = None) -> TrajectorySample:
    """x_{t_m} for each sample's segment index m (n,) in 0..K-1, from noise at b_K.

    The no-grad roll-out goes down to segment `rollout_to` (default: min(m)). Several processes
    pass the global batch's minimum, so that each makes the same number of student calls: under
    FSDP every call gathers the weights from all processes, and one that stopped early would
    leave the others waiting.
    """
    bounds = interval_bounds(K, T)
    deepest = int(m.min()) if rollout_to is None else rollout_to
    x, prev = noise, None
    x_start = torch.empty_like(noise)
    x0_prev_at = {}
    with torch.no_grad():
        for j in range(K, 0, -1):  # roll out as far as the latest segment start anyone needs
            here = m == j - 1
            x_start[here] = x[here]
            x0_prev_at[j] = prev
            if j - 1 <= deepest:
                break
            t = torch.full((len(x),), bounds[j], device=x.device)
            x0 = student.x0(x, t, cond, step_cond)
            x, prev = _step(schedule, solver, x, x0, bounds[j], bounds[j - 1], prev), (x0, bounds[j])
    t_cur = torch.tensor([bounds[int(k) + 1] for k in m], device=noise.device)
    x0_hat = student.x0(x_start, t_cur, cond, step_cond)
    x_i = torch.empty_like(x0_hat)
    for k in m.unique().tolist():
        rows = m == k
        prev_k = x0_prev_at.get(k + 1)
        prev_rows = None if prev_k is None else (prev_k[0][rows], prev_k[1])
        x_i[rows] = _step(schedule, solver, x_start[rows], x0_hat[rows], bounds[k + 1], bounds[k], prev_rows)
    t_i = torch.tensor([bounds[int(k)] for k in m], device=noise.device)
    return TrajectorySample(x_i, x0_hat, t_i, t_cur)
