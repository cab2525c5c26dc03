"""The gmm world: a class-conditional Gaussian mixture whose diffused score is exact.

For class c the data are a mixture of isotropic Gaussians N(mu_m, s_m^2 I) with weights w_m.
Diffused to timestep t (x_t = alpha_t x0 + sigma_t eps) each component stays Gaussian,
N(alpha_t mu_m, (alpha_t^2 s_m^2 + sigma_t^2) I), so the posterior mean E[x0 | x_t] -- the
ideal denoiser -- is known in closed form. `ExactDenoiser` wraps it in the same contract as
a network adapter (`x0(x_t, t, cond)`), so the TDM objective can be checked against the truth.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from methods.common.schedule import NoiseSchedule

UNCONDITIONAL = -1  # class label for the unconditional model (all classes, equal prior)


@dataclass(frozen=True)
class GaussianMixture:
    means: torch.Tensor    # (C, M, d)
    stds: torch.Tensor     # (C, M)
    weights: torch.Tensor  # (C, M), rows sum to 1

    @property
    def classes(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[2]

    @classmethod
    def default(cls, dim: int = 2, classes: int = 2, modes: int = 4, seed: int = 0) -> "GaussianMixture":
        """Modes on a circle of radius 2 (rotated per class), std 0.15, equal weights."""
        angles = torch.arange(modes) * 2 * math.pi / modes
        means = torch.zeros(classes, modes, dim, dtype=torch.float64)
        for c in range(classes):
            phase = angles + c * math.pi / modes
            means[c, :, 0], means[c, :, 1] = 2 * torch.cos(phase), 2 * torch.sin(phase)
        return cls(means, torch.full((classes, modes), 0.15, dtype=torch.float64),
                   torch.full((classes, modes), 1.0 / modes, dtype=torch.float64))

    def _components(self, labels: torch.Tensor):
        """Per-sample component parameters; the unconditional label mixes all classes."""
        c, m, d = self.means.shape
        all_means = self.means.reshape(1, c * m, d)
        all_stds, all_w = self.stds.reshape(1, c * m), self.weights.reshape(1, c * m) / c
        cond = labels.clamp(min=0)
        means = torch.where((labels < 0)[:, None, None], all_means, self._pad(self.means)[cond])
        stds = torch.where((labels < 0)[:, None], all_stds, self._pad(self.stds)[cond])
        weights = torch.where((labels < 0)[:, None], all_w, self._pad(self.weights)[cond])
        return means, stds, weights

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        """Pad the component axis to C*M (zero weight) so conditional and unconditional rows stack."""
        c, m = x.shape[:2]
        pad = torch.zeros((c, c * m - m) + x.shape[2:], dtype=x.dtype)
        return torch.cat([x, pad], dim=1)

    def sample(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        means, stds, weights = self._components(labels)
        k = torch.multinomial(weights, 1, generator=generator).squeeze(1)
        idx = torch.arange(len(labels))
        noise = torch.randn(len(labels), means.shape[-1], generator=generator, dtype=means.dtype)
        return means[idx, k] + stds[idx, k, None] * noise

    def log_prob(self, x: torch.Tensor, labels: torch.Tensor, alpha=1.0, sigma=0.0) -> torch.Tensor:
        """log p_t(x | label) of the mixture diffused to (alpha, sigma); (alpha, sigma) = (1, 0) is the data."""
        means, stds, weights = self._components(labels)
        a = torch.as_tensor(alpha, dtype=x.dtype).reshape(-1, 1)                 # (n or 1, 1)
        var = (a * stds) ** 2 + torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, 1) ** 2  # (n, K)
        var = var.clamp(min=1e-12)  # padded components have std 0 and weight 0; keep them finite
        d = x.shape[-1]
        sq = (x[:, None, :] - a[..., None] * means).square().sum(-1)             # (n, K)
        log_comp = -0.5 * sq / var - 0.5 * d * torch.log(2 * math.pi * var)
        return torch.logsumexp(log_comp + torch.log(weights.clamp(min=1e-300)), dim=1)

    def posterior_mean(self, x_t: torch.Tensor, labels: torch.Tensor, alpha: torch.Tensor,
                       sigma: torch.Tensor) -> torch.Tensor:
        """E[x0 | x_t]: responsibilities times each component's Gaussian posterior mean."""
        means, stds, weights = self._components(labels)
        a, s = alpha.view(-1, 1), sigma.view(-1, 1)
        var = (a * stds) ** 2 + s ** 2
        sq = (x_t[:, None, :] - a[..., None] * means).square().sum(-1)
        log_r = -0.5 * sq / var - 0.5 * x_t.shape[-1] * torch.log(var) + torch.log(weights.clamp(min=1e-300))
        r = torch.softmax(log_r, dim=1)
        gain = (a * stds ** 2 / var)[..., None]                                  # (n, K, 1)
        comp_mean = means + gain * (x_t[:, None, :] - a[..., None] * means)
        return (r[..., None] * comp_mean).sum(1)


