"""The tiny-sd15 evaluation protocol: fixed held-out prompts and seeds, real references, floors.

A `Judge` holds the classifier and the real images for the evaluation prompts, and scores
any sampler through the one sampler interface:

    judge = Judge.load(EvalConfig())
    judge.score(sampler, reference_features=None)  # fd_data, alignment, mode_coverage

`Judge.load(cfg, cache_dir=...)` keeps the features of the real references in a file keyed by
everything that fixes them, so a second process skips rendering them.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from harness.metrics import world as wm
from harness.worlds.building import coverage_prompts

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
    def __init__(self, classifier: AttributeClassifier, cfg: EvalConfig, real_features: torch.Tensor | None = None):
        """`real_features`: those of the real references, when already known (a cache); else rendered."""
        self.cfg = cfg
        self.classifier = classifier
        self._held_out = dataset.sample_scenes(cfg.seed, cfg.n_prompts, split="held_out")
        self.prompts = [s.caption for s in self._held_out]
        self.specs = [g.parse_prompt(p) for p in self.prompts]
        self.seeds = list(range(cfg.n_prompts))
        self.coverage_prompts = _coverage_prompts(cfg)
        self.coverage_specs = [g.parse_prompt(p) for p in self.coverage_prompts]
        self.coverage_seeds = [100_000 + i for i in range(len(self.coverage_prompts))]
        # Two independent draws of real images for the same prompts: A is the reference,
        # B (with the coverage draw, `_floor_images`) measures the floor of each metric.
        self.real_features = self.features(self.render_reference()) if real_features is None else real_features
        self.real_features_from = "computed" if real_features is None else "given"

    @classmethod
    def load(cls, cfg: EvalConfig = EvalConfig(), cache_dir: str | Path | None = None) -> "Judge":
        """The judge for `cfg`; with `cache_dir`, the real features come from (or go to) a file there."""
        classifier = AttributeClassifier.load(cfg.classifier)
        if cache_dir is None:
            return cls(classifier, cfg)
        key = cache_key(cfg)
        path = Path(cache_dir) / f"tiny-sd15-real-features-{key[:12]}.pt"
        cached = read_features(path, key, (cfg.n_prompts, classifier.config.feature_dim))
        judge = cls(classifier, cfg, cached)
        if cached is None:
            write_features(path, key, judge.real_features)
        judge.real_features_from = "computed" if cached is None else "disk cache"
        return judge

    def render_reference(self) -> torch.Tensor:
        """Real draw A: the held-out scenes the prompts were captioned from."""
        return dataset.render([s.scene for s in self._held_out], seed=self.cfg.seed + 10)

    @cached_property
    def _floor_images(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Real draw B for the prompts, and real renders of the coverage prompts. Only `floors`
        needs them, so they are drawn on first use; one generator, B first, as always."""
        rng = np.random.default_rng([self.cfg.seed, 7])
        real_b = dataset.render([dataset.scene_for_prompt(s, rng) for s in self.specs], seed=self.cfg.seed + 11)
        coverage = dataset.render([dataset.scene_for_prompt(s, rng) for s in self.coverage_specs],
                                  seed=self.cfg.seed + 12)
        return real_b, coverage

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.classifier.features(images[i:i + 256]) for i in range(0, len(images), 256)])

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.read(images)[1]

    @torch.no_grad()
    def read(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Features and arg-max labels from one pass of the classifier (its trunk is most of the
        cost), in the same chunks as `features`, so both equal their separate computation bit for bit."""
        chunks = [self.classifier.features(images[i:i + 256]) for i in range(0, len(images), 256)]
        labels = [_labels(self.classifier, f) for f in chunks]
        return torch.cat(chunks), {k: torch.cat([part[k] for part in labels]) for k in labels[0]}

    def floors(self) -> dict[str, float]:
        """The metrics of real images: the best a perfect sampler can expect."""
        real_b, real_coverage = self._floor_images
        shuffled = self.specs[1:] + self.specs[:1]
        features, labels = self.read(real_b)
        return {
            "fd_data": wm.frechet_distance(features, self.real_features),
            "alignment": wm.prompt_alignment(labels, self.specs),
            "alignment_shuffled_prompts": wm.prompt_alignment(labels, shuffled),
            "mode_coverage": wm.mode_coverage(self.predict(real_coverage), self.coverage_specs),
        }

    def score_images(self, images: np.ndarray, coverage_images: np.ndarray,
                     reference_features: torch.Tensor | None = None) -> tuple[dict, torch.Tensor]:
        """Metrics of uint8 samples for `self.prompts` and `self.coverage_prompts`; also their features."""
        features, labels = self.read(dataset.from_uint8(images))
        metrics = {
            "fd_data": wm.frechet_distance(features, self.real_features),
            "fd_teacher": None if reference_features is None else wm.frechet_distance(features, reference_features),
            "alignment": wm.prompt_alignment(labels, self.specs),
            "mode_coverage": wm.mode_coverage(self.predict(dataset.from_uint8(coverage_images)), self.coverage_specs),
        }
        return metrics, features

    def sample(self, sampler) -> tuple[np.ndarray, np.ndarray]:
        """The sampler's images for the evaluation prompts and for the coverage prompts."""
        return sampler.sample(self.prompts, self.seeds), sampler.sample(self.coverage_prompts, self.coverage_seeds)

    def score(self, sampler, reference_features: torch.Tensor | None = None) -> tuple[dict, torch.Tensor]:
        return self.score_images(*self.sample(sampler), reference_features)


def _labels(classifier: AttributeClassifier, features: torch.Tensor) -> dict[str, torch.Tensor]:
    """`classifier.predict` from features already computed: its heads, in its output layout."""
    slots = len(g.POSITIONS)
    labels = {"background": classifier.heads["background"](features).argmax(-1)}
    for name in ("content", "colour", "size"):
        labels[name] = classifier.heads[name](features).view(len(features), slots, -1).argmax(-1)
    return labels


def cache_key(cfg: EvalConfig) -> str:
    """What fixes the real features: the config, the classifier's weights, and the code that draws
    the real images (a changed renderer or grammar must not reuse old features)."""
    classifier = Path(cfg.classifier)
    digest = hashlib.sha256()
    for path in (classifier / "model.safetensors", classifier / "config.json",
                 Path(dataset.__file__), Path(g.__file__)):
        digest.update(path.read_bytes())
    return hashlib.sha256(json.dumps([asdict(cfg), digest.hexdigest()]).encode()).hexdigest()


def read_features(path: Path, key: str, shape: tuple[int, int]) -> torch.Tensor | None:
    """Cached features if the file is readable, carries `key` and holds finite float32 of `shape`;
    None otherwise (absent, corrupt, or written for something else): the caller recomputes."""
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, weights_only=True)
    except Exception:  # torch raises several types for a truncated or foreign file
        return None
    if not isinstance(blob, dict) or blob.get("key") != key:
        return None
    features = blob.get("features")
    if not (isinstance(features, torch.Tensor) and tuple(features.shape) == tuple(shape)
            and features.dtype == torch.float32 and bool(torch.isfinite(features).all())):
        return None
    return features


def write_features(path: Path, key: str, features: torch.Tensor) -> None:
    """Atomically, since other runner processes may read the file meanwhile."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save({"key": key, "features": features.detach().cpu().contiguous()}, tmp)
    os.replace(tmp, path)


def _coverage_prompts(cfg: EvalConfig) -> list[str]:
    held_out = dataset.sample_scenes(cfg.seed + 1, 40 * cfg.coverage_prompts, split="held_out")
    return coverage_prompts(held_out, g.parse_prompt, cfg.coverage_prompts, cfg.coverage_samples)
