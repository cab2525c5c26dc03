"""DMD2's two losses, as pure functions (tianweiy/DMD2 main/sd_guidance.py; DMD Eq. 7-8).

The networks answer in x0 (the denoiser contract of methods/common/adapters.py), so the fake
score's epsilon loss is taken on the epsilon its x0 prediction implies.
"""
from __future__ import annotations

import torch

from methods.common.schedule import x0_to_eps


def dmd_gradient(x0: torch.Tensor, x0_real: torch.Tensor, x0_fake: torch.Tensor) -> torch.Tensor:
    """DMD's generator gradient at the clean sample x0: (x0_fake - x0_real) / mean|x0 - x0_real|, the
    score difference in x0 units normalised per sample (non-finite entries set to 0, as DMD2 does)."""
    normaliser = (x0.double() - x0_real.double()).abs().flatten(1).mean(1)
    grad = (x0_fake.double() - x0_real.double()) / normaliser.view((-1,) + (1,) * (x0.dim() - 1))
    return torch.nan_to_num(grad).to(x0.dtype).detach()


def distribution_matching_loss(x0: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """0.5 ||x0 - sg(x0 - grad)||^2, averaged over every element (DMD2's mse_loss): its gradient in
    x0 is grad / numel."""
    return 0.5 * (x0.float() - (x0 - grad).detach().float()).square().mean()


def fake_score_loss(x0_fake: torch.Tensor, x_tau: torch.Tensor, eps: torch.Tensor, alpha: torch.Tensor,
                    sigma: torch.Tensor) -> torch.Tensor:
    """Denoising score matching in epsilon: mean (eps_hat - eps)^2 over every element, eps_hat the
    noise that the fake score's x0 prediction implies at x_tau."""
    eps_hat = x0_to_eps(x_tau, x0_fake, alpha, sigma)
    return (eps_hat.float() - eps.float()).square().mean()
