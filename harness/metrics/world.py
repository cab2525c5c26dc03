"""Metrics of the small image world, computed with its own attribute classifier.

These are honest stand-ins for the paper's metrics and are named for what they are:
  fd_*            Frechet distance between classifier features of two image sets
  alignment       fraction of the attributes a prompt names that the classifier finds
  mode_coverage   for prompts that leave size or position free, the fraction of the
                  possible values that appear among several samples of the same prompt
"""
from __future__ import annotations

from collections import defaultdict

import torch

from harness.metrics.frechet import frechet_distance  # noqa: F401  (moved; judge.py calls wm.frechet_distance)
from harness.worlds.tiny_sd15 import grammar as g


def detected_objects(pred: dict[str, torch.Tensor], i: int) -> dict[str, tuple[str, str, str]]:
    """The classifier's reading of image i: position -> (shape, colour, size)."""
    found = {}
    for k, position in enumerate(g.POSITIONS):
        content = int(pred["content"][i, k])
        if content > 0:
            found[position] = (g.SHAPES[content - 1], g.COLOURS[int(pred["colour"][i, k])],
                               g.SIZES[int(pred["size"][i, k])])
    return found


def _matches(obj: g.ObjectSpec, found: tuple[str, str, str]) -> int:
    shape, colour, size = found
    return (obj.shape == shape) + (obj.colour == colour) + (obj.size is not None and obj.size == size)


def assign_detections(spec, found: dict, matches=_matches) -> list[str | None]:
    """Position of the detection each prompted object is judged against (None: none left).

    Objects with a named position take that quadrant; the others take, greedily, the free
    detection that matches most of their named attributes (`matches(object, detection)`).
    Shared by the video world, whose objects and detections carry a motion instead of a size.
    """
    assigned: list[str | None] = [o.position if o.position in found else None for o in spec.objects]
    free = [p for p in found if p not in assigned]
    for j, obj in enumerate(spec.objects):
        if obj.position is None and free:
            best = max(free, key=lambda p: matches(obj, found[p]))
            assigned[j] = best
            free.remove(best)
    return assigned


def alignment(spec: g.PromptSpec, found: dict[str, tuple[str, str, str]], background: str) -> float:
    """Fraction of the prompt's named attributes found in one image: the background, the
    number of objects, and per object its shape, colour, and size and position where named."""
    named = 2 + sum(2 + (o.size is not None) + (o.position is not None) for o in spec.objects)
    hits = (background == spec.background) + (len(found) == len(spec.objects))
    for obj, position in zip(spec.objects, assign_detections(spec, found)):
        if position is not None:
            hits += _matches(obj, found[position]) + (obj.position is not None)
    return hits / named


def prompt_alignment(pred: dict[str, torch.Tensor], specs: list[g.PromptSpec]) -> float:
    """Mean alignment of images (classifier predictions `pred`) with their prompts."""
    scores = [alignment(spec, detected_objects(pred, i), g.BACKGROUNDS[int(pred["background"][i])])
              for i, spec in enumerate(specs)]
    return sum(scores) / len(scores)


def mode_coverage(pred: dict[str, torch.Tensor], specs: list[g.PromptSpec]) -> float:
    """Mean over (prompt, free attribute) of distinct values seen / possible values.

    `specs` repeats each one-object prompt once per sample; an attribute value counts only
    when the object was found with the prompt's shape and colour.
    """
    seen: dict[tuple[g.PromptSpec, str], set] = defaultdict(set)
    for i, spec in enumerate(specs):
        (obj,) = spec.objects
        for attribute in spec.free_attributes:
            seen.setdefault((spec, attribute), set())
        for position, (shape, colour, size) in detected_objects(pred, i).items():
            if (shape, colour) == (obj.shape, obj.colour):
                for attribute in spec.free_attributes:
                    seen[(spec, attribute)].add(position if attribute == "position" else size)
    possible = {"position": len(g.POSITIONS), "size": len(g.SIZES)}
    ratios = [len(values) / possible[attribute] for (_, attribute), values in seen.items()]
    return sum(ratios) / len(ratios)
