"""TDM as a method of the shared training loop (methods/common/method.py): Algorithm 1's
iteration (trainer.py), its draws (randomness.py) and its export's scheduler."""
from __future__ import annotations

from methods.common.method import MethodBase

from .config import TDMConfig
from .randomness import draw_iteration
from .trainer import StepOptions, train_step


class TDM(MethodBase):
    name = "tdm"
    title = "TDM"
    config_class = TDMConfig
    cuda_graphs = True
    solver = "dpmpp"  # the paper's test solver for its TDM numbers (Table 6)
    accumulates = True  # every backbone and option of TrainConfig runs TDM
    folds_condition = True  # TDM-unify's K: one plain UNet per K

    def draw(self, config, rng, step: int, K: int, shape: tuple[int, ...]):
        method = config.method
        return draw_iteration(rng, K, method.fake_updates, shape,
                              fresh_generator_segment=method.generator_segment == "fresh",
                              stratified=method.segments == "stratified")

    def rollout(self, config, accelerator, execution: str) -> str:
        """How the roll-out picks its rows (trainer.StepOptions.rollout); every choice computes the same.

        Stratified segments let it run only the rows each step needs in shapes fixed by K, which every
        execution takes. Otherwise rolling out only those rows lets shapes vary with the draw: not
        under CUDA graphs (fixed shapes), compilation (a recompilation per shape) or FSDP (every
        process must make the same calls).
        """
        from accelerate.utils import DistributedType

        method = config.method
        if config.rollout == "every_row":
            return "every_row"
        local_rows = method.batch_size // accelerator.num_processes
        if (method.segments == "stratified" and method.generator_segment == "shared"
                and not any(local_rows % K for K in method.steps)):
            return "strata"
        if (execution == "eager" and not config.compile
                and accelerator.distributed_type != DistributedType.FSDP):
            return "per_row"
        return "every_row"

    def train_step(self, cfg, roles, optimisers, noise, cond, uncond, draws, K, step_cond=None, accelerator=None,
                   options=None, data=None) -> dict:
        return train_step(cfg, roles, optimisers, noise, cond, uncond, draws, K, step_cond, accelerator,
                          options or StepOptions())

    def export_scheduler(self, scheduler_config: dict):
        """DPM-Solver++ (2nd order) with trailing spacing: K steps on b_k = kT/K - 1, or on explicit
        timesteps through `pipe(..., timesteps=[...])`."""
        from diffusers import DPMSolverMultistepScheduler

        return DPMSolverMultistepScheduler.from_config(scheduler_config, algorithm_type="dpmsolver++", solver_order=2,
                                                       timestep_spacing="trailing")

    def sampling_timesteps(self, cfg: TDMConfig, K: int) -> list[int] | None:
        """The explicit timesteps a K-step student samples on (TDMConfig.timesteps); None: the scheduler's
        trailing spacing, b_k = kT/K - 1."""
        return list(cfg.timesteps) or None
