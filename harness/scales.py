"""How big a grid cell is: training length, batch and evaluation size, per world.

    full      the world presets as tuned (methods/tdm/presets.py); what the committed results use.
              Its budgets are where TDM-4step's convergence curve levels off, the same for every
              variant (App. F.1): 500 iterations on tiny-sd15, 4500 on gmm; the curves, TDM-unify's
              beside them, are results/sweeps/budget-{4step,unify}/<world>.{csv,png}. On
              tiny-cogvideox (Table 4) 1000 iterations at batch 128, a first guess not yet measured
              for convergence (methods/tdm/presets.py), and the judge's full evaluation (256 prompts,
              8 x 16 coverage clips): about 3.5 minutes per seed on an H200, 11 for three seeds
    reduced   fits a table on a 2-core CPU in minutes; its numbers show the pipeline works,
              not which variant is better
    smoke     a few iterations with raised learning rates, so that a change in the objective
              moves the metrics: the CI regression test. On tiny-cogvideox two iterations at batch
              2 and the judge's smallest evaluation (2 prompts, 2 x 2 coverage clips): the path only

A result records its scale, and results of different scales live in different folders
(`results/<table>/<world>` for full, `<world>-<scale>` otherwise), so they never mix.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from methods.common.errors import UserError


@dataclass(frozen=True)
class Scale:
    name: str
    train: dict = field(default_factory=dict)   # world -> overrides of the training preset
    eval: dict = field(default_factory=dict)    # world -> overrides of the world's evaluation config
    seeds: tuple[int, ...] = (0,)                # default training seeds per cell

    def folder(self, world: str) -> str:
        return world if self.name == "full" else f"{world}-{self.name}"


SCALES = {s.name: s for s in [
    Scale("full", seeds=(0, 1, 2)),
    Scale("reduced",
          train={"tiny-sd15": dict(iterations=80, batch_size=32, lr_student=2e-5, lr_fake=8e-4, checkpoint_every=20),
                 "gmm": dict(iterations=400, checkpoint_every=100),
                 # about 3 minutes for Table 4 on a 2-core CPU (3 min 14 s on 2026-12-04)
                 "tiny-cogvideox": dict(iterations=40, batch_size=16, lr_student=5e-5, lr_fake=5e-4,
                                        checkpoint_every=20)},
          eval={"tiny-sd15": dict(n_prompts=128, coverage_prompts=8, coverage_samples=8),
                "gmm": dict(n_samples=2000), "real": dict(prompts_per_style=100),
                "tiny-cogvideox": dict(n_prompts=32, coverage_prompts=4, coverage_samples=4)}),
    Scale("smoke",
          train={"tiny-sd15": dict(iterations=6, batch_size=8, lr_student=1e-4, lr_fake=1e-3, checkpoint_every=3),
                 "gmm": dict(iterations=60, checkpoint_every=20),
                 "tiny-cogvideox": dict(iterations=2, batch_size=2, lr_student=1e-4, lr_fake=1e-3, checkpoint_every=2)},
          eval={"tiny-sd15": dict(n_prompts=32, coverage_prompts=4, coverage_samples=4),
                "gmm": dict(n_samples=1000), "real": dict(prompts_per_style=2),
                "tiny-cogvideox": dict(n_prompts=2, coverage_prompts=2, coverage_samples=2)}),
]}


def get_scale(name: str) -> Scale:
    if name not in SCALES:
        raise UserError(f"unknown scale {name!r}; expected one of {', '.join(SCALES)}")
    return SCALES[name]
