"""The student's K-step trajectory (Sec. 3.1): roll out without gradient, then one step with it.

Gradient flows through one student step only: each sample is rolled out (no grad) to the
start of its chosen segment, b_{m+1}, and the step from b_{m+1} to b_m is taken with grad.

Both halves are written without reading the GPU from the host (no `.item()`, no boolean
indexing, no per-row Python), so an iteration can be captured as a CUDA graph: per-row
timesteps come from a table of the boundaries indexed by m, and rows are picked with
`torch.where`. The roll-out can skip rows that are already where they need to be, which saves
student calls: planned on the host from the draw of m (shapes then depend on the draw), or, with
stratified segments (each 1/K of the rows), in shapes fixed by K (`strata`).

The boundaries are b_k = kT/K - 1, or the student's explicit timesteps (`timesteps`, noise
first: TDMConfig.timesteps), which the roll-out records in its RolloutState so that the step
with gradient takes the same ones.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from methods.common.schedule import x0_to_eps
from methods.common.solvers import ddim_step, dpmpp_2m_step

from .objective import CLEAN, interval_bounds


@dataclass
class RolloutState:
    """Where each row's trained segment starts: x at b_{m+1}, and what the solver carries there."""
    x_start: torch.Tensor    # (n, ...) the roll-out's state at b_{m+1} (the noise when m = K - 1)
    x0_prev: torch.Tensor    # (n, ...) the student's x0 prediction at the step before (DPM-Solver++), zeros at m = K - 1
    m: torch.Tensor          # (n,) segment index, 0..K-1
    K: int
    timesteps: tuple[int, ...] = ()  # the student's explicit timesteps, noise first; (): b_k = kT/K - 1

    def rows(self, part: slice) -> "RolloutState":
        return RolloutState(self.x_start[part], self.x0_prev[part], self.m[part], self.K, self.timesteps)


@dataclass
class TrajectorySample:
    x_i: torch.Tensor       # the student's sample at level t_i (clean when t_i == CLEAN), with grad
    x0_hat: torch.Tensor    # the clean prediction that produced it, with grad
    t_i: torch.Tensor       # (n,) level of x_i: b_m
    t_next: torch.Tensor    # (n,) upper end of its interval: b_{m+1}


_BOUNDS: dict = {}


def bounds_table(K: int, T: int, device, timesteps: tuple[int, ...] = ()) -> torch.Tensor:
    """[b_0, ..., b_K] as a long tensor on `device` (cached, so a captured graph never copies it);
    `timesteps` as in `objective.interval_bounds`."""
    key = (K, T, tuple(timesteps), torch.device(device))
    if key not in _BOUNDS:
        _BOUNDS[key] = torch.tensor(interval_bounds(K, T, tuple(timesteps)), dtype=torch.long, device=device)
    return _BOUNDS[key]


def _rows(value, index: torch.Tensor | None):
    """Rows `index` of a tensor or of every tensor in a cond dict (all rows when index is None)."""
    if index is None or value is None:
        return value
    if isinstance(value, dict):
        return {k: _rows(v, index) for k, v in value.items()}
    return value.index_select(0, index)


ROW_BUCKETS = 8


