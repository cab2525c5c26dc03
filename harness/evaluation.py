"""World evaluators: turn a trained run and a cell, or a published checkpoint's recipe, into a
sampler, and a sampler into metrics.

Each evaluator names its metrics with the direction that is better, so reports and ranking
checks never guess. Everything is sampled through the sampler interface (baselines/base.py).

A recipe (Tables 1-2) on tiny-sd15 is sampled at the world's image size with the world's prompts
and seeds, and judged by the world's classifier, with fd_teacher against the tiny-sd15 teacher:
that tests the plumbing, and the numbers say nothing about the checkpoints (METRICS_NOTE). The
"real" world (real_scale.py) scores recipes as the paper does: HPSv2.1, AeS, CLIP score and
FID-to-teacher on the HPSv2 benchmark prompts.
"""
from __future__ import annotations

import functools
import hashlib
import json
import time
from dataclasses import asdict, replace
from functools import cached_property
from pathlib import Path

import torch

from baselines import SamplerRecipe, load_sampler
from baselines.base import SamplerSpec
from methods.common.cli import apply_overrides
from methods.common.errors import UserError

from .real_scale import RealScaleEvaluator
from .scales import Scale
from .tables import Cell

LOWER, HIGHER = "lower", "higher"


@functools.cache
def folder_digest(folder: Path) -> str:
    """sha256 over a folder's files (names and bytes), in name order; computed once per process."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return "sha256:" + digest.hexdigest()
METRICS_NOTE = ("scored with the tiny-sd15 world's metrics (plumbing, not a measure of the checkpoints; "
                "--world real scores them with HPSv2.1, AeS, CLIP score and FID-to-teacher)")


class TinySD15Evaluator:
    """The tiny-sd15 judge (harness/worlds/tiny_sd15/judge.py); fd_teacher against the shipped
    teacher's 25-step DPM-Solver++ samples with CFG 3.5, as `harness.world evaluate` does.

    The judge and the teacher's reference features are made on first use (a runner that finds
    every cell finished needs neither) and cached in `cache_dir`. `take_parts()` says where the
    evaluation time went since it was last called."""

    world = "tiny-sd15"
    metrics = {"fd_teacher": LOWER, "alignment": HIGHER, "mode_coverage": HIGHER, "fd_data": LOWER}
    main_metric = "fd_teacher"
    metrics_note = METRICS_NOTE

    def __init__(self, scale: Scale, device: str, cache_dir: Path, weights_root: Path | None = None):
        from harness.worlds.tiny_sd15.judge import EvalConfig

        self.config = apply_overrides(EvalConfig(), scale.eval.get(self.world, {}))
        self.device, self.cache_dir = device, cache_dir
        self.batch_size = sampling_batch(device)
        self._reference: torch.Tensor | None = None
        self._parts: dict = {}

    @property
    def n_samples(self) -> int:
        return self.config.n_prompts + self.config.coverage_prompts * self.config.coverage_samples

    def fingerprint_config(self) -> dict:
        """The evaluation config as result fingerprints see it: the classifier by the sha256 of its
        files, not by this checkout's path to them."""
        return {**asdict(self.config), "classifier": folder_digest(Path(self.config.classifier))}

    @cached_property
    def judge(self):
        from harness.worlds.tiny_sd15.judge import Judge

        started = time.perf_counter()
        judge = Judge.load(self.config, self.cache_dir)
        self._parts.update(judge_seconds=_seconds(started), judge_from=judge.real_features_from)
        return judge

    def reference(self) -> torch.Tensor:
        """Features of the teacher's samples for the evaluation prompts, cached on disk."""
        if self._reference is None:
            from harness.worlds.tiny_sd15.judge import read_features, write_features

            judge = self.judge
            started = time.perf_counter()
            path, key = self._reference_file()
            self._reference = read_features(path, key, (self.config.n_prompts, judge.real_features.shape[1]))
            source = "disk cache"
            if self._reference is None:
                self._reference, source = self._teacher_features(), "computed"
                write_features(path, key, self._reference)
            self._parts.update(reference_seconds=_seconds(started), reference_from=source)
        return self._reference

    def _reference_file(self) -> tuple[Path, str]:
        """The cache file and the key it must carry: the judge's key, the teacher's weights and how
        it is sampled (a rebuilt teacher must not reuse old features)."""
        from harness.world import DEFAULT_GUIDANCE, REFERENCE
        from harness.worlds.tiny_sd15.judge import PIPELINE, cache_key

        blob = json.dumps([cache_key(self.config), folder_digest(PIPELINE), REFERENCE, DEFAULT_GUIDANCE])
        key = hashlib.sha256(blob.encode()).hexdigest()
        return self.cache_dir / f"tiny-sd15-teacher-features-{key[:12]}.pt", key

    def _teacher_features(self) -> torch.Tensor:
        from harness.world import DEFAULT_GUIDANCE, REFERENCE
        from harness.worlds.tiny_sd15.judge import PIPELINE
        from baselines.teacher import TeacherSampler

        spec = SamplerSpec("teacher-dpmpp-25", self.world, str(PIPELINE), *REFERENCE, DEFAULT_GUIDANCE)
        sampler = TeacherSampler(spec, self.device, batch_size=self.batch_size)
        sampler.pipe.set_progress_bar_config(disable=True)
        images = sampler.sample(self.judge.prompts, self.judge.seeds)
        return self.judge.features(_images(images))

    def sampler(self, run_dir: Path, cell: Cell):
        from baselines.tdm_student import TDMStudentSampler

        started = time.perf_counter()
        sampler = TDMStudentSampler.from_run(run_dir, cell.steps, cell.solver, self.device,
                                             name=f"tdm-{cell.key}", backbone=self.world,
                                             batch_size=self.batch_size)
        sampler.pipe.set_progress_bar_config(disable=True)
        self._parts["sampler_load_seconds"] = _seconds(started)
        return sampler

    @property
    def image_size(self) -> int:
        from harness.worlds.tiny_sd15.dataset import RESOLUTION

        return RESOLUTION

    @property
    def sampling_note(self) -> str:
        return (f"sampled by their recipes at the world's {self.image_size} px (not their own size), with the "
                f"world's prompts and seeds, {self.n_samples} samples per cell")

    def missing(self) -> list[str]:
        """Files the evaluation itself needs beyond the recipes' (the world ships everything)."""
        return []

    def recipe_for_world(self, recipe: SamplerRecipe) -> SamplerRecipe:
        """The recipe at the world's image size: its judge reads 64 px images only."""
        return replace(recipe, height=self.image_size, width=self.image_size)

    def recipe_sampler(self, recipe: SamplerRecipe, weights_root: Path | None):
        started = time.perf_counter()
        sampler = load_sampler(self.recipe_for_world(recipe), self.device, weights_root, batch_size=self.batch_size)
        self._parts["sampler_load_seconds"] = _seconds(started)
        return sampler

    def score(self, sampler) -> dict:
        reference = self.reference()
        started = time.perf_counter()
        images = self.judge.sample(sampler)
        sampled = time.perf_counter()
        metrics, _ = self.judge.score_images(*images, reference)
        self._parts.update(sampling_seconds=_seconds(started, sampled), scoring_seconds=_seconds(sampled))
        return metrics

    def take_parts(self) -> dict:
        """Seconds by part since the last call; a part done earlier (judge, reference) counts 0 and
        says it came from memory."""
        parts = {"judge_seconds": 0.0, "judge_from": "memory", "reference_seconds": 0.0, "reference_from": "memory",
                 **self._parts}
        self._parts = {}
        return parts


