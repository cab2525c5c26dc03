"""Noise schedules and the conversions between epsilon, x0 and v.

The forward process is x_t = alpha_t x0 + sigma_t eps with alpha_t^2 + sigma_t^2 = 1
(variance preserving, discrete t in 0..T-1), as in every diffusers scheduler the paper's
backbones use.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class NoiseSchedule:
    alphas_cumprod: torch.Tensor  # (T,), float64
    # alphas_cumprod per device, copied once: a copy per call would be a host-to-device
    # transfer in every solver step, which a CUDA graph cannot capture.
    _on_device: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    @classmethod
    def from_scheduler(cls, scheduler) -> "NoiseSchedule":
        """Any diffusers scheduler instance; its own alphas_cumprod (CogVideoX's SNR shift included)."""
        return cls(scheduler.alphas_cumprod.detach().to(torch.float64).cpu())

    @classmethod
    def from_config(cls, config: dict) -> "NoiseSchedule":
        """A scheduler config dict; its `_class_name` picks the class (DDPM when absent)."""
        import diffusers

        name = config.get("_class_name", "DDPMScheduler")
        return cls.from_scheduler(getattr(diffusers, name).from_config(config))

    @property
    def num_train_timesteps(self) -> int:
        return len(self.alphas_cumprod)

    def alpha_sigma(self, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """alpha_t and sigma_t for integer timesteps t (n,), shaped to broadcast against `like`."""
        ac = self.on(like.device)[t.long().to(like.device)]
        shape = (-1,) + (1,) * (like.dim() - 1)
        return ac.sqrt().to(like.dtype).view(shape), (1 - ac).sqrt().to(like.dtype).view(shape)

    def on(self, device: torch.device) -> torch.Tensor:
        """alphas_cumprod on `device` (cached)."""
        if device not in self._on_device:
            self._on_device[device] = self.alphas_cumprod.to(device)
        return self._on_device[device]

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        ac = self.alphas_cumprod[t.long().cpu()]
        return ac / (1 - ac)

    def add_noise(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha, sigma = self.alpha_sigma(t, x0)
        return alpha * x0 + sigma * eps


def eps_to_x0(x_t, eps, alpha, sigma):
    return (x_t - sigma * eps) / alpha


def x0_to_eps(x_t, x0, alpha, sigma):
    return (x_t - alpha * x0) / sigma


def v_to_x0(x_t, v, alpha, sigma):
    # v = alpha eps - sigma x0  (Salimans & Ho), so x0 = alpha x_t - sigma v
    return alpha * x_t - sigma * v


def v_to_eps(x_t, v, alpha, sigma):
    return sigma * x_t + alpha * v


def to_v(x0, eps, alpha, sigma):
    return alpha * eps - sigma * x0
