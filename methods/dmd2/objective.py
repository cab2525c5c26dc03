"""DMD2's two losses, as pure functions (tianweiy/DMD2 main/sd_guidance.py; DMD Eq. 7-8).

The networks answer in x0 (the denoiser contract of methods/common/adapters.py), so the fake
score's epsilon loss is taken on the epsilon its x0 prediction implies.
"""
from __future__ import annotations

import torch

from methods.common.schedule import x0_to_eps
from methods.tdm.objective import dmd_normaliser, score_difference


def dmd_gradient(x0: torch.Tensor, x0_real: torch.Tensor, x0_fake: torch.Tensor) -> torch.Tensor:
    """DMD's generator gradient at the clean sample x0: (x0_fake - x0_real) / mean|x0 - x0_real|, the
    score difference in x0 units over the per-sample normaliser TDM's "kl" loss shares (floored at
    1e-8 where DMD2 zeroes the non-finite entries a zero normaliser makes)."""
    return (-score_difference(x0_real, x0_fake) / dmd_normaliser(x0, x0_real)).detach()


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
