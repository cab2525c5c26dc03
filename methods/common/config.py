"""What every distillation method's configuration shares: the student's step counts and
timesteps, the teacher's guidance, the two optimisers (student and fake score) and the batch.

Each method's frozen dataclass (methods/tdm/config.py's TDMConfig, methods/dmd2/config.py's
DMD2Config) extends `DistillConfig` with its own fields and may change a default; the training
loop (methods/tdm/train.py) and the backbones read only these shared fields.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

LR_SCHEDULES = ("constant", "cosine_with_restarts")
ALLOWED_STEPS = (1, 2, 3, 4, 5, 6, 8)  # K must divide the schedule into intervals of >= 125 timesteps


@dataclass(frozen=True)
class DistillConfig:
    steps: tuple[int, ...] = (4,)        # K; several values = TDM-unify, K drawn uniformly (Eq. 8)
    guidance: float = 3.5                # teacher CFG scale (App. D: 3.5 for SD-1.5 and PixArt, 8 for SDXL)
    lr_student: float = 2e-6             # App. D, SD-1.5
    lr_fake: float = 2e-5                # App. D, SD-1.5
    adam_betas: tuple[float, float] = (0.0, 0.999)  # App. D: beta1 = 0
    grad_clip: float = 1.0               # the student's gradient-norm clip (App. D); 0: none
    grad_clip_fake: float = 1.0          # the fake score's (App. D: both networks); 0: none (script)
    weight_decay: float = 0.0            # AdamW's decoupled weight decay, both networks (App. D names none; script 1e-2)
    lr_schedule: str = "constant"        # the student's learning rate: "constant" | "cosine_with_restarts" (script;
                                         # diffusers' get_scheduler, one cycle); the fake score's stays constant
    lr_warmup: int = 0                   # the student's linear warm-up from 0, in iterations (script: 50)
    lr_horizon: int = 0                  # iterations the schedule spans; 0: the run's (script: its max_train_steps, 10001)
    batch_size: int = 256                # App. D, SD-1.5
    num_train_timesteps: int = 1000      # T
    step_conditioning: bool = True       # inject K into student and fake score (Eq. 8); False: Table 5 ablation
    timesteps: tuple[int, ...] = ()      # the student's K timesteps, noise first, strictly decreasing in [1, T - 1]
                                         # (one K only, not TDM-unify); (): b_k = kT/K - 1, e.g. 999, 749, 499, 249.
                                         # TDM: the segments' bounds and tau intervals follow them

    def __post_init__(self):
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        bad = [K for K in self.steps if K not in ALLOWED_STEPS]
        if not self.steps or bad:
            raise ValueError(f"steps must be a non-empty list drawn from {list(ALLOWED_STEPS)}, got {list(self.steps)}")
        for name in ("lr_student", "lr_fake"):
            check_positive(name, getattr(self, name))
        for name in ("grad_clip", "grad_clip_fake", "weight_decay"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be 0 or more, got {value}")
        for name in ("lr_warmup", "lr_horizon"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more, got {getattr(self, name)}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if not (self.guidance >= 0 and math.isfinite(self.guidance)):
            raise ValueError(f"guidance must be 0 or more (1: no guidance), got {self.guidance}")
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            raise ValueError(f"adam_betas must be two numbers in [0, 1), got {list(self.adam_betas)}")
        if self.num_train_timesteps < 8 * max(self.steps):
            raise ValueError(f"num_train_timesteps must be at least 8 K = {8 * max(self.steps)}, "
                             f"got {self.num_train_timesteps}")
        if self.timesteps:
            self._check_timesteps()

    def _check_timesteps(self) -> None:
        """Explicit student timesteps: one list for the one K (a method adds its own rules)."""
        if not isinstance(self.timesteps, tuple):  # a list from Python code: stored as the field's tuple
            object.__setattr__(self, "timesteps", tuple(self.timesteps))
        if self.unify:
            raise ValueError(f"timesteps={list(self.timesteps)} fixes the timesteps of one step count, but "
                             f"steps={list(self.steps)} trains several (TDM-unify): set one K or timesteps=()")

    @property
    def unify(self) -> bool:
        """Several step counts, drawn uniformly per iteration (TDM-unify, Eq. 8)."""
        return len(self.steps) > 1

    @property
    def conditioned(self) -> bool:
        """Whether the trained networks take an extra condition through `time_cond_proj_dim`: K for
        TDM-unify with step conditioning (Eq. 8); LCM's guidance scale w always."""
        return self.unify and self.step_conditioning


def check_positive(name: str, value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive number, got {value}")


def check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