def sampling_batch(device: str) -> int:
    """Images per pipeline call. Larger batches keep a GPU busy; on a 2-core CPU 64 was the
    fastest (192 images of a 4-step tiny-sd15 student: 4.1 s, against 4.7 s at 128, 192 or 256).
    An image depends on its prompt and seed only (baselines/base.py), whatever the batch."""
    return 256 if torch.device(device).type == "cuda" else 64


def folder_digest(folder: Path) -> str:
    """sha256 over a folder's files (names and bytes), in a fixed order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _seconds(start: float, end: float | None = None) -> float:
    return round((time.perf_counter() if end is None else end) - start, 2)


def _images(images):
    from harness.worlds.tiny_sd15 import dataset

    return dataset.from_uint8(images)


class GMMEvaluator:
    """The gmm judge: exact mixture as the reference (harness/worlds/gmm/evaluate.py)."""

    world = "gmm"
    metrics = {"sliced_wasserstein": LOWER, "log_likelihood": HIGHER, "mode_coverage": HIGHER}
    main_metric = "sliced_wasserstein"
    metrics_note = ""

    def __init__(self, scale: Scale, device: str, cache_dir: Path, weights_root: Path | None = None):
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

    def recipe_for_world(self, recipe: SamplerRecipe) -> SamplerRecipe:
        raise UserError(f"{recipe.name} makes images; the gmm world scores points (use --world tiny-sd15)")

    def recipe_sampler(self, recipe: SamplerRecipe, weights_root: Path | None):
        return self.recipe_for_world(recipe)

    def fingerprint_config(self) -> dict:
        return asdict(self.config)

    def score(self, sampler) -> dict:
        return self.judge.score(sampler)

    def take_parts(self) -> dict:
        """Sampling and scoring happen together in the gmm judge: nothing to split."""
        return {}


EVALUATORS = {"tiny-sd15": TinySD15Evaluator, "gmm": GMMEvaluator, "real": RealScaleEvaluator}
