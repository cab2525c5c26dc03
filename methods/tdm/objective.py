"""The TDM objective as small pure functions, each citing the paper (arXiv 2503.06674).

Notation: the student's K-step trajectory visits the boundaries b_K > ... > b_1 > b_0 of
`interval_bounds`; x_i is its sample at b_i (b_0 = CLEAN: the generated image) and x0_hat_i
the clean prediction that produced it (x_i = alpha_i x0_hat_i + sigma_i eps_hat_i). Each x_i is
diffused only within its own interval [b_i, b_{i+1}) (Eq. 5). Score differences are carried
as differences of x0 predictions: s(x_tau) = (alpha_tau x0(x_tau) - x_tau) / sigma_tau^2.
"""
from __future__ import annotations

import math

import torch

from methods.common.schedule import NoiseSchedule

CLEAN = -1  # the timestep label of a clean sample (alpha = 1, sigma = 0)


def interval_bounds(K: int, T: int = 1000, timesteps=()) -> list[int]:
    """[b_0, ..., b_K] with b_i = T i / K - 1 (trailing spacing) and b_0 = CLEAN.

    K = 4: [CLEAN, 249, 499, 749, 999]; the student runs at b_K .. b_1 (Sec. 3.1, t_i = T i / K).
    `timesteps`, the student's K timesteps b_K > ... > b_1 listed noise first (TDMConfig.timesteps),
    replaces the uniform spacing: (999, 856, 665, 399) gives [CLEAN, 399, 665, 856, 999]. Every
    rule built on the bounds (the intervals of Eq. 5, the script's t_mid = b_i + 1) then follows them.
    """
    if timesteps:
        check_student_timesteps(timesteps, K, T)
        return [CLEAN] + [int(t) for t in reversed(timesteps)]
    return [CLEAN] + [round(T * i / K) - 1 for i in range(1, K + 1)]


def student_timesteps(K: int, T: int = 1000, timesteps=()) -> list[int]:
    """The student's K timesteps, noise first: [b_K, ..., b_1] of `interval_bounds`."""
    return interval_bounds(K, T, timesteps)[:0:-1]


def check_student_timesteps(timesteps, K: int, T: int) -> None:
    """ValueError (one line) unless `timesteps` are K integers, strictly decreasing, in [1, T - 1].

    The lowest is at least 1, not 0: the last segment's interval [b_0, b_1) = [0, b_1) (CLEAN
    diffuses from timestep 0, `sample_tau`) would be empty at b_1 = 0.
    """
    listed = list(timesteps)
    if not all(isinstance(t, int) and not isinstance(t, bool) for t in listed):
        raise ValueError(f"timesteps must be integers, got {listed}")
    if len(listed) != K:
        raise ValueError(f"timesteps lists {len(listed)} student timesteps but K = {K} (steps={K}): "
                         f"give exactly {K}, noise first")
    if any(a <= b for a, b in zip(listed, listed[1:])):
        raise ValueError(f"timesteps must be strictly decreasing (noise first, as the student visits them), "
                         f"got {listed}")
    if listed[0] > T - 1 or listed[-1] < 1:
        raise ValueError(f"timesteps must lie in [1, {T - 1}] (T = num_train_timesteps = {T}), got {listed}")


SCRIPT_TAU_MARGINS = (20, 10)  # the official script draws tau in [max(20, t_mid), t_g - 10)


