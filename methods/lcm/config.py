"""LCM's configuration: the settings every method shares (methods/common/config.py) and LCM's own,
with the defaults of diffusers' examples/consistency_distillation/train_lcm_distill_sd_wds.py where it
states them (the reference implementation; the LCM paper gives few)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from methods.common.config import DistillConfig, check_choice

LOSSES = ("huber", "l2")


@dataclass(frozen=True)
class LCMConfig(DistillConfig):
    name: ClassVar[str] = "lcm"          # the method (methods/common/method.py) this config belongs to
    num_ddim_timesteps: int = 50         # the DDIM skeleton the teacher's solver steps on: skip k = T / 50 = 20
    w_min: float = 5.0                   # the guidance scale w drawn per sample, uniform in [w_min, w_max]; the
    w_max: float = 15.0                  # teacher's CFG is x0_c + w (x0_c - x0_u), i.e. scale w + 1 (diffusers' 5, 15)
    sample_guidance: float = 8.0         # the guidance_scale (w + 1) the exported student is sampled with
    ema_decay: float = 0.95              # the target network: an exponential moving average of the student
    loss: str = "huber"                  # "huber": sqrt(d^2 + c^2) - c per element | "l2"
    huber_c: float = 0.001
    timestep_scaling: float = 10.0       # boundary conditions c_skip, c_out at 10 t, sigma_data 0.5
    adam_betas: tuple[float, float] = (0.9, 0.999)
    lr_student: float = 1e-6             # diffusers' full-model rate
    step_conditioning: bool = False      # not K: LCM's condition is w, always (see `conditioned`)

    def __post_init__(self):
        super().__post_init__()
        check_choice("loss", self.loss, LOSSES)
        if self.unify:
            raise ValueError(f"LCM trains one student for every step count; give one K, got steps={list(self.steps)}")
        if self.num_train_timesteps % self.num_ddim_timesteps:
            raise ValueError(f"num_ddim_timesteps={self.num_ddim_timesteps} must divide T={self.num_train_timesteps}")
        if not (0 <= self.w_min <= self.w_max and math.isfinite(self.w_max)):
            raise ValueError(f"need 0 <= w_min <= w_max, got {self.w_min}, {self.w_max}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not self.sample_guidance >= 1:
            raise ValueError(f"sample_guidance is w + 1, at least 1; got {self.sample_guidance}")

    @property
    def conditioned(self) -> bool:
        return True  # the student and its target take w through time_cond_proj_dim

    @property
    def skip(self) -> int:
        """k: the teacher's one DDIM step spans this many training timesteps."""
        return self.num_train_timesteps // self.num_ddim_timesteps
