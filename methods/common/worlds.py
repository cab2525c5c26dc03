"""The small worlds by name, without importing them.

Training and the random test pipelines name the shipped worlds (`teacher=tiny-sd15`,
`prompts=tiny-sd15`, `backbone=gmm`), but the worlds live in the harness, which `methods` never
imports (tests/test_layers.py). Each world registers a provider under the entry-point group
`tdm_harness.worlds` (pyproject.toml), and `world(name)` loads it on first use, so the
dependency stays one-way in the code: methods say what they need, the harness supplies it.

What the methods use of each provider:
- tiny-sd15 (harness/worlds/tiny_sd15/provider.py): `PIPELINE` (its diffusers folder),
  `training_prompts(seed, n)`, `training_images(seed, n)` (captioned images, for methods that learn
  from data), `vocabulary()` (its words) and `scheduler()` (SD-1.5's schedule);
- tiny-cogvideox (harness/worlds/tiny_cogvideox/provider.py): the same four, for its
  CogVideoXPipeline (`PIPELINE` raises a UserError saying how to build the world when it is not built);
- gmm (harness/worlds/gmm): `GaussianMixture`, `ExactDenoiser`, `ResidualStudent`, `sd15_schedule`.
"""
from __future__ import annotations

import functools
from importlib.metadata import entry_points

from .errors import UserError

GROUP = "tdm_harness.worlds"


@functools.cache
def installed() -> frozenset[str]:
    """The names of the installed worlds."""
    return frozenset(ep.name for ep in entry_points(group=GROUP))


def provides(name: str, attribute: str) -> bool:
    """Whether `name` is an installed world whose provider has `attribute` (`teacher=<world>` needs
    PIPELINE, `prompts=<world>` needs training_prompts). A provider may raise a UserError while
    answering (a world that is not built): it propagates."""
    return name in installed() and hasattr(world(name), attribute)


@functools.cache
def world(name: str):
    """The provider of the world `name`."""
    found = {ep.name: ep for ep in entry_points(group=GROUP)}
    if name not in found:
        raise UserError(f"no world {name!r} is installed (entry points {GROUP}: {sorted(found) or 'none'}); "
                        "install the project as its README says (pip install -e .)")
    return found[name].load()
