"""Metrics of the small video world (tiny-cogvideox), computed with its own clip classifier.

Honest stand-ins for VBench's dimensions, named for what they are (never called VBench):
  fd_*                  Frechet distance between classifier features of two clip sets
  alignment             fraction of the attributes a prompt names that the classifier finds: the
                        background, the number of objects, each object's shape and colour, and its
                        motion and quadrant where named (shape and colour read by majority over frames)
  motion_accuracy       among objects whose prompt names a motion and that were found, the
                        fraction moving that way
  temporal_consistency  fraction of the objects found whose per-frame shape and colour readings
                        agree in every frame (and clips whose background does)
  mode_coverage         for prompts that leave motion or quadrant free, the fraction of the possible
                        values that appear among several samples of the same prompt
"""
from __future__ import annotations

from collections import defaultdict

import torch

from harness.metrics.world import assign_detections
from harness.worlds.tiny_cogvideox import grammar as g


def _majority(values: torch.Tensor) -> int:
    return int(torch.mode(values).values)


def detected_objects(pred: dict[str, torch.Tensor], i: int) -> dict[str, tuple[str, str, str]]:
    """The classifier's reading of clip i: quadrant -> (shape, colour, motion), shape and colour by
    majority over frames; a quadrant counts as holding an object when most frames say so."""
    found = {}
    for k, position in enumerate(g.POSITIONS):
        content = _majority(pred["content"][i, :, k])
        if content > 0:
            found[position] = (g.SHAPES[content - 1], g.COLOURS[_majority(pred["colour"][i, :, k])],
                               g.MOTIONS[int(pred["motion"][i, k])])
    return found


def _matches(obj: g.ObjectSpec, found: tuple[str, str, str]) -> int:
    shape, colour, motion = found
    return (obj.shape == shape) + (obj.colour == colour) + (obj.motion is not None and obj.motion == motion)


def _assign(spec: g.PromptSpec, found: dict) -> list[str | None]:
    return assign_detections(spec, found, _matches)


def alignment(spec: g.PromptSpec, found: dict[str, tuple[str, str, str]], background: str) -> float:
    """Fraction of the prompt's named attributes found in one clip."""
    named = 2 + sum(2 + (o.motion is not None) + (o.position is not None) for o in spec.objects)
    hits = (background == spec.background) + (len(found) == len(spec.objects))
    for obj, position in zip(spec.objects, _assign(spec, found)):
        if position is not None:
            hits += _matches(obj, found[position]) + (obj.position is not None)
    return hits / named


def prompt_alignment(pred: dict[str, torch.Tensor], specs: list[g.PromptSpec]) -> float:
    """Mean alignment of clips (classifier predictions `pred`) with their prompts."""
    scores = [alignment(spec, detected_objects(pred, i), g.BACKGROUNDS[_majority(pred["background"][i])])
              for i, spec in enumerate(specs)]
    return sum(scores) / len(scores)


def motion_accuracy(pred: dict[str, torch.Tensor], specs: list[g.PromptSpec]) -> float | None:
    """Among prompted objects with a named motion that were found, the fraction moving that way
    (None when no such object was found)."""
    right = total = 0
    for i, spec in enumerate(specs):
        found = detected_objects(pred, i)
        for obj, position in zip(spec.objects, _assign(spec, found)):
            if obj.motion is not None and position is not None:
                total += 1
                right += found[position][2] == obj.motion
    return right / total if total else None


def temporal_consistency(pred: dict[str, torch.Tensor]) -> float:
    """Fraction of the (clip, object found) readings, plus one per clip for its background, that
    keep the same value in every frame: an object's shape (content) and colour; the background."""
    steady = total = 0
    for i in range(len(pred["background"])):
        total += 1
        steady += bool((pred["background"][i] == pred["background"][i, 0]).all())
        for k in range(len(g.POSITIONS)):
            content = pred["content"][i, :, k]
            if _majority(content) > 0:
                total += 1
                steady += bool((content == content[0]).all() and (pred["colour"][i, :, k] == pred["colour"][i, 0, k]).all())
    return steady / total


def mode_coverage(pred: dict[str, torch.Tensor], specs: list[g.PromptSpec]) -> float:
    """Mean over (prompt, free attribute) of distinct values seen / possible values.

    `specs` repeats each one-object prompt once per sample; a value counts only when the object
    was found with the prompt's shape and colour.
    """
    seen: dict[tuple[g.PromptSpec, str], set] = defaultdict(set)
    for i, spec in enumerate(specs):
        (obj,) = spec.objects
        for attribute in spec.free_attributes:
            seen.setdefault((spec, attribute), set())
        for position, (shape, colour, motion) in detected_objects(pred, i).items():
            if (shape, colour) == (obj.shape, obj.colour):
                for attribute in spec.free_attributes:
                    seen[(spec, attribute)].add(position if attribute == "position" else motion)
    possible = {"position": len(g.POSITIONS), "motion": len(g.MOTIONS)}
    ratios = [len(values) / possible[attribute] for (_, attribute), values in seen.items()]
    return sum(ratios) / len(ratios)


def labels_as_predictions(labels: dict[str, torch.Tensor], frames: int) -> dict[str, torch.Tensor]:
    """`dataset.clip_labels` in the classifier's prediction layout (what a perfect classifier reads)."""
    per_frame = {k: labels[k][:, None].expand(-1, frames, *labels[k].shape[1:]).clamp(min=0)
                 for k in ("content", "colour", "background")}
    return {**per_frame, "motion": labels["motion"].clamp(min=0)}
