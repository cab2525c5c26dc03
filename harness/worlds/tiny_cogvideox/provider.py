"""What training uses of the tiny-cogvideox world, found by name through methods/common/worlds.py
(entry point `tiny-cogvideox` of the group `tdm_harness.worlds`):

    python -m methods.tdm.train --preset tiny-cogvideox-4step     # teacher=tiny-cogvideox prompts=tiny-cogvideox

`PIPELINE` is looked up on each access (PEP 562), in location.py: the shipped build, or the one
$TDM_TINY_COGVIDEOX_WORLD names; a missing build raises the UserError that says how to make it.
"""
from __future__ import annotations

from . import location
from .dataset import sample_clips
from .grammar import vocabulary_words as vocabulary  # noqa: F401 (provided)
from .models import make_scheduler as scheduler  # noqa: F401 (provided)


def training_prompts(seed: int, n: int) -> list[str]:
    """n captions of training clips (never a held-out caption), a pure function of the seed."""
    return [sample.caption for sample in sample_clips(seed, n)]


def __getattr__(name: str):
    if name == "PIPELINE":
        return location.pipeline()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