def tau_range(interval: str, t_i: torch.Tensor, t_next: torch.Tensor, T: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[lo, hi) of tau per sample, for a sample at level t_i whose segment ends at t_next (n,).

    "paper": [t_i, t_next), the sample's own interval (Eq. 5); "wide": [t_i, T), every level above
    it (the official script's default); "script": [max(20, t_i), t_next - 10), the script with
    --use_separate, whose sample sits at t_mid = b_m + 1 (trajectory.script_level).
    """
    if interval == "paper":
        return t_i, t_next
    if interval == "wide":
        return t_i, torch.full_like(t_next, T)
    if interval == "script":
        low, high = SCRIPT_TAU_MARGINS
        return t_i.clamp(min=low), t_next - high
    raise ValueError(f"unknown interval {interval!r}; expected 'paper', 'wide' or 'script'")


def empty_tau_ranges(interval: str, bounds: list[int], T: int) -> list[tuple[int, int, int]]:
    """(m, lo, hi) for each segment m whose tau range [lo, hi) of `tau_range` holds no timestep,
    given the bounds [b_0, ..., b_K] (the sample at b_m, or at the script's t_mid = b_m + 1)."""
    t_i = torch.tensor(bounds[:-1])
    if interval == "script":
        t_i = t_i + 1  # trajectory.script_level: CLEAN (-1) + 1 = 0
    lo, hi = tau_range(interval, t_i, torch.tensor(bounds[1:]), T)
    lo = lo.clamp(min=0)  # CLEAN diffuses from timestep 0 (sample_tau)
    return [(m, int(lo[m]), int(hi[m])) for m in range(len(t_i)) if hi[m] <= lo[m]]


def sample_tau(lo: torch.Tensor, hi: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """tau ~ U{lo, ..., hi - 1} per sample from u ~ U[0, 1); lo = CLEAN counts as 0.

    The paper's non-overlapping intervals pass hi = b_{i+1} (Eq. 5); the official script's
    wider choice passes hi = T (every tau above the sample's own level).
    """
    lo = lo.clamp(min=0)
    return (lo + (u.to(lo.device) * (hi - lo)).long()).clamp(max=hi - 1)


def _alpha_sigma(schedule: NoiseSchedule, t: torch.Tensor, like: torch.Tensor):
    """alpha_t, sigma_t with CLEAN mapped to (1, 0)."""
    alpha, sigma = schedule.alpha_sigma(t.clamp(min=0), like)
    clean = (t < 0).view(alpha.shape)
    return torch.where(clean, torch.ones_like(alpha), alpha), torch.where(clean, torch.zeros_like(sigma), sigma)


def diffuse_from(schedule: NoiseSchedule, x_i: torch.Tensor, t_i: torch.Tensor, tau: torch.Tensor,
                 noise: torch.Tensor) -> torch.Tensor:
    """x_tau ~ q(x_tau | x_i): diffuse a sample at level t_i further to tau >= t_i (Eq. 5).

    q(x_tau | x_i) = N(alpha_tau / alpha_i x_i, (sigma_tau^2 - (alpha_tau sigma_i / alpha_i)^2) I).
    """
    alpha_i, sigma_i = _alpha_sigma(schedule, t_i, x_i)
    alpha_tau, sigma_tau = _alpha_sigma(schedule, tau, x_i)
    ratio = alpha_tau / alpha_i
    beta = (sigma_tau ** 2 - (ratio * sigma_i) ** 2).clamp(min=0).sqrt()
    return ratio * x_i + beta * noise


def _gaussian_log_density(x, mean, std):
    d = x[0].numel()
    sq = (x - mean).flatten(1).square().sum(1)
    return -0.5 * sq / std.flatten() ** 2 - d * torch.log(std.flatten()) - 0.5 * d * math.log(2 * math.pi)


def log_importance_weight(schedule: NoiseSchedule, x_tau, x_i, x0_hat, t_i, tau, mode: str,
                          noise: torch.Tensor | None = None) -> torch.Tensor:
    """log w, w = q(x_tau | x0_hat) / q(x_tau | x_i) for x_tau drawn from q(x_tau | x_i) (Sec. 3.1),
    per sample, in float32 at least (the networks' bf16 outputs are upcast first).

    `noise` is the xi that drew x_tau = (alpha_tau / alpha_i) x_i + beta xi (`diffuse_from`). Given,
    the proposal's standardised residual is xi itself, as the official script computes it, rather
    than (x_tau - (alpha_tau / alpha_i) x_i) / beta recovered from x_tau: the two agree wherever
    beta > 0, but the recovery loses precision as beta -> 0 (a bf16 x_tau near the sample's own
    level) and is 0 / 0 at tau = t_i, where xi gives the limit of the tempered weight.

    "exact": the log-ratio of the two Gaussian densities over the whole sample, as the paper
    writes it: unbiased (E[w] = 1), but its log is a sum over all d dimensions, so in image
    dimensions w is degenerate: at d = 1,024 (tiny-sd15) almost every weight on segments 1-3
    underflows to 0 and the rest differ by dozens of orders of magnitude; at d = 16,384
    (SD-1.5, PixArt) all do (`python -m methods.tdm.importance`). Kept for low-dimensional worlds
    and the closed-form checks.

    "per_dim_mean": the official script's choice and the default, the exponent averaged over
    dimensions with the normalising constants dropped: w^(1/d) up to a factor per (t_i, tau). It is
    biased (tempered towards 1; no longer E[w] = 1) and of low variance: of order one at every d
    (0.91-1.09 at d = 1,024 and 0.98-1.02 at d = 16,384 on a trainer's draws; wider at d = 2).
    """
    x_tau, x_i, x0_hat = (v.to(torch.promote_types(v.dtype, torch.float32)) for v in (x_tau, x_i, x0_hat))
    alpha_i, sigma_i = _alpha_sigma(schedule, t_i, x_i)
    alpha_tau, sigma_tau = _alpha_sigma(schedule, tau, x_i)
    ratio = alpha_tau / alpha_i
    beta = (sigma_tau ** 2 - (ratio * sigma_i) ** 2).clamp(min=1e-12).sqrt()
    xi = (x_tau - ratio * x_i) / beta if noise is None else noise.to(x_tau.dtype)
    if mode == "exact":
        d = x_tau[0].numel()
        log_proposal = (-0.5 * xi.flatten(1).square().sum(1) - d * torch.log(beta.flatten())
                        - 0.5 * d * math.log(2 * math.pi))
        return _gaussian_log_density(x_tau, alpha_tau * x0_hat, sigma_tau) - log_proposal
    if mode == "per_dim_mean":
        target = ((x_tau - alpha_tau * x0_hat) / sigma_tau).flatten(1).square().mean(1)
        return -0.5 * target + 0.5 * xi.flatten(1).square().mean(1)
    raise ValueError(f"unknown importance-weight mode {mode!r}; expected 'exact' or 'per_dim_mean'")


def importance_weight(schedule: NoiseSchedule, x_tau, x_i, x0_hat, t_i, tau, mode: str,
                      noise: torch.Tensor | None = None) -> torch.Tensor:
    """w = exp(log w) of `log_importance_weight`, in float32 or wider."""
    return log_importance_weight(schedule, x_tau, x_i, x0_hat, t_i, tau, mode, noise).exp()


def snr_cap_weight(schedule: NoiseSchedule, tau: torch.Tensor, cap: float, like: torch.Tensor) -> torch.Tensor:
    """min(SNR_tau, cap) per sample, SNR = alpha^2 / sigma^2: the official script's weight on the
    fake-score loss (cap 5, Min-SNR weighting). Eq. 7 itself leaves omega_tau unspecified."""
    alpha, sigma = schedule.alpha_sigma(tau, like)
    return (alpha / sigma).square().flatten().clamp(max=cap)


def fake_score_loss(x0_fake: torch.Tensor, x0_hat: torch.Tensor, weight: torch.Tensor | None = None,
                    omega: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 7: w * omega_tau * ||f_psi(x_tau, tau) - x0_hat||^2, mean over the batch (per-element mean inside)."""
    per_sample = (x0_fake - x0_hat.detach()).flatten(1).square().mean(1)
    if omega is not None:
        per_sample = per_sample * omega
    if weight is not None:
        per_sample = per_sample * weight.detach()
    return per_sample.mean()


def score_difference(x0_real: torch.Tensor, x0_fake: torch.Tensor) -> torch.Tensor:
    """s_phi - s_psi in x0 units: (x0_phi - x0_psi), which is sigma^2/alpha times the score difference."""
    return (x0_real - x0_fake).detach()


def dmd_normaliser(x0_hat: torch.Tensor, x0_real: torch.Tensor) -> torch.Tensor:
    """DMD's per-sample normaliser mean|x0_hat - x0_phi| (Appendix F.1), detached, shaped to broadcast."""
    w = (x0_hat.double() - x0_real.double()).abs().flatten(1).mean(1).clamp(min=1e-8)
    return w.to(x0_hat.dtype).view((-1,) + (1,) * (x0_hat.dim() - 1)).detach()


def reverse_kl_loss(x: torch.Tensor, delta: torch.Tensor, normaliser: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 6: ||x - sg(x~)||^2 with x~ = x + delta (/ normaliser); its gradient is -delta dx/dtheta."""
    step = delta if normaliser is None else delta / normaliser
    target = (x + step).detach()
    return 0.5 * (x - target).flatten(1).square().sum(1).mean()


def pseudo_huber_c(dim: int) -> float:
    """c = 0.00054 sqrt(d) (iCT; Sec. 3.3)."""
    return 0.00054 * math.sqrt(dim)


def pseudo_huber_loss(x: torch.Tensor, delta: torch.Tensor, c: float | None = None) -> torch.Tensor:
    """Eq. 11: sqrt(||x - sg(x~)||^2 + c^2) - c on the whole-sample norm, no normaliser (App. F.1).

    Its gradient is the score difference scaled by 1 / sqrt(||delta||^2 + c^2) (Eq. 12).
    """
    c = pseudo_huber_c(x[0].numel()) if c is None else c
    target = (x + delta).detach()
    return ((x - target).flatten(1).square().sum(1) + c ** 2).sqrt().sub(c).mean()


def pseudo_huber_script_loss(x: torch.Tensor, delta: torch.Tensor, normaliser: torch.Tensor,
                             c: float = 1e-3) -> torch.Tensor:
    """The official script's variant: elementwise Pseudo-Huber with c = 1e-3, divided by the DMD normaliser."""
    target = (x + delta).detach()
    return ((((x - target).square() + c ** 2).sqrt() - c) / normaliser).mean()


def fisher_loss(x0_real: torch.Tensor, x0_fake: torch.Tensor, x0_hat: torch.Tensor, alpha_sid: float,
                normaliser: torch.Tensor | None = None) -> torch.Tensor:
    """Fisher-divergence generator loss (Table 8, ref. [44]: Score identity Distillation):
    (1 - a) ||f_phi - f_psi||^2 + (f_phi - f_psi) . (f_psi - x0_hat).

    The paper names the divergence but not a. SiD uses a = 1.2; for a > 1 the first term is
    unbounded below, and on gmm the student exploits it (results/sweeps/fisher-alpha: 1.2 diverged
    on some of 5 seeds, 1.0 did not), so the config's default is 1.0.

    Unlike the reverse-KL losses, gradients reach the generator through both score networks'
    inputs, so x0_real and x0_fake must be computed with grad w.r.t. x_tau. x0_hat is what the
    fake score regresses to (Eq. 7), so it takes the place of SiD's generated sample.
    Each sample's loss is divided by the (detached) DMD normaliser when one is given.
    """
    diff = x0_real - x0_fake
    per_sample = (1 - alpha_sid) * diff.square() + diff * (x0_fake - x0_hat)
    if normaliser is not None:
        per_sample = per_sample / normaliser
    return per_sample.flatten(1).sum(1).mean()
