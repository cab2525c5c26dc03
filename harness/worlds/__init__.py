"""The small worlds that ship with the project, by name."""
from __future__ import annotations

import difflib

from methods.common.errors import UserError

WORLDS = {
    "tiny-sd15": "a small Stable Diffusion v1.5 pipeline trained on captioned scenes of coloured shapes",
}


def check_world(name: str) -> str:
    if name not in WORLDS:
        close = difflib.get_close_matches(name, WORLDS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UserError(f"unknown world {name!r}{hint} Known worlds: {', '.join(WORLDS)}")
    return name
