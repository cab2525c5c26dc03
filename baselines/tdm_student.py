"""A trained student as a sampler.

The trainer exports one diffusers pipeline folder per trained step count
(`<run>/student-K<K>`, see methods/tdm/backbones.py), with classifier-free guidance
distilled into the student and `tdm_student.json` beside it. Sampling it is the teacher's
sampling with guidance 1 and the student's own step count, so this class only finds the
right folder and records what the student was trained for.

A TDM student is sampled with an ODE solver ("ddim" or "dpmpp"). One trained on explicit
timesteps (TDMConfig.timesteps, in the card's config) is sampled on them at its own step count,
through DPM-Solver++'s `timesteps=` (solver "dpmpp"); diffusers' DDIM steps t -> t - T/N whatever
the list, so solver "ddim" is refused there. Other step counts take the trailing spacing, as for
any student. DMD2 and LCM students (methods/dmd2, methods/lcm) are sampled as they were trained,
with solver "lcm": x0 at each timestep, re-noised with fresh noise (LCMScheduler), on their card's
timesteps and at their card's guidance scale (LCM's is an input of its UNet, not CFG).

    sampler = StudentSampler.from_run("runs/tiny-sd15-unify", steps=2, solver="dpmpp")
    images = sampler.sample(prompts, seeds)

A CogVideoX student (methods/tdm/backbones_cogvideox.py exports a CogVideoXPipeline folder) is not
a Stable Diffusion folder: `VideoStudentSampler` samples it as the video teacher is sampled
(baselines.teacher.VideoTeacherSampler: deterministic DDIM, the transformer's native clip), with
guidance 1 and, at its own step count, on the timesteps its card says it was trained on.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from methods.common.errors import UserError

from .base import SamplerSpec, sample_in_batches
from .teacher import TeacherSampler, VideoTeacherSampler, trailing_timesteps

CARD = "tdm_student.json"


def student_folder(run_dir: str | Path, steps: int) -> Path:
    """The exported student for `steps`; a single-K student serves any step count (Table 5's
    "w/o unify training" row samples the 4-step student with 1 and 2 steps)."""
    run_dir = Path(run_dir)
    folders = sorted(p for p in run_dir.glob("student-K*") if (p / CARD).is_file())
    if not folders:
        raise UserError(f"{run_dir} holds no exported TDM student (student-K<K>/{CARD})")
    exact = run_dir / f"student-K{steps}"
    if exact in folders:
        return exact
    if len(folders) == 1:
        return folders[0]
    raise UserError(f"{run_dir} has students for {[p.name for p in folders]} but none for {steps} steps")


class StudentSampler(TeacherSampler):
    """An exported student folder with `steps` steps, no CFG: DDIM or DPM-Solver++ for TDM, "lcm" for DMD2 and LCM."""

    def __init__(self, spec: SamplerSpec, device: str = "cpu", batch_size: int = 64, pipe=None):
        self.card = read_card(spec.checkpoint, spec.scheduler)
        self.timesteps = explicit_timesteps(self.card, spec.steps, spec.scheduler)
        if self.timesteps and spec.scheduler == "ddim":
            raise UserError(f"{spec.checkpoint} was trained on the timesteps {self.timesteps}, which "
                            f"solver={spec.scheduler!r} cannot step along (diffusers' DDIM steps t -> t - T/N): "
                            "use solver 'dpmpp'")
        super().__init__(spec, device, batch_size, pipe)

    @torch.no_grad()
    def sample(self, prompts: list[str], seeds: list[int]) -> np.ndarray:
        """The teacher's sampling (TeacherSampler.sample), on the student's explicit timesteps when it has them."""
        if not self.timesteps:
            return super().sample(prompts, seeds)
        self.pipe.scheduler = self.scheduler
        return sample_in_batches(prompts, seeds, self.batch_size, lambda batch, generators: self.pipe(
            prompt=batch, timesteps=list(self.timesteps), guidance_scale=self.spec.guidance, generator=generators,
            output_type="np").images)

    @classmethod
    def from_run(cls, run_dir: str | Path, steps: int, solver: str, device: str = "cpu", name: str | None = None,
                 backbone: str = "tiny-sd15", batch_size: int = 64) -> "StudentSampler":
        return cls(student_spec(run_dir, steps, solver, name, backbone), device, batch_size)

    def describe(self) -> dict:
        trained = self.card["config"]["method"]["steps"]
        out = {**super().describe(), "trained_steps": list(trained), "folded_step_count": self.card["steps"]}
        if self.timesteps:
            self.scheduler.set_timesteps(timesteps=list(self.timesteps))
            out["resolved_timesteps"] = [int(t) for t in self.scheduler.timesteps]
        return out


def student_spec(run_dir: str | Path, steps: int, solver: str, name: str | None, backbone: str) -> SamplerSpec:
    """The spec of a run's exported student sampled with `steps` steps of `solver`, at the guidance
    its card records (1 for a student with CFG distilled in)."""
    folder = student_folder(run_dir, steps)
    card = json.loads((folder / CARD).read_text())
    return SamplerSpec(name or f"tdm-K{card['steps']}-{solver}-{steps}", backbone, str(folder), solver, steps,
                       guidance=float(card["guidance_scale"]))


SOLVERS_OF = {"TDM": ("ddim", "dpmpp"), "DMD2": ("lcm",), "LCM": ("lcm",)}  # how each method's students are sampled


def read_card(folder: str | Path, solver: str) -> dict:
    """An exported student's card; a UserError when `solver` is not how its method's students are sampled
    (a DMD2 student with DDIM, a TDM student with LCM's re-noising)."""
    card = json.loads((Path(folder) / CARD).read_text())
    method = card.get("method", "TDM")
    if solver not in SOLVERS_OF.get(method, ()):
        raise UserError(f"{folder} holds a {method} student, sampled with solver "
                        f"{' or '.join(map(repr, SOLVERS_OF.get(method, ())))}, not {solver!r}")
    return card


def explicit_timesteps(card: dict, steps: int, solver: str = "dpmpp") -> list[int] | None:
    """The timesteps to pass `pipe(..., timesteps=...)` at `steps` steps: those a TDM student was trained on
    (TDMConfig.timesteps) at its own step count, else None (the trailing spacing b_k = kT/K - 1; also for
    cards from before the setting). "lcm" always takes a list: the card's at its own step count (DMD2's
    trained timesteps; LCM's scheduler's own), else the trailing ones."""
    if solver == "lcm":
        return list(card["timesteps"]) if card["steps"] == steps else trailing_timesteps(steps)
    listed = list(card["config"]["method"].get("timesteps") or ())
    return listed if listed and len(listed) == steps else None


class VideoStudentSampler(VideoTeacherSampler):
    """An exported TDM CogVideoX student folder: DDIM with `steps` steps, no CFG; uint8 clips.

    At the student's own step count the steps are the card's trained timesteps (b_k = kT/K - 1, or
    TDMConfig.timesteps), stepped along by CogVideoXTimestepsDDIMScheduler; at other counts the
    trailing spacing, as for the teacher."""

    def __init__(self, spec: SamplerSpec, device: str = "cpu", batch_size: int = 16, pipe=None):
        self.card = read_card(spec.checkpoint, "ddim")
        super().__init__(spec, device, batch_size, pipe)
        trained = [int(t) for t in self.card.get("timesteps") or ()]
        if len(trained) == spec.steps:
            self.timesteps = trained

    @classmethod
    def from_run(cls, run_dir: str | Path, steps: int, solver: str = "ddim", device: str = "cpu",
                 name: str | None = None, backbone: str = "tiny-cogvideox", batch_size: int = 16) -> "VideoStudentSampler":
        if solver != "ddim":
            raise UserError(f"a CogVideoX student is sampled with DDIM only (CogVideoXTimestepsDDIMScheduler), "
                            f"got solver {solver!r}")
        return cls(student_spec(run_dir, steps, solver, name, backbone), device, batch_size)

    def describe(self) -> dict:
        return {**super().describe(), "trained_steps": list(self.card["config"]["method"]["steps"]),
                "folded_step_count": self.card["steps"]}
