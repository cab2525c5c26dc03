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
from .worlds.tiny_cogvideox.evaluate import DEFAULT_GUIDANCE as VIDEO_WORLD_GUIDANCE

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
        from baselines.tdm_student import StudentSampler

        started = time.perf_counter()
        sampler = StudentSampler.from_run(run_dir, cell.steps, cell.solver, self.device,
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


# The tiny-cogvideox teacher as Table 4 samples it: DDIM on trailing timesteps with the world's CFG scale
# (harness.worlds.tiny_cogvideox.evaluate's default), which the tiny-cogvideox presets distil.
VIDEO_GUIDANCE = VIDEO_WORLD_GUIDANCE
VIDEO_METRICS_NOTE = ("the tiny-cogvideox world's own metrics (its clip classifier; harness/metrics/video_world.py), "
                      "not VBench")


def video_sampling_batch(device: str) -> int:
    """Clips per pipeline call. On a 2-core CPU the 3D VAE's decoding dominates (about 1 s per clip at one
    thread) and 4, 8 or 16 clips per call cost the same per clip: 8. On an H200 128: the judge's 384 clips
    at 50 steps took 1.7 s at 128, 256 or 384 per call against 3.0 s at 64, with a peak of 8.1 GiB at 128
    (16.2 at 256). A clip depends on its prompt and seed only, whatever the batch."""
    return 128 if torch.device(device).type == "cuda" else 8


@functools.cache
def _digest(folder: Path) -> str:
    """folder_digest, once per folder and process (the pipeline folder is about 25 MB)."""
    return folder_digest(folder)


class TinyCogVideoXEvaluator:
    """The tiny-cogvideox judge (harness/worlds/tiny_cogvideox/judge.py) on the world's build
    (tiny_cogvideox/location.py: the shipped assets/, or $TDM_TINY_COGVIDEOX_WORLD). A missing build
    stops here, in one line that says how to make it.

    Table 4's cells: the teacher by step count (`teacher_sampler`) and trained TDM students
    (`sampler`). fd_teacher is measured against the teacher's TEACHER_STEPS-step samples (DDIM with
    CFG VIDEO_GUIDANCE), made by Table 4's teacher row itself, whose own metrics have no fd_teacher,
    and cached on disk for the other cells (or sampled when they run first).

    Every result's fingerprint holds the sha256 of the teacher's and the classifier's files, and the
    training runs carry a stamp of the teacher they distilled (`training_stamp`), so a rebuilt world
    recomputes every cell and retrains every run."""

    world = "tiny-cogvideox"
    metrics = {"fd_teacher": LOWER, "fd_data": LOWER, "alignment": HIGHER, "motion_accuracy": HIGHER,
               "temporal_consistency": HIGHER, "mode_coverage": HIGHER}
    main_metric = "fd_teacher"
    metrics_note = VIDEO_METRICS_NOTE

    def __init__(self, scale: Scale, device: str, cache_dir: Path, weights_root: Path | None = None):
        from harness.tables import TEACHER_STEPS
        from harness.worlds.tiny_cogvideox import location
        from harness.worlds.tiny_cogvideox.judge import EvalConfig

        self.folder = location.require()
        self.pipeline, self.classifier = self.folder / "pipeline", self.folder / "classifier"
        self.config = apply_overrides(EvalConfig(), scale.eval.get(self.world, {}))
        self.device, self.cache_dir = device, cache_dir
        self.batch_size = video_sampling_batch(device)
        self.reference_steps, self.guidance = TEACHER_STEPS, VIDEO_GUIDANCE
        self._reference: torch.Tensor | None = None
        self._reference_sampler = None
        self._parts: dict = {}

    @property
    def n_samples(self) -> int:
        return self.config.n_prompts + self.config.coverage_prompts * self.config.coverage_samples

    def fingerprint_config(self) -> dict:
        """The evaluation config, with the world's files by their sha256 (not this checkout's path)
        and the fd_teacher reference as sampled."""
        return {**asdict(self.config), "classifier": _digest(self.classifier), "teacher": _digest(self.pipeline),
                "reference": {"steps": self.reference_steps, "solver": "ddim", "guidance": self.guidance}}

    def training_stamp(self) -> dict:
        """What a training run on this world distilled: written beside the run, checked before reusing it."""
        return {"world": self.world, "teacher": _digest(self.pipeline)}

    def teacher_facts(self, cell) -> dict:
        """How a teacher cell is sampled, beside the cell (its result's fingerprint)."""
        return {"solver": cell.solver, "timesteps": "trailing", "guidance": self.guidance}

    @cached_property
    def judge(self):
        from harness.worlds.tiny_cogvideox.classifier import ClipClassifier
        from harness.worlds.tiny_cogvideox.judge import Judge

        started = time.perf_counter()
        judge = Judge(ClipClassifier.load(self.classifier), self.config)
        self._parts.update(judge_seconds=_seconds(started), judge_from="computed")
        return judge

    def _spec(self, steps: int, solver: str = "ddim") -> SamplerSpec:
        return SamplerSpec(f"teacher-{solver}-{steps}", self.world, str(self.pipeline), solver, steps, self.guidance)

    def teacher_sampler(self, cell):
        from baselines.teacher import VideoTeacherSampler

        started = time.perf_counter()
        sampler = VideoTeacherSampler(self._spec(cell.steps, cell.solver), self.device, batch_size=self.batch_size)
        if (cell.steps, cell.solver) == (self.reference_steps, "ddim"):
            self._reference_sampler = sampler  # scored without fd_teacher; its features become the reference
        self._parts["sampler_load_seconds"] = _seconds(started)
        return sampler

    def sampler(self, run_dir: Path, cell: Cell):
        from baselines.tdm_student import VideoStudentSampler

        started = time.perf_counter()
        sampler = VideoStudentSampler.from_run(run_dir, cell.steps, cell.solver, self.device, name=f"tdm-{cell.key}",
                                               backbone=self.world, batch_size=self.batch_size)
        self._parts["sampler_load_seconds"] = _seconds(started)
        return sampler

    def _reference_file(self) -> tuple[Path, str]:
        """The cache file of the reference features and the key it must carry: the judge's config, the
        world's files, the code that draws prompts and real clips, and how the teacher is sampled."""
        from harness.worlds.tiny_cogvideox import dataset, grammar

        code = hashlib.sha256(Path(dataset.__file__).read_bytes() + Path(grammar.__file__).read_bytes()).hexdigest()
        key = hashlib.sha256(json.dumps([self.fingerprint_config(), code]).encode()).hexdigest()
        return self.cache_dir / f"tiny-cogvideox-teacher-features-{key[:12]}.pt", key

    def reference(self) -> torch.Tensor:
        """Features of the reference teacher's clips for the judge's prompts: from memory, the disk
        cache, or sampled now."""
        if self._reference is None:
            from baselines.teacher import VideoTeacherSampler
            from harness.worlds.tiny_cogvideox.judge import from_uint8
            from harness.worlds.tiny_sd15.judge import read_features, write_features

            judge = self.judge
            started = time.perf_counter()
            path, key = self._reference_file()
            features = read_features(path, key, (self.config.n_prompts, judge.real_features.shape[1]))
            source = "disk cache"
            if features is None:
                teacher = VideoTeacherSampler(self._spec(self.reference_steps), self.device, batch_size=self.batch_size)
                features, source = judge.read(from_uint8(teacher.sample(judge.prompts, judge.seeds)))[0], "computed"
                write_features(path, key, features)
            self._reference = features
            self._parts.update(reference_seconds=_seconds(started), reference_from=source)
        return self._reference

    def score(self, sampler) -> dict:
        from harness.worlds.tiny_sd15.judge import write_features

        judge = self.judge
        is_reference = sampler is self._reference_sampler
        reference = None if is_reference else self.reference()
        started = time.perf_counter()
        # One call for both prompt sets: fuller batches (a clip depends on its prompt and seed only).
        clips = sampler.sample(judge.prompts + judge.coverage_prompts, judge.seeds + judge.coverage_seeds)
        sampled = time.perf_counter()
        n = len(judge.prompts)
        metrics, features = judge.score_clips(clips[:n], clips[n:], reference)
        self._parts.update(sampling_seconds=_seconds(started, sampled), scoring_seconds=_seconds(sampled))
        if is_reference:  # the teacher row of Table 4: the others' reference, and none of its own
            del metrics["fd_teacher"]
            self._reference = features
            write_features(self._reference_file()[0], self._reference_file()[1], features)
            self._parts.update(reference_seconds=0.0, reference_from="this cell")
        return metrics

    @property
    def sampling_note(self) -> str:
        return (f"the world's teacher sampled with DDIM on trailing timesteps and CFG {self.guidance:g}, at the "
                f"world's {self.n_samples} clips per cell (no training seed); fd_teacher is measured against the "
                f"{self.reference_steps}-step teacher, whose own row has none")

    def missing(self) -> list[str]:
        return []

    def recipe_for_world(self, recipe: SamplerRecipe) -> SamplerRecipe:
        raise UserError(f"{recipe.name} makes images; the tiny-cogvideox world scores clips")

    def recipe_sampler(self, recipe: SamplerRecipe, weights_root: Path | None):
        return self.recipe_for_world(recipe)

    def take_parts(self) -> dict:
        """Seconds by part since the last call, as TinySD15Evaluator.take_parts."""
        parts = {"judge_seconds": 0.0, "judge_from": "memory", "reference_seconds": 0.0, "reference_from": "memory",
                 **self._parts}
        self._parts = {}
        return parts


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


EVALUATORS = {"tiny-sd15": TinySD15Evaluator, "gmm": GMMEvaluator, "tiny-cogvideox": TinyCogVideoXEvaluator,
              "real": RealScaleEvaluator}
