"""The teacher as a sampler: N steps of DDIM or DPM-Solver++(2M) with classifier-free guidance."""
from __future__ import annotations

import numpy as np
import torch

from methods.common.pipeline_io import load_sd_pipeline

from .base import SamplerSpec, describe_spec, sample_in_batches

SOLVERS = ("ddim", "dpmpp")              # the teacher's (and a TDM student's) ODE solvers
STUDENT_SOLVERS = (*SOLVERS, "lcm")       # "lcm": x0 at each timestep, re-noised (DMD2 and LCM students)


def solver_scheduler(solver: str, config):
    """DDIM or DPM-Solver++(2M) on a pipeline's scheduler config, "trailing" timesteps; or LCMScheduler
    ("lcm"; a student sampler passes it the timesteps its card gives).

    "trailing" starts the first step at t = 999 as few-step samplers should; SD-1.5's own
    "leading" spacing would start a 1-step sample at t = 1, from almost pure noise.
    """
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, LCMScheduler

    if solver == "ddim":
        return DDIMScheduler.from_config(config, timestep_spacing="trailing")
    if solver == "dpmpp":
        return DPMSolverMultistepScheduler.from_config(
            config, algorithm_type="dpmsolver++", solver_order=2, timestep_spacing="trailing")
    if solver == "lcm":
        return LCMScheduler.from_config(config)
    raise ValueError(f"unknown solver {solver!r}; expected one of {', '.join(STUDENT_SOLVERS)}")


class TeacherSampler:
    """A Stable Diffusion pipeline folder sampled with a chosen solver, step count and CFG."""

    def __init__(self, spec: SamplerSpec, device: str = "cpu", batch_size: int = 64, pipe=None):
        self.spec = spec
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.pipe = pipe if pipe is not None else load_sd_pipeline(spec.checkpoint, self.device)
        self.scheduler = solver_scheduler(spec.scheduler, self.pipe.scheduler.config)

    @torch.no_grad()
    def sample(self, prompts: list[str], seeds: list[int]) -> np.ndarray:
        self.pipe.scheduler = self.scheduler
        return sample_in_batches(prompts, seeds, self.batch_size, lambda batch, generators: self.pipe(
            prompt=batch, num_inference_steps=self.spec.steps, guidance_scale=self.spec.guidance,
            generator=generators, output_type="np").images)

    def describe(self) -> dict:
        timesteps = self.scheduler.set_timesteps(self.spec.steps) or self.scheduler.timesteps
        return {**describe_spec(self.spec), "resolved_timesteps": [int(t) for t in timesteps]}


def trailing_timesteps(steps: int, T: int = 1000) -> list[int]:
    """N timesteps from T - 1 down, evenly spaced ("trailing" spacing): 4 -> [999, 749, 499, 249]."""
    return [int(round(T - k * T / steps)) - 1 for k in range(steps)]


class VideoTeacherSampler:
    """A CogVideoX pipeline folder sampled with N steps of deterministic DDIM on trailing timesteps
    (baselines.cogvideox_scheduler, which steps along them as diffusers' CogVideoX DDIM does not)
    and classifier-free guidance, at the transformer's native clip size and text length.
    `sample` returns uint8 clips (n, frames, H, W, 3)."""

    def __init__(self, spec: SamplerSpec, device: str = "cpu", batch_size: int = 16, pipe=None):
        from .cogvideox_scheduler import CogVideoXTimestepsDDIMScheduler

        if spec.scheduler != "ddim":
            raise ValueError(f"the video teacher samples with DDIM only, got scheduler {spec.scheduler!r}")
        self.spec, self.device, self.batch_size = spec, torch.device(device), batch_size
        if pipe is None:
            from diffusers import CogVideoXPipeline

            pipe = CogVideoXPipeline.from_pretrained(spec.checkpoint, local_files_only=True).to(self.device)
            pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe
        self.scheduler = CogVideoXTimestepsDDIMScheduler.from_config(pipe.scheduler.config)
        self.timesteps = trailing_timesteps(spec.steps, pipe.scheduler.config.num_train_timesteps)
        config, scale = pipe.transformer.config, pipe.vae_scale_factor_spatial
        self.size = dict(num_frames=config.sample_frames, height=config.sample_height * scale,
                         width=config.sample_width * scale, max_sequence_length=config.max_text_seq_length)

    @torch.no_grad()
    def sample(self, prompts: list[str], seeds: list[int]) -> np.ndarray:
        self.pipe.scheduler = self.scheduler
        return sample_in_batches(prompts, seeds, self.batch_size, lambda batch, generators: self.pipe(
            prompt=batch, timesteps=self.timesteps, guidance_scale=self.spec.guidance, use_dynamic_cfg=False,
            generator=generators, output_type="np", **self.size).frames)

    def describe(self) -> dict:
        return {**describe_spec(self.spec), "resolved_timesteps": self.timesteps, **self.size}
