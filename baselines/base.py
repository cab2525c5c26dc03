"""One sampler interface for the teacher, TDM students and every baseline.

Published baselines are `SamplerRecipe`s (recipe.py) run by `DiffusersSampler`; the small
worlds' teacher and students are described by the `SamplerSpec` below. Both kinds of sampler
have `sample(prompts, seeds)` and `describe()`.

A sampler turns prompts and seeds into uint8 images, one generator per seed, so an image
depends on its prompt and seed only, never on the batch it was drawn in. Its frozen
`spec` says exactly what was sampled, and `describe()` is what results record.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class SamplerSpec:
    name: str                      # e.g. "teacher-dpmpp-25", "tdm-unify-4"
    backbone: str                  # e.g. "tiny-sd15", "sd15"
    checkpoint: str                # pipeline folder or weights path
    scheduler: str                 # "ddim" | "dpmpp" | ...
    steps: int
    guidance: float                # classifier-free guidance scale (1.0: none)


@runtime_checkable
class Sampler(Protocol):
    spec: SamplerSpec

    def sample(self, prompts: list[str], seeds: list[int]) -> np.ndarray:
        """uint8 images (n, H, W, 3) for n prompts and n seeds."""

    def describe(self) -> dict:
        """Provenance: the spec and anything else that fixes the output."""


def describe_spec(spec: SamplerSpec) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(spec).items()}


def sample_in_batches(prompts: list[str], seeds: list[int], batch_size: int, run) -> np.ndarray:
    """uint8 outputs of `run(prompts, generators)` (floats in [0, 1], images or clips) over batches
    of at most `batch_size`, with one CPU generator per seed, so that an output depends on its
    prompt and seed only."""
    import torch

    if len(prompts) != len(seeds):
        raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
    out = []
    for start in range(0, len(prompts), batch_size):
        batch = slice(start, start + batch_size)
        floats = run(prompts[batch], [torch.Generator("cpu").manual_seed(s) for s in seeds[batch]])
        out.append((np.clip(floats, 0, 1) * 255).round().astype(np.uint8))
    return np.concatenate(out)
