"""DMD2's configuration: the settings every method shares (methods/common/config.py) and DMD2's own.

The shared defaults are TDM's (App. D): the TDM paper re-trains DMD2 with "the fake score updated 10
times per iteration; other hyper-parameters consistent with our configuration" (App. F.1). DMD2's own
code differs: AdamW betas (0.9, 0.999) and weight decay 0.01 for both networks with a constant
learning rate after a warm-up (main/train_sd.py), clipping at 10 and CFG 1.75 for SD-1.5
(experiments/sdv1.5). Its multi-step generators (backward simulation) are trained for SDXL only; on
SD-1.5 it trains one step, so a 4-step SD-1.5 DMD2 takes the SDXL recipe's mechanism, as here.
Each of those is a field: `key=value` or a preset sets it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from methods.common.config import DistillConfig


@dataclass(frozen=True)
class DMD2Config(DistillConfig):
    name: ClassVar[str] = "dmd2"         # the method (methods/common/method.py) this config belongs to
    generator_every: int = 10            # two time-scale update rule: the fake score is updated every iteration,
                                         # the generator on the last of every this many (DMD2: 10 for SD-1.5, 5 for
                                         # SDXL; TDM App. F.1: "10 times per iteration"). An iteration is one
                                         # fake-score update
    tau_min: float = 0.02                # the distribution-matching loss diffuses the student's sample to tau drawn
    tau_max: float = 0.98                # uniformly from [tau_min T, tau_max T] (DMD2's min/max_step_percent)
    step_conditioning: bool = False      # DMD2 trains one K and tells the student nothing but the timestep

    def __post_init__(self):
        super().__post_init__()
        if self.unify:
            raise ValueError(f"DMD2 trains one step count, got steps={list(self.steps)}")
        if self.generator_every < 1:
            raise ValueError(f"generator_every must be at least 1, got {self.generator_every}")
        if not (0 <= self.tau_min < self.tau_max <= 1 and math.isfinite(self.tau_max)):
            raise ValueError(f"need 0 <= tau_min < tau_max <= 1, got tau_min={self.tau_min}, tau_max={self.tau_max}")

    def _check_timesteps(self) -> None:
        from methods.tdm.objective import check_student_timesteps

        super()._check_timesteps()
        check_student_timesteps(self.timesteps, self.steps[0], self.num_train_timesteps)

    def tau_bounds(self) -> tuple[int, int]:
        """[lo, hi] of the distribution-matching loss's timestep, inclusive: DMD2's int(0.02 T) .. int(0.98 T)."""
        T = self.num_train_timesteps
        return int(self.tau_min * T), min(int(self.tau_max * T), T - 1)
