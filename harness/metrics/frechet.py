"""The Frechet distance of two Gaussians fitted to two feature sets, in float64.

    FD = ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2})

mu is the feature mean and S the unbiased (n - 1) sample covariance. Tr((S_a S_b)^{1/2}) is the
sum of the square roots of the eigenvalues of S_a^{1/2} S_b S_a^{1/2}, which has the eigenvalues
of S_a S_b and is symmetric, so `eigh` computes it stably; there is no general matrix square
root (scipy's `sqrtm`, which clean-fid uses) and no complex part to drop. With n <= d rows a
covariance is singular; the formula stays defined (negative round-off eigenvalues are clamped to 0).

Both FID (harness.metrics.fid) and the small world's fd_* (harness.metrics.world) use it.
"""
from __future__ import annotations

import numpy as np
import torch


def _float64(x, device=None) -> torch.Tensor:
    """A float64 tensor; a tensor stays on its device (the world's features may be on a GPU)."""
    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t.to(device=device, dtype=torch.float64)


def _statistics(features) -> tuple[torch.Tensor, torch.Tensor]:
    x = _float64(features)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"statistics need an (n, d) array with n >= 2, got shape {tuple(x.shape)}")
    return x.mean(0), torch.cov(x.T).reshape(x.shape[1], x.shape[1])


def statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """(n, d) features (numpy or torch) -> (mean (d,), unbiased covariance (d, d)), float64 numpy."""
    mu, cov = _statistics(features)
    return mu.cpu().numpy(), cov.cpu().numpy()


def frechet_from_statistics(mu_a, cov_a, mu_b, cov_b) -> float:
    """The Frechet distance of N(mu_a, cov_a) and N(mu_b, cov_b), computed in float64 on mu_a's device."""
    device = mu_a.device if isinstance(mu_a, torch.Tensor) else None
    mu_a, mu_b, cov_a, cov_b = (_float64(v, device) for v in (mu_a, mu_b, cov_a, cov_b))
    if mu_a.ndim != 1 or mu_a.shape != mu_b.shape or cov_a.shape != cov_b.shape or cov_a.shape != mu_a.shape * 2:
        raise ValueError(f"mismatched statistics: means {tuple(mu_a.shape)}, {tuple(mu_b.shape)}; "
                         f"covariances {tuple(cov_a.shape)}, {tuple(cov_b.shape)}")
    eigval_a, eigvec_a = torch.linalg.eigh(cov_a)
    sqrt_a = eigvec_a @ torch.diag(eigval_a.clamp(min=0).sqrt()) @ eigvec_a.T
    cross = torch.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a).clamp(min=0).sqrt().sum()
    return float((mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * cross)


def frechet_distance(features_a, features_b) -> float:
    """The Frechet distance of Gaussians fitted to two (n, d) feature sets (numpy or torch; the
    computation runs on features_a's device, as the world's metrics always did)."""
    return frechet_from_statistics(*_statistics(features_a), *_statistics(features_b))
