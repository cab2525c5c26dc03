"""Sampling and scoring TDM students in the gmm world.

A gmm "image" is a point in R^d and a prompt is a class label ("class 0", "class 1"), so the
student sampler keeps the sampler interface's call, `sample(prompts, seeds)`, one generator
per seed, but returns float64 points (n, d) rather than uint8 images. The judge compares
them with the exact mixture: sliced Wasserstein distance to true samples, mean
log-likelihood under the true density, and the fraction of modes that receive samples.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from baselines.base import SamplerSpec, describe_spec
from methods.common.solvers import sample as solve, trailing_timesteps
from methods.tdm.step_conditioning import STEP_EMBEDDING_DIM, step_embedding

from . import ExactDenoiser, GaussianMixture, ResidualStudent, sd15_schedule, sliced_wasserstein


def class_prompt(label: int) -> str:
    return f"class {label}"


def _label(prompt: str) -> int:
    return int(prompt.split()[-1])


class GMMStudentSampler:
    """An exported gmm student (`student_mlp.pt` + `tdm_student.json`), or the exact teacher when
    `spec.checkpoint` is "exact-teacher", sampled with DDIM or DPM-Solver++ on trailing timesteps."""

    def __init__(self, spec: SamplerSpec):
        self.spec = spec
        self.mixture, self.schedule = GaussianMixture.default(), sd15_schedule()
        teacher = ExactDenoiser(self.mixture, self.schedule)
        self.step_cond = False
        if spec.checkpoint == "exact-teacher":
            self.model = teacher
            return
        card = json.loads((Path(spec.checkpoint) / "tdm_student.json").read_text())
        method = card["config"]["method"]
        self.step_cond = len(method["steps"]) > 1 and method["step_conditioning"]
        self.folded_steps = card["steps"]
        self.model = ResidualStudent(teacher, self.mixture.classes).double()
        self.model.mlp.load_state_dict(torch.load(Path(spec.checkpoint) / "student_mlp.pt", weights_only=True))
        self.model.eval()

    @torch.no_grad()
    def sample(self, prompts: list[str], seeds: list[int]) -> np.ndarray:
        labels = torch.tensor([_label(p) for p in prompts])
        noise = torch.stack([torch.randn(self.mixture.dim, generator=torch.Generator().manual_seed(s),
                                         dtype=torch.float64) for s in seeds])
        step_cond = None
        if self.step_cond:  # the K the student was asked for: the folder's, as the image students fold it
            step_cond = step_embedding(torch.full((len(labels),), self.folded_steps), STEP_EMBEDDING_DIM).double()
        x0_fn = lambda x_t, t: self.model.x0(x_t, t, {"class": labels}, step_cond)  # noqa: E731
        return solve(self.schedule, x0_fn, noise, trailing_timesteps(self.spec.steps), self.spec.scheduler).numpy()

    def describe(self) -> dict:
        return {**describe_spec(self.spec), "resolved_timesteps": trailing_timesteps(self.spec.steps)}


@dataclass(frozen=True)
class GMMEvalConfig:
    n_samples: int = 4000        # half per class
    seed: int = 0                # fixes labels, sample seeds and the true reference sample
    coverage_share: float = 0.25  # a mode counts as covered if it gets at least this share of its expected samples


class GMMJudge:
    def __init__(self, cfg: GMMEvalConfig = GMMEvalConfig()):
        self.cfg = cfg
        self.mixture = GaussianMixture.default()
        self.labels = torch.arange(cfg.n_samples) % self.mixture.classes
        self.prompts = [class_prompt(int(c)) for c in self.labels]
        self.seeds = [1_000_000 * (cfg.seed + 1) + i for i in range(cfg.n_samples)]
        self.reference = self.mixture.sample(self.labels, torch.Generator().manual_seed(cfg.seed + 17))

    def score(self, sampler) -> dict:
        x = torch.from_numpy(sampler.sample(self.prompts, self.seeds))
        return {
            "sliced_wasserstein": sliced_wasserstein(x, self.reference),
            "log_likelihood": float(self.mixture.log_prob(x, self.labels).mean()),
            "mode_coverage": self.mode_coverage(x),
        }

    def mode_coverage(self, x: torch.Tensor) -> float:
        """Fraction of (class, mode) pairs whose nearest-mean share is at least `coverage_share` of 1/M."""
        means = self.mixture.means[self.labels]                      # (n, M, d)
        nearest = (x[:, None, :] - means).square().sum(-1).argmin(1)  # (n,)
        modes = self.mixture.means.shape[1]
        covered = 0
        for c in range(self.mixture.classes):
            counts = torch.bincount(nearest[self.labels == c], minlength=modes).double()
            covered += int((counts / counts.sum() >= self.cfg.coverage_share / modes).sum())
        return covered / (self.mixture.classes * modes)

    def floors(self) -> dict:
        """The metrics of a second true sample: what a perfect sampler can expect."""
        other = self.mixture.sample(self.labels, torch.Generator().manual_seed(self.cfg.seed + 29))
        return {"sliced_wasserstein": sliced_wasserstein(other, self.reference),
                "log_likelihood": float(self.mixture.log_prob(other, self.labels).mean()),
                "mode_coverage": self.mode_coverage(other)}