class ExactDenoiser:
    """The mixture's ideal denoiser behind the adapter contract: x0(x_t, t, cond)."""

    def __init__(self, mixture: GaussianMixture, schedule: NoiseSchedule):
        self.mixture, self.schedule = mixture, schedule

    def x0(self, x_t, t, cond, step_cond=None):
        alpha, sigma = self.schedule.alpha_sigma(t, x_t)
        x0 = self.mixture.posterior_mean(x_t.double(), cond["class"], alpha.double().flatten(), sigma.double().flatten())
        return x0.to(x_t.dtype)

    def eps(self, x_t, t, cond, step_cond=None):
        alpha, sigma = self.schedule.alpha_sigma(t, x_t)
        return (x_t - alpha * self.x0(x_t, t, cond)) / sigma


def sd15_schedule() -> NoiseSchedule:
    """The schedule of the image worlds (SD-1.5's), used by gmm too so intervals mean the same."""
    from harness.worlds.tiny_sd15.models import SD15_SCHEDULER_CONFIG

    return NoiseSchedule.from_config(SD15_SCHEDULER_CONFIG)


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, projections: int = 128, seed: int = 0) -> float:
    """Sliced 1-Wasserstein distance between two equal-size samples (mean over random directions)."""
    g = torch.Generator().manual_seed(seed)
    directions = torch.randn(a.shape[1], projections, generator=g, dtype=torch.float64)
    directions = directions / directions.norm(dim=0, keepdim=True)
    pa, _ = (a.double() @ directions).sort(0)
    pb, _ = (b.double() @ directions).sort(0)
    return float((pa - pb).abs().mean())


STEP_FEATURES = 8  # of the 256-dim step embedding (Eq. 8), every 32nd: one per frequency band


class ResidualStudent(torch.nn.Module):
    """Exact teacher plus a zero-initialised MLP correction: starts equal to the teacher, as
    Algorithm 1 initialises student and fake score (line 1). The MLP sees x_t, t, the class
    and, for TDM-unify with step conditioning, K's embedding (zeros otherwise)."""

    def __init__(self, teacher: ExactDenoiser, classes: int, dim: int = 2, width: int = 128):
        super().__init__()
        self.teacher, self.classes = teacher, classes
        self.schedule = teacher.schedule
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(dim + 1 + classes + 1 + STEP_FEATURES, width), torch.nn.SiLU(),
            torch.nn.Linear(width, width), torch.nn.SiLU(), torch.nn.Linear(width, dim))
        torch.nn.init.zeros_(self.mlp[-1].weight)
        torch.nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, x_t, t, cond, step_cond=None):
        """The denoiser's x0; also reachable as `forward` so DDP's gradient hooks see the call."""
        return self.x0(x_t, t, cond, step_cond)

    def x0(self, x_t, t, cond, step_cond=None):
        onehot = torch.nn.functional.one_hot(cond["class"].clamp(min=-1) + 1, self.classes + 1).to(x_t.dtype)
        steps = (torch.zeros(len(x_t), STEP_FEATURES, dtype=x_t.dtype, device=x_t.device) if step_cond is None
                 else step_cond[:, ::step_cond.shape[1] // STEP_FEATURES].to(x_t.dtype))
        features = torch.cat([x_t, (t.to(x_t.dtype) / 1000)[:, None], onehot, steps], dim=1)
        return self.teacher.x0(x_t, t, cond) + self.mlp(features)
