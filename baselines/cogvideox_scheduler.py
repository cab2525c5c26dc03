"""DDIM for CogVideoX on an explicit list of timesteps.

The released TDM CogVideoX-2B LoRA was trained on the timesteps [999, 856, 665, 399] and is
sampled on them. diffusers' `CogVideoXDDIMScheduler` neither takes a `timesteps=` list nor steps
along one: its step goes from t to t - 1000 / N whatever the schedule (diffusers PR #13125), so
999 would step to 749, not 856. This subclass keeps CogVideoX-2b's schedule (v-prediction, zero
terminal SNR, SNR shift) and steps from each listed timestep to the next; after the last it
returns the clean estimate. The update is CogVideoX's deterministic DDIM written on x and x0,
x_prev = (sigma_prev / sigma_t) x_t + (alpha_prev - alpha_t sigma_prev / sigma_t) x0_hat,
which never divides by alpha (zero at t = 999).
"""
from __future__ import annotations

import torch
from diffusers import CogVideoXDDIMScheduler
from diffusers.schedulers.scheduling_ddim import DDIMSchedulerOutput


class CogVideoXTimestepsDDIMScheduler(CogVideoXDDIMScheduler):
    def set_timesteps(self, num_inference_steps: int | None = None, device=None, timesteps: list[int] | None = None):
        if timesteps is None:
            return super().set_timesteps(num_inference_steps, device)
        if any(a <= b for a, b in zip(timesteps, timesteps[1:])) or not 0 <= timesteps[-1] < timesteps[0] + 1 <= 1000:
            raise ValueError(f"timesteps must decrease within [0, 999], got {list(timesteps)}")
        self.timesteps = torch.tensor(timesteps, dtype=torch.long, device=device)
        self.num_inference_steps = len(timesteps)

    def _previous(self, timestep: int) -> int:
        listed = [int(t) for t in self.timesteps]
        i = listed.index(int(timestep))
        return listed[i + 1] if i + 1 < len(listed) else -1

    def step(self, model_output: torch.Tensor, timestep: int, sample: torch.Tensor, eta: float = 0.0,
             use_clipped_model_output: bool = False, generator=None, variance_noise=None, return_dict: bool = True):
        if eta != 0.0:
            raise ValueError("CogVideoXTimestepsDDIMScheduler is deterministic DDIM: eta must be 0")
        t, prev = int(timestep), self._previous(timestep)
        alpha_bar = self.alphas_cumprod[t]
        alpha_bar_prev = self.alphas_cumprod[prev] if prev >= 0 else self.final_alpha_cumprod
        if self.config.prediction_type == "v_prediction":
            x0_hat = alpha_bar ** 0.5 * sample - (1 - alpha_bar) ** 0.5 * model_output
        elif self.config.prediction_type == "epsilon":
            x0_hat = (sample - (1 - alpha_bar) ** 0.5 * model_output) / alpha_bar ** 0.5
        elif self.config.prediction_type == "sample":
            x0_hat = model_output
        else:
            raise ValueError(f"unknown prediction_type {self.config.prediction_type!r}")
        ratio = ((1 - alpha_bar_prev) / (1 - alpha_bar)) ** 0.5  # sigma_prev / sigma_t
        prev_sample = ratio * sample + (alpha_bar_prev ** 0.5 - alpha_bar ** 0.5 * ratio) * x0_hat
        if not return_dict:
            return prev_sample, x0_hat
        return DDIMSchedulerOutput(prev_sample=prev_sample, pred_original_sample=x0_hat)