def _padded_rows(needed: torch.Tensor, device) -> torch.Tensor:
    """Indices of the rows that `needed` marks, padded with repeats of the first to a multiple of
    len(needed) / ROW_BUCKETS on a GPU (on a CPU no plans are cached per shape: no padding);
    computed on the CPU, then moved."""
    index = torch.nonzero(needed).flatten()
    if not len(index) or torch.device(device).type != "cuda":
        return index.to(device)
    bucket = max(1, -(-len(needed) // ROW_BUCKETS))
    padding = -len(index) % bucket
    return torch.cat([index, index[:1].expand(padding)]).to(device)


def rollout(student, schedule, noise: torch.Tensor, cond: dict, K: int, m: torch.Tensor, solver: str = "ddim",
            step_cond: torch.Tensor | None = None, T: int = 1000, depth: int | None = None,
            m_host: torch.Tensor | None = None, timesteps: tuple[int, ...] = ()) -> RolloutState:
    """Roll the student out from noise at b_K, without gradient, to each row's segment start b_{m+1}.

    The roll-out goes down to segment `depth` (default: min(m), read from the device). Several
    processes pass the global batch's minimum, so that each makes the same number of student
    calls: under FSDP every call gathers the weights from all processes, and one that stopped
    early would leave the others waiting.

    With `m_host` (m on the CPU), each step runs the student only on the rows that still need
    it: for K = 4 that is 1.5 calls per row on average instead of 3. Without it every row is
    rolled out to `depth` (static shapes, as a CUDA graph needs). The rows' results are the same.
    On a GPU the selected rows are padded to a multiple of n / ROW_BUCKETS (repeating a row whose
    result is then dropped), so the student sees at most ROW_BUCKETS batch sizes per step: cuDNN
    plans its convolutions and attention per shape, and a new shape every iteration costs more
    host time than the rows saved.

    `timesteps`: the student's explicit timesteps b_K > ... > b_1 (TDMConfig.timesteps); (): kT/K - 1.
    """
    hosts = None if m_host is None else [m_host]
    return rollout_segments(student, schedule, noise, cond, K, [m], solver, step_cond, T, depth, hosts,
                            timesteps)[0]


def rollout_segments(student, schedule, noise: torch.Tensor, cond: dict, K: int, ms: list[torch.Tensor],
                     solver: str = "ddim", step_cond: torch.Tensor | None = None, T: int = 1000,
                     depth: int | None = None, m_hosts: list[torch.Tensor] | None = None,
                     timesteps: tuple[int, ...] = (), strata: bool = False) -> list[RolloutState]:
    """`rollout` for several segment draws of the same rows in one pass (the official script's
    fresh segment for the generator update): one RolloutState per tensor of `ms`. A row is
    rolled out as deep as the deepest of its segments needs.

    `strata=True` says that each segment holds len(rows) / K of the rows (stratified draws, one
    tensor in `ms`): the step b_j -> b_{j-1} then needs exactly (j - 1) n / K rows, the first ones
    in the order of m, so each step runs the student on only those, in shapes fixed by K alone
    (CUDA graphs and compiled networks take them) and without reading the GPU."""
    timesteps = tuple(timesteps)
    n = len(noise)
    if strata and (len(ms) != 1 or n % K):
        raise ValueError(f"strata=True needs one segment draw with each of the K = {K} segments on n / K rows, "
                         f"got {len(ms)} draws of {n} rows")
    order = ms[0].argsort(stable=True) if strata else None  # rows by segment: those needing a step come first
    bounds = interval_bounds(K, T, timesteps)
    depth = min(int(m.min()) for m in ms) if depth is None else depth
    deepest = None if m_hosts is None else functools.reduce(torch.minimum, m_hosts)
    x, x0_prev = noise, torch.zeros_like(noise)
    starts = [(noise, x0_prev) for _ in ms]
    shape = (-1,) + (1,) * (noise.dim() - 1)
    with torch.no_grad():
        for j in range(K, depth + 1, -1):  # the step b_j -> b_{j-1}, needed by rows with m <= j - 2
            if strata:
                index = order[:(j - 1) * n // K]
            else:
                index = None if deepest is None else _padded_rows(deepest <= j - 2, noise.device)
            if index is not None and not len(index):
                continue  # none of this process's rows goes this deep (another process's do)
            x_j = _rows(x, index)
            t = torch.full((len(x_j),), bounds[j], device=noise.device)
            x0 = student.x0(x_j, t, _rows(cond, index), _rows(step_cond, index))
            prev = None if j == K else (_rows(x0_prev, index), bounds[j + 1])
            x_next = _step(schedule, solver, x_j, x0, bounds[j], bounds[j - 1], prev)
            if index is None:
                x, x0_prev = x_next, x0
            else:
                if not strata:
                    kept = int((deepest <= j - 2).sum())  # the padding rows come last and are dropped
                    index, x_next, x0 = index[:kept], x_next[:kept], x0[:kept]
                x, x0_prev = x.index_copy(0, index, x_next), x0_prev.index_copy(0, index, x0)
            for r, m in enumerate(ms):
                here = (m == j - 2).view(shape)  # rows whose segment starts at b_{j-1}
                starts[r] = (torch.where(here, x, starts[r][0]), torch.where(here, x0_prev, starts[r][1]))
    return [RolloutState(x_start, x0_prev_start, m, K, timesteps) for (x_start, x0_prev_start), m in zip(starts, ms)]


def segment_step(student, schedule, state: RolloutState, cond: dict, solver: str = "ddim",
                 step_cond: torch.Tensor | None = None, T: int = 1000) -> TrajectorySample:
    """The student's step from b_{m+1} to b_m for every row, with gradient when grad is enabled,
    on the bounds the roll-out took (`state.timesteps`)."""
    bounds = bounds_table(state.K, T, state.x_start.device, state.timesteps)
    m = state.m
    t_cur, t_i = bounds[m + 1], bounds[m]
    x0_hat = student.x0(state.x_start, t_cur, cond, step_cond)
    t_prev = bounds[(m + 2).clamp(max=state.K)]  # meaningful where m < K - 1 only
    x_i = _per_row_step(schedule, solver, state.x_start, x0_hat, t_cur, t_i, state.x0_prev, t_prev, m < state.K - 1)
    return TrajectorySample(x_i, x0_hat, t_i, t_cur)


def script_level(schedule, state: RolloutState, sample: TrajectorySample) -> TrajectorySample:
    """The segment's sample as the official script takes it: x0_hat re-noised with the step's implied
    noise (DDIM) to t_mid = b_m + 1 (0 for the last segment) instead of b_m (`interval="script"`).
    The script's trajectory boundaries are b_k = kT/K - 1 like the project's, but it diffuses from
    one timestep above the sample's level, and from timestep 0 rather than the clean sample. With
    explicit timesteps the same rule holds on their bounds."""
    alpha, sigma = schedule.alpha_sigma(sample.t_next, state.x_start)
    eps_hat = x0_to_eps(state.x_start, sample.x0_hat, alpha, sigma)
    t_mid = sample.t_i + 1  # CLEAN (-1) + 1 = 0
    return TrajectorySample(schedule.add_noise(sample.x0_hat, eps_hat, t_mid), sample.x0_hat, t_mid, sample.t_next)


def student_trajectory(student, schedule, noise: torch.Tensor, cond: dict, K: int, m: torch.Tensor,
                       solver: str = "ddim", step_cond: torch.Tensor | None = None, T: int = 1000,
                       depth: int | None = None, m_host: torch.Tensor | None = None,
                       timesteps: tuple[int, ...] = ()) -> TrajectorySample:
    """x_{t_m} for each sample's segment index m (n,) in 0..K-1, from noise at b_K (see `rollout`)."""
    state = rollout(student, schedule, noise, cond, K, m, solver, step_cond, T, depth, m_host, timesteps)
    return segment_step(student, schedule, state, cond, solver, step_cond, T)


def _step(schedule, solver, x, x0, t_cur, t_next, prev):
    """One solver step for samples that share (t_cur, t_next); prev = (x0_prev, t_prev) or None."""
    t_next = None if t_next == CLEAN else t_next
    if solver == "ddim" or prev is None:
        return ddim_step(schedule, x, x0, t_cur, t_next)
    return dpmpp_2m_step(schedule, x, x0, t_cur, t_next, *prev)


def _per_row_step(schedule, solver, x, x0, t_cur, t_next, x0_prev, t_prev, has_prev):
    """`_step` with per-row timesteps: the same formulas as ddim_step and dpmpp_2m_step, row by row.

    Rows without a previous step take DDIM (first order), rows that end clean take x0. Those
    rows' unused formulas are fed safe values (t_next = 0, r = 1): where() passes no gradient
    to the branch it drops, but 0 * inf in that branch would still make the gradient NaN.
    """
    shape = (-1,) + (1,) * (x.dim() - 1)
    clean = (t_next == CLEAN).view(shape)
    alpha, sigma = schedule.alpha_sigma(t_cur, x)
    alpha_next, sigma_next = schedule.alpha_sigma(t_next.clamp(min=0), x)
    out = alpha_next * x0 + sigma_next * x0_to_eps(x, x0, alpha, sigma)
    if solver == "dpmpp":
        lam, lam_next = torch.log(alpha / sigma), torch.log(alpha_next / sigma_next)
        h = lam_next - lam
        alpha_prev, sigma_prev = schedule.alpha_sigma(t_prev, x)
        has_prev = has_prev.view(shape)
        r = torch.where(has_prev, (lam - torch.log(alpha_prev / sigma_prev)) / h, torch.ones_like(h))
        d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev
        out = torch.where(has_prev, (sigma_next / sigma) * x - alpha_next * torch.expm1(-h) * d, out)
    return torch.where(clean, x0, out)
