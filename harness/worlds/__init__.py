"""The small worlds that ship with the project, by name."""
from __future__ import annotations


from methods.common.errors import UserError, did_you_mean

WORLDS = {
    "tiny-sd15": "a small Stable Diffusion v1.5 pipeline trained on captioned scenes of coloured shapes",
}


def check_world(name: str) -> str:
    if name not in WORLDS:
        raise UserError(f"unknown world {name!r}{did_you_mean(name, WORLDS)} Known worlds: {', '.join(WORLDS)}")
    return name
