"""The tiny-sd15 evaluation protocol: fixed held-out prompts and seeds, real references, floors.

A `Judge` holds the classifier and the real images for the evaluation prompts, and scores
any sampler through the one sampler interface:

    judge = Judge.load(EvalConfig())
    judge.score(sampler, reference_features=None)  # fd_data, alignment, mode_coverage
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harness.metrics import world as wm

from . import dataset
from . import grammar as g
from .classifier import AttributeClassifier

ASSETS = Path(__file__).resolve().parent / "assets"
PIPELINE = ASSETS / "pipeline"
CLASSIFIER = ASSETS / "classifier"


@dataclass(frozen=True)
class EvalConfig:
    n_prompts: int = 512        # held-out prompts, one sample each: fd and alignment
    coverage_prompts: int = 16  # one-object held-out prompts that leave size or position free
    coverage_samples: int = 16  # samples of each, with different seeds
    seed: int = 0               # fixes prompts, sample seeds and real references
    classifier: str = str(CLASSIFIER)


class Judge:
    def __init__(self, classifier: AttributeClassifier, cfg: EvalConfig):
        self.cfg = cfg
        self.classifier = classifier
        held_out = dataset.sample_scenes(cfg.seed, cfg.n_prompts, split="held_out")
        self.prompts = [s.caption for s in held_out]
        self.specs = [g.parse_prompt(p) for p in self.prompts]
        self.seeds = list(range(cfg.n_prompts))
        self.coverage_prompts = _coverage_prompts(cfg)
        self.coverage_specs = [g.parse_prompt(p) for p in self.coverage_prompts]
        self.coverage_seeds = [100_000 + i for i in range(len(self.coverage_prompts))]
        # Two independent draws of real images for the same prompts: A is the reference,
        # B measures the floor of each metric.
        rng = np.random.default_rng([cfg.seed, 7])
        real_a = dataset.render([s.scene for s in held_out], seed=cfg.seed + 10)
        real_b = dataset.render([dataset.scene_for_prompt(s, rng) for s in self.specs], seed=cfg.seed + 11)
        self.real_features = self.features(real_a)
        self._real_b = real_b
        self._real_coverage = dataset.render(
            [dataset.scene_for_prompt(s, rng) for s in self.coverage_specs], seed=cfg.seed + 12)

    @classmethod
    def load(cls, cfg: EvalConfig = EvalConfig()) -> "Judge":
        return cls(AttributeClassifier.load(cfg.classifier), cfg)

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.classifier.features(images[i:i + 256]) for i in range(0, len(images), 256)])

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = [self.classifier.predict(images[i:i + 256]) for i in range(0, len(images), 256)]
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    def floors(self) -> dict[str, float]:
        """The metrics of real images: the best a perfect sampler can expect."""
        shuffled = self.specs[1:] + self.specs[:1]
        return {
            "fd_data": wm.frechet_distance(self.features(self._real_b), self.real_features),
            "alignment": wm.prompt_alignment(self.predict(self._real_b), self.specs),
            "alignment_shuffled_prompts": wm.prompt_alignment(self.predict(self._real_b), shuffled),
            "mode_coverage": wm.mode_coverage(self.predict(self._real_coverage), self.coverage_specs),
        }

    def score_images(self, images: np.ndarray, coverage_images: np.ndarray,
                     reference_features: torch.Tensor | None = None) -> tuple[dict, torch.Tensor]:
        """Metrics of uint8 samples for `self.prompts` and `self.coverage_prompts`; also their features."""
        x = dataset.from_uint8(images)
        features = self.features(x)
        metrics = {
            "fd_data": wm.frechet_distance(features, self.real_features),
            "fd_teacher": None if reference_features is None else wm.frechet_distance(features, reference_features),
            "alignment": wm.prompt_alignment(self.predict(x), self.specs),
            "mode_coverage": wm.mode_coverage(self.predict(dataset.from_uint8(coverage_images)), self.coverage_specs),
        }
        return metrics, features

    def score(self, sampler, reference_features: torch.Tensor | None = None) -> tuple[dict, torch.Tensor]:
        images = sampler.sample(self.prompts, self.seeds)
        coverage = sampler.sample(self.coverage_prompts, self.coverage_seeds)
        return self.score_images(images, coverage, reference_features)


def _coverage_prompts(cfg: EvalConfig) -> list[str]:
    chosen: list[str] = []
    for s in dataset.sample_scenes(cfg.seed + 1, 40 * cfg.coverage_prompts, split="held_out"):
        spec = g.parse_prompt(s.caption)
        if len(spec.objects) == 1 and spec.free_attributes and s.caption not in chosen:
            chosen.append(s.caption)
        if len(chosen) == cfg.coverage_prompts:
            break
    return [p for p in chosen for _ in range(cfg.coverage_samples)]
