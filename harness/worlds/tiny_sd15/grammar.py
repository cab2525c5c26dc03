"""The caption grammar of the tiny-sd15 world: scenes, captions, and parsing back.

A scene is a background plus up to two objects, each in its own quadrant of the image.
A caption names every object's colour and shape and the background; whether it also
names sizes and positions is decided per caption, so that some prompts leave attributes
unspecified and have several modes (what mode coverage measures).

    a small red circle at the top left and a large blue square at the bottom right on a grey background
    a red circle and a blue square on a grey background          (sizes and positions free)
"""
from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

SHAPES = ("circle", "square", "triangle", "diamond")
COLOURS = ("red", "green", "blue", "yellow", "purple", "orange")
POSITIONS = ("top left", "top right", "bottom left", "bottom right")
SIZES = ("small", "large")
BACKGROUNDS = ("grey", "white", "black", "brown")
MAX_OBJECTS = 2

# Fraction of prompts held out from teacher training; chosen by a stable hash of the caption.
HELD_OUT_PERCENT = 10


class GrammarError(ValueError):
    """A prompt that the tiny-sd15 grammar cannot parse."""


@dataclass(frozen=True)
class ObjectSpec:
    """One object as a prompt names it; None marks an attribute the prompt leaves free."""

    shape: str
    colour: str
    size: str | None = None
    position: str | None = None


@dataclass(frozen=True)
class PromptSpec:
    objects: tuple[ObjectSpec, ...]
    background: str

    @property
    def free_attributes(self) -> tuple[str, ...]:
        """Attributes some object leaves unspecified ("size", "position")."""
        free = []
        if any(o.size is None for o in self.objects):
            free.append("size")
        if any(o.position is None for o in self.objects):
            free.append("position")
        return tuple(free)


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    position: str


@dataclass(frozen=True)
class Scene:
    """A fully specified scene: what the renderer draws and the classifier is trained on."""

    objects: tuple[SceneObject, ...]  # ordered by position, at most one per quadrant
    background: str

    def caption(self, name_size: bool = True, name_position: bool = True) -> str:
        return format_prompt(
            PromptSpec(
                tuple(
                    ObjectSpec(o.shape, o.colour, o.size if name_size else None,
                               o.position if name_position else None)
                    for o in self.objects
                ),
                self.background,
            )
        )


def format_object(o: ObjectSpec) -> str:
    words = ["a"] + ([o.size] if o.size else []) + [o.colour, o.shape]
    if o.position:
        words += ["at the", o.position]
    return " ".join(words)


def format_prompt(spec: PromptSpec) -> str:
    return " and ".join(format_object(o) for o in spec.objects) + f" on a {spec.background} background"


def _alternatives(words) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_OBJECT_RE = re.compile(
    rf"a (?:(?P<size>{_alternatives(SIZES)}) )?(?P<colour>{_alternatives(COLOURS)}) "
    rf"(?P<shape>{_alternatives(SHAPES)})(?: at the (?P<position>{_alternatives(POSITIONS)}))?"
)
_PROMPT_RE = re.compile(rf"(?P<objects>.+) on a (?P<background>{_alternatives(BACKGROUNDS)}) background")


def parse_prompt(prompt: str) -> PromptSpec:
    """Parse a caption of the grammar; raise GrammarError naming what is wrong."""
    text = " ".join(prompt.strip().lower().split())
    match = _PROMPT_RE.fullmatch(text)
    if not match:
        raise GrammarError(
            f"prompt {prompt!r} is not in the tiny-sd15 grammar: expected "
            f"'a [size] <colour> <shape> [at the <position>] [and a ...] on a <background> background' "
            f"with colours {', '.join(COLOURS)}; shapes {', '.join(SHAPES)}; backgrounds {', '.join(BACKGROUNDS)}"
        )
    parts = match["objects"].split(" and ")
    if len(parts) > MAX_OBJECTS:
        raise GrammarError(f"prompt {prompt!r} names {len(parts)} objects; the grammar allows at most {MAX_OBJECTS}")
    objects = []
    for part in parts:
        m = _OBJECT_RE.fullmatch(part)
        if not m:
            raise GrammarError(f"prompt {prompt!r}: cannot parse the object {part!r}")
        objects.append(ObjectSpec(m["shape"], m["colour"], m["size"], m["position"]))
    positions = [o.position for o in objects if o.position]
    if len(set(positions)) != len(positions):
        raise GrammarError(f"prompt {prompt!r} puts two objects at the same position")
    return PromptSpec(tuple(objects), match["background"])


def is_held_out(prompt: str) -> bool:
    """Whether a caption belongs to the held-out prompt split (stable across runs and machines)."""
    return zlib.crc32(prompt.encode()) % 100 < HELD_OUT_PERCENT


def vocabulary_words() -> list[str]:
    """Every word the grammar can produce, in a fixed order (the tokenizer is built from it)."""
    words: list[str] = []
    for phrase in ("a", "at the", "and", "on a", "background", *SIZES, *COLOURS, *SHAPES, *POSITIONS, *BACKGROUNDS):
        for w in phrase.split():
            if w not in words:
                words.append(w)
    return words
