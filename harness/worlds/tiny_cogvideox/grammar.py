"""The caption grammar of the tiny-cogvideox world: clips, captions, and parsing back.

A clip is a background plus one or two objects, each moving inside its own quadrant of the
frame. A caption names every object's colour and shape, its motion, and the background;
whether it also names each object's quadrant is decided per caption, and some captions leave
the motion free, so that those prompts have several modes (what mode coverage measures).

    a red circle moving left at the top left and a blue square standing still on a grey background
    a red circle and a blue square moving up on a grey background      (motion of the circle free,
                                                                          positions free)
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from harness.worlds.tiny_sd15.grammar import (BACKGROUNDS, COLOURS, POSITIONS, SHAPES, GrammarError, _alternatives,
                                              is_held_out)

MOTIONS = ("left", "right", "up", "down", "still")
MAX_OBJECTS = 2
_MOTION_PHRASE = {m: "standing still" if m == "still" else f"moving {m}" for m in MOTIONS}

__all__ = ["BACKGROUNDS", "COLOURS", "POSITIONS", "SHAPES", "MOTIONS", "MAX_OBJECTS", "GrammarError", "is_held_out",
           "ObjectSpec", "PromptSpec", "ClipObject", "Clip", "format_prompt", "parse_prompt", "vocabulary_words"]


@dataclass(frozen=True)
class ObjectSpec:
    """One object as a prompt names it; None marks an attribute the prompt leaves free."""

    shape: str
    colour: str
    motion: str | None = None
    position: str | None = None


@dataclass(frozen=True)
class PromptSpec:
    objects: tuple[ObjectSpec, ...]
    background: str

    @property
    def free_attributes(self) -> tuple[str, ...]:
        """Attributes some object leaves unspecified ("motion", "position")."""
        return tuple(name for name in ("motion", "position")
                     if any(getattr(o, name) is None for o in self.objects))


@dataclass(frozen=True)
class ClipObject:
    shape: str
    colour: str
    motion: str
    position: str  # the quadrant it moves in


@dataclass(frozen=True)
class Clip:
    """A fully specified clip: what the renderer draws and the classifier is trained on."""

    objects: tuple[ClipObject, ...]  # ordered by position, at most one per quadrant
    background: str

    def caption(self, name_motion: bool = True, name_position: bool = True) -> str:
        return format_prompt(PromptSpec(
            tuple(ObjectSpec(o.shape, o.colour, o.motion if name_motion else None,
                             o.position if name_position else None) for o in self.objects),
            self.background))


def format_object(o: ObjectSpec) -> str:
    words = ["a", o.colour, o.shape]
    if o.motion:
        words.append(_MOTION_PHRASE[o.motion])
    if o.position:
        words += ["at the", o.position]
    return " ".join(words)


def format_prompt(spec: PromptSpec) -> str:
    return " and ".join(format_object(o) for o in spec.objects) + f" on a {spec.background} background"


_MOTION_RE = "standing still|moving (?:" + _alternatives(m for m in MOTIONS if m != "still") + ")"
_OBJECT_RE = re.compile(
    rf"a (?P<colour>{_alternatives(COLOURS)}) (?P<shape>{_alternatives(SHAPES)})"
    rf"(?: (?P<motion>{_MOTION_RE}))?(?: at the (?P<position>{_alternatives(POSITIONS)}))?"
)
_PROMPT_RE = re.compile(rf"(?P<objects>.+) on a (?P<background>{_alternatives(BACKGROUNDS)}) background")


def parse_prompt(prompt: str) -> PromptSpec:
    """Parse a caption of the grammar; raise GrammarError naming what is wrong."""
    text = " ".join(prompt.strip().lower().split())
    match = _PROMPT_RE.fullmatch(text)
    if not match:
        raise GrammarError(
            f"prompt {prompt!r} is not in the tiny-cogvideox grammar: expected 'a <colour> <shape> "
            f"[moving <left|right|up|down> | standing still] [at the <position>] [and a ...] on a <background> "
            f"background' with colours {', '.join(COLOURS)}; shapes {', '.join(SHAPES)}; "
            f"backgrounds {', '.join(BACKGROUNDS)}")
    parts = match["objects"].split(" and ")
    if len(parts) > MAX_OBJECTS:
        raise GrammarError(f"prompt {prompt!r} names {len(parts)} objects; the grammar allows at most {MAX_OBJECTS}")
    objects = []
    for part in parts:
        m = _OBJECT_RE.fullmatch(part)
        if not m:
            raise GrammarError(f"prompt {prompt!r}: cannot parse the object {part!r}")
        motion = None if m["motion"] is None else m["motion"].split()[-1]
        objects.append(ObjectSpec(m["shape"], m["colour"], motion, m["position"]))
    positions = [o.position for o in objects if o.position]
    if len(set(positions)) != len(positions):
        raise GrammarError(f"prompt {prompt!r} puts two objects at the same position")
    return PromptSpec(tuple(objects), match["background"])


def vocabulary_words() -> list[str]:
    """Every word the grammar can produce, in a fixed order (a tokenizer is built from it)."""
    words: list[str] = []
    phrases = ("a", "at the", "and", "on a", "background", "moving", "standing", *MOTIONS, *COLOURS, *SHAPES,
               *POSITIONS, *BACKGROUNDS)
    for phrase in phrases:
        for w in phrase.split():
            if w not in words:
                words.append(w)
    return words
