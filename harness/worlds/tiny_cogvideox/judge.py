"""The tiny-cogvideox evaluation protocol: fixed held-out prompts and seeds, real references, floors.

A `Judge` holds the clip classifier and the real clips for the evaluation prompts, and scores any
sampler whose `sample(prompts, seeds)` returns uint8 clips (n, frames, H, W, 3):

    judge = Judge(ClipClassifier.load(build / "classifier"), EvalConfig())
    metrics, features = judge.score(sampler, reference_features=None)

Metrics (harness.metrics.video_world): fd_data, fd_teacher, alignment, motion_accuracy,
temporal_consistency, mode_coverage; `floors()` gives real clips' own values.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from harness.metrics import video_world as vm
from harness.metrics.frechet import frechet_distance
from harness.worlds.building import coverage_prompts

from . import dataset
from . import grammar as g
from .classifier import ClipClassifier


@dataclass(frozen=True)
class EvalConfig:
    n_prompts: int = 256        # held-out prompts, one clip each: fd, alignment, motion, consistency
    coverage_prompts: int = 8   # one-object held-out prompts that leave motion or quadrant free
    coverage_samples: int = 16  # clips of each, with different seeds
    seed: int = 0               # fixes prompts, sample seeds and real references

    def __post_init__(self):
        for name in ("n_prompts", "coverage_prompts", "coverage_samples"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be at least 2, got {getattr(self, name)}")


def from_uint8(clips: np.ndarray) -> torch.Tensor:
    """uint8 (n, F, H, W, 3) -> float (n, F, 3, H, W) in [-1, 1], the classifier's input."""
    return torch.from_numpy(np.ascontiguousarray(clips)).permute(0, 1, 4, 2, 3).float() / 127.5 - 1


def to_uint8(clips: torch.Tensor) -> np.ndarray:
    """[-1, 1] float (n, F, 3, H, W) -> uint8 (n, F, H, W, 3), the layout samplers return."""
    return ((clips.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 1, 3, 4, 2).cpu().numpy()


class Judge:
    def __init__(self, classifier: ClipClassifier, cfg: EvalConfig = EvalConfig()):
        self.cfg, self.classifier = cfg, classifier.eval()
        self._held_out = dataset.sample_clips(cfg.seed, cfg.n_prompts, split="held_out")
        self.prompts = [s.caption for s in self._held_out]
        self.specs = [g.parse_prompt(p) for p in self.prompts]
        self.seeds = list(range(cfg.n_prompts))
        self.coverage_prompts = _coverage_prompts(cfg)
        self.coverage_specs = [g.parse_prompt(p) for p in self.coverage_prompts]
        self.coverage_seeds = [100_000 + i for i in range(len(self.coverage_prompts))]
        # Real draw A (the clips the prompts were captioned from) is the reference; draw B and
        # real clips of the coverage prompts measure each metric's floor.
        self.real_features = self.read(dataset.render([s.clip for s in self._held_out], seed=cfg.seed + 10))[0]

    @cached_property
    def _floor_clips(self) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.cfg.seed, 7])
        real_b = dataset.render([dataset.clip_for_prompt(s, rng) for s in self.specs], seed=self.cfg.seed + 11)
        coverage = dataset.render([dataset.clip_for_prompt(s, rng) for s in self.coverage_specs],
                                  seed=self.cfg.seed + 12)
        return real_b, coverage

    @torch.no_grad()
    def read(self, clips: torch.Tensor, chunk: int = 64) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Features and arg-max readings of float clips (n, F, 3, H, W)."""
        features, readings = [], []
        for start in range(0, len(clips), chunk):
            part = clips[start:start + chunk]
            features.append(self.classifier.features(part))
            readings.append(self.classifier.predict(part))
        return torch.cat(features), {k: torch.cat([r[k] for r in readings]) for k in readings[0]}

    def _metrics(self, clips: torch.Tensor, coverage: torch.Tensor, reference_features=None) -> tuple[dict, torch.Tensor]:
        features, readings = self.read(clips)
        return {
            "fd_data": frechet_distance(features, self.real_features),
            "fd_teacher": None if reference_features is None else frechet_distance(features, reference_features),
            "alignment": vm.prompt_alignment(readings, self.specs),
            "motion_accuracy": vm.motion_accuracy(readings, self.specs),
            "temporal_consistency": vm.temporal_consistency(readings),
            "mode_coverage": vm.mode_coverage(self.read(coverage)[1], self.coverage_specs),
        }, features

    def floors(self) -> dict:
        """The metrics of real clips: the best a perfect sampler can expect."""
        metrics, _ = self._metrics(*self._floor_clips)
        del metrics["fd_teacher"]
        return metrics

    @torch.no_grad()
    def vae_floors(self, vae, chunk: int = 16) -> dict:
        """The metrics of the same real clips encoded and decoded by the world's 3D VAE (the posterior's
        mode): the best a sampler in its latent space can expect. Clips pass as uint8, as samplers' do."""
        param = next(vae.parameters())

        def roundtrip(clips: torch.Tensor) -> np.ndarray:
            out = []
            for start in range(0, len(clips), chunk):
                x = clips[start:start + chunk].permute(0, 2, 1, 3, 4).to(param.device, param.dtype)
                out.append(vae.decode(vae.encode(x).latent_dist.mode()).sample.float().permute(0, 2, 1, 3, 4).cpu())
            return to_uint8(torch.cat(out))

        metrics, _ = self.score_clips(*(roundtrip(c) for c in self._floor_clips))
        del metrics["fd_teacher"]
        return metrics

    def score_clips(self, clips: np.ndarray, coverage_clips: np.ndarray,
                    reference_features: torch.Tensor | None = None) -> tuple[dict, torch.Tensor]:
        """Metrics of uint8 clips for `self.prompts` and `self.coverage_prompts`; also their features."""
        for name, got, want in (("clips", clips, len(self.prompts)), ("coverage clips", coverage_clips,
                                                                       len(self.coverage_prompts))):
            if len(got) != want:
                raise ValueError(f"{len(got)} {name} for {want} prompts")
        return self._metrics(from_uint8(clips), from_uint8(coverage_clips), reference_features)

    def score(self, sampler, reference_features: torch.Tensor | None = None) -> tuple[dict, torch.Tensor]:
        return self.score_clips(sampler.sample(self.prompts, self.seeds),
                                sampler.sample(self.coverage_prompts, self.coverage_seeds), reference_features)


def _coverage_prompts(cfg: EvalConfig) -> list[str]:
    held_out = dataset.sample_clips(cfg.seed + 1, 40 * cfg.coverage_prompts, split="held_out")
    return coverage_prompts(held_out, g.parse_prompt, cfg.coverage_prompts, cfg.coverage_samples)
