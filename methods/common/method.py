"""The distillation methods that share the training loop (methods/tdm/train.py), by name.

A method is the part of a run that is its algorithm: its config class, the random numbers of an
iteration (drawn per global batch from the iteration's generator, so one process and N agree and
a resumed run repeats itself), one iteration's updates of the roles it trains, whether it learns
from captioned images, and the scheduler and guidance scale its exported student is sampled with.
Everything else — backbones, accelerate, mixed precision, checkpoints and resume, FLOPs, logs, the
data workers and the export's pipeline folder — is the loop's, and serves every method alike.

    METHODS = {"tdm": ..., "dmd2": ..., "lcm": ...}
    method = get_method("dmd2")          # UserError with did-you-mean for an unknown name

Adding a method: a `config.py` (a frozen dataclass extending methods.common.config.DistillConfig
with `name` set), a `method.py` with a class of the `Method` shape below (subclass `MethodBase` for
its defaults), presets, a test, and one line in METHODS.
"""
from __future__ import annotations

import importlib
from typing import Protocol

from .errors import UserError, did_you_mean

# name -> "module:Class"; imported on first use, so that naming a method costs nothing.
METHODS = {
    "tdm": "methods.tdm.method:TDM",
    "dmd2": "methods.dmd2.method:DMD2",
    "lcm": "methods.lcm.method:LCM",
}


class Method(Protocol):
    name: str              # as in METHODS
    title: str             # as papers and cards write it ("TDM", "DMD2")
    config_class: type     # its frozen config dataclass (extends DistillConfig)
    cuda_graphs: bool      # whether its iterations may be captured (execution="cuda_graph")
    solver: str            # how the small worlds' evaluation samples its students (baselines.tdm_student)
    trained: tuple         # the roles with an optimiser, in checkpoint order (model.safetensors, model_1, ...);
                           # the backbone's other trainable copies are held and checkpointed (LCM's EMA target)
    needs_data: bool       # whether an iteration learns from captioned images (train_step's `data`: latents)
    folds_condition: bool  # whether the export folds a time_cond_proj_dim condition away (TDM-unify's K);
                           # LCM keeps its guidance-scale input

    def check(self, config) -> None:
        """UserError for a TrainConfig this method cannot run (a backbone, an option)."""

    def draw(self, config, rng, step: int, K: int, shape: tuple[int, ...]):
        """Every random number of iteration `step` after its batch, for this process's rows: an object
        with `.to(device, non_blocking)`, `.pin_memory()` and `.graph_key` (what fixes its shapes)."""

    def rollout(self, config, accelerator, execution: str) -> str:
        """How the iteration's roll-out picks its rows (TDM's StepOptions.rollout); methods without one
        return "every_row"."""

    def train_step(self, cfg, roles, optimisers: dict, noise, cond, uncond, draws, K: int, step_cond=None,
                   accelerator=None, options=None, data=None) -> dict:
        """One iteration's updates; the detached losses of this process's rows by role."""

    def export_scheduler(self, scheduler_config: dict):
        """The diffusers scheduler an exported student folder samples with, from the teacher's config."""

    def sampling_guidance(self, cfg) -> float:
        """The guidance_scale its exported students are sampled with (1: CFG distilled into the student)."""

    def sampling_timesteps(self, cfg, K: int) -> list[int] | None:
        """The timesteps a K-step student is sampled on, when `pipe(..., timesteps=[...])` must pass them;
        None when the exported scheduler's own K-step spacing is the trained one."""


class MethodBase:
    """The defaults of the `Method` shape, which a method overrides where it differs: a student and a fake
    score trained, no data, eager until its graphs are checked on a GPU, one micro-batch, every row
    rolled out, and CFG distilled into an exported student that samples on its scheduler's own timesteps."""
    cuda_graphs = False
    trained = ("student", "fake_score")
    needs_data = False
    folds_condition = True
    backbones: tuple = ()  # the backbones it trains (TrainConfig.backbone); (): every one
    accumulates = False    # whether its train_step splits the batch into micro-batches (grad_accumulation)

    def check(self, config) -> None:
        if self.backbones and config.backbone not in self.backbones:
            raise UserError(f"{self.title} trains the backbones {', '.join(self.backbones)}; "
                            f"got backbone={config.backbone}")
        if config.grad_accumulation != 1 and not self.accumulates:
            raise UserError(f"{self.title} has no gradient accumulation yet: set grad_accumulation=1")

    def rollout(self, config, accelerator, execution: str) -> str:
        return "every_row"

    def sampling_guidance(self, cfg) -> float:
        return 1.0  # CFG is distilled into the student

    def sampling_timesteps(self, cfg, K: int) -> list[int] | None:
        return None


def get_method(name: str) -> Method:
    """The registered method `name` (an instance)."""
    if name not in METHODS:
        raise UserError(f"unknown method {name!r}{did_you_mean(name, METHODS)} (known: {', '.join(METHODS)})")
    module, _, attribute = METHODS[name].partition(":")
    return getattr(importlib.import_module(module), attribute)()
