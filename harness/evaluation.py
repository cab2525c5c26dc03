"""World evaluators: turn a trained run and a cell into a sampler, and a sampler into metrics.

Each evaluator names its metrics with the direction that is better, so reports and ranking
checks never guess. Everything is sampled through the sampler interface (baselines/base.py).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import torch

from baselines.base import SamplerSpec
from methods.common.cli import apply_overrides

from .scales import Scale
from .tables import Cell

LOWER, HIGHER = "lower", "higher"


class TinySD15Evaluator:
    """The tiny-sd15 judge (harness/worlds/tiny_sd15/judge.py); fd_teacher against the shipped
    teacher's 25-step DPM-Solver++ samples with CFG 3.5, as `harness.world evaluate` does."""

    world = "tiny-sd15"
    metrics = {"fd_teacher": LOWER, "alignment": HIGHER, "mode_coverage": HIGHER, "fd_data": LOWER}
    main_metric = "fd_teacher"

    def __init__(self, scale: Scale, device: str, cache_dir: Path):
        from harness.worlds.tiny_sd15.judge import EvalConfig, Judge

        self.config = apply_overrides(EvalConfig(), scale.eval.get(self.world, {}))
        self.judge, self.device, self.cache_dir = Judge.load(self.config), device, cache_dir
        self._reference: torch.Tensor | None = None

    @property
    def n_samples(self) -> int:
        return self.config.n_prompts + self.config.coverage_prompts * self.config.coverage_samples

    def reference(self) -> torch.Tensor:
        """Features of the teacher's samples for the evaluation prompts, cached on disk."""
        if self._reference is None:
            from harness.world import DEFAULT_GUIDANCE, REFERENCE
            from harness.worlds.tiny_sd15.judge import PIPELINE
            from baselines.teacher import TeacherSampler

            key = hashlib.sha256(json.dumps([asdict(self.config), REFERENCE, DEFAULT_GUIDANCE]).encode()).hexdigest()
            path = self.cache_dir / f"tiny-sd15-teacher-features-{key[:12]}.pt"
            if path.is_file():
                self._reference = torch.load(path, weights_only=True)
            else:
                spec = SamplerSpec("teacher-dpmpp-25", self.world, str(PIPELINE), *REFERENCE, DEFAULT_GUIDANCE)
                sampler = TeacherSampler(spec, self.device)
                sampler.pipe.set_progress_bar_config(disable=True)
                images = sampler.sample(self.judge.prompts, self.judge.seeds)
                self._reference = self.judge.features(_images(images))
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # other runner processes may read it
                torch.save(self._reference, tmp)
                os.replace(tmp, path)
        return self._reference

    def sampler(self, run_dir: Path, cell: Cell):
        from baselines.tdm_student import TDMStudentSampler

        sampler = TDMStudentSampler.from_run(run_dir, cell.steps, cell.solver, self.device,
                                             name=f"tdm-{cell.key}", backbone=self.world)
        sampler.pipe.set_progress_bar_config(disable=True)
        return sampler

    def score(self, sampler) -> dict:
        metrics, _ = self.judge.score(sampler, self.reference())
        return metrics


def _images(images):
    from harness.worlds.tiny_sd15 import dataset

    return dataset.from_uint8(images)


class GMMEvaluator:
    """The gmm judge: exact mixture as the reference (harness/worlds/gmm/evaluate.py)."""

    world = "gmm"
    metrics = {"sliced_wasserstein": LOWER, "log_likelihood": HIGHER, "mode_coverage": HIGHER}
    main_metric = "sliced_wasserstein"

    def __init__(self, scale: Scale, device: str, cache_dir: Path):
        from harness.worlds.gmm.evaluate import GMMEvalConfig, GMMJudge

        self.config = apply_overrides(GMMEvalConfig(), scale.eval.get(self.world, {}))
        self.judge = GMMJudge(self.config)

    @property
    def n_samples(self) -> int:
        return self.config.n_samples

    def sampler(self, run_dir: Path, cell: Cell):
        from baselines.tdm_student import student_folder
        from harness.worlds.gmm.evaluate import GMMStudentSampler

        folder = student_folder(run_dir, cell.steps)
        return GMMStudentSampler(SamplerSpec(f"tdm-{cell.key}", self.world, str(folder), cell.solver, cell.steps, 1.0))

    def score(self, sampler) -> dict:
        return self.judge.score(sampler)


EVALUATORS = {"tiny-sd15": TinySD15Evaluator, "gmm": GMMEvaluator}
