"""What training and the random test pipelines use of the tiny-sd15 world, found by name through
methods/common/worlds.py (entry point `tiny-sd15` of the group `tdm_harness.worlds`)."""
from __future__ import annotations

from .dataset import render, sample_scenes
from .grammar import vocabulary_words as vocabulary  # noqa: F401 (provided)
from .judge import PIPELINE  # noqa: F401 (provided)
from .models import make_scheduler as scheduler  # noqa: F401 (provided)


def training_prompts(seed: int, n: int) -> list[str]:
    """n captions of training scenes, a pure function of the seed."""
    return [scene.caption for scene in sample_scenes(seed, n)]


def training_images(seed: int, n: int):
    """n captioned training images, a pure function of the seed: (captions, float images in [-1, 1],
    shape (n, 3, 64, 64)), drawn as the teacher's training data were."""
    scenes = sample_scenes(seed, n)
    return [s.caption for s in scenes], render([s.scene for s in scenes], seed)
