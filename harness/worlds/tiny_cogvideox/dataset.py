"""Procedural captioned clips of the tiny-cogvideox world, deterministic per seed.

Each clip has FRAMES frames of RESOLUTION x RESOLUTION pixels (9 frames: CogVideoX's causal VAE
keeps the first frame and compresses the other 8 by 4, so its latent has 3 frames). Every
object moves at constant speed along a straight path centred in its quadrant, TRAVEL pixels
from the first frame to the last (or stands still), so objects never meet. Clips are sampled
with numpy's PCG64 (identical on every platform), captions come from `grammar`, and `render`
draws the frames with the tiny-sd15 world's renderer, batched, on any device.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from harness.worlds.building import take_split
from harness.worlds.tiny_sd15.dataset import _RGB, RESOLUTION, draw_pixels

from . import grammar as g

FRAMES = 9
TRAVEL = 12.0  # pixels from the first frame to the last; a quadrant is 32 wide, an object about 15
_QUADRANT_CENTRES = {"top left": (16, 16), "top right": (48, 16), "bottom left": (16, 48), "bottom right": (48, 48)}
_DIRECTION = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1), "still": (0, 0)}  # image axes: y down
RADIUS = 7.0
# Probability that a caption names the motions / positions; the rest leave them free (several modes).
P_NAME_MOTION = 0.8
P_NAME_POSITION = 0.5


@dataclass(frozen=True)
class Sample:
    clip: g.Clip
    caption: str


def sample_clips(seed: int, n: int, split: str = "train") -> list[Sample]:
    """n captioned clips of one split ("train" or "held_out"), a pure function of (seed, n, split).

    The held-out split is the set of captions `grammar.is_held_out` selects; training clips
    never carry one of those captions.
    """
    rng = np.random.default_rng([seed, 10 if split == "train" else 11])  # take_split checks `split`
    return take_split(lambda k: _draw(rng, k), g.is_held_out, n, split)


def _draw(rng: np.random.Generator, n: int) -> list[Sample]:
    n_objects = rng.integers(1, g.MAX_OBJECTS + 1, n)
    positions = np.argsort(rng.random((n, len(g.POSITIONS))), axis=1)
    shapes = rng.integers(0, len(g.SHAPES), (n, g.MAX_OBJECTS))
    colours = rng.integers(0, len(g.COLOURS), (n, g.MAX_OBJECTS))
    motions = rng.integers(0, len(g.MOTIONS), (n, g.MAX_OBJECTS))
    backgrounds = rng.integers(0, len(g.BACKGROUNDS), n)
    name_motion = rng.random(n) < P_NAME_MOTION
    name_position = rng.random(n) < P_NAME_POSITION
    samples = []
    for i in range(n):
        slots = sorted(positions[i, : n_objects[i]])
        objects = tuple(g.ClipObject(g.SHAPES[shapes[i, k]], g.COLOURS[colours[i, k]], g.MOTIONS[motions[i, k]],
                                     g.POSITIONS[slot]) for k, slot in enumerate(slots))
        clip = g.Clip(objects, g.BACKGROUNDS[backgrounds[i]])
        samples.append(Sample(clip, clip.caption(bool(name_motion[i]), bool(name_position[i]))))
    return samples


def clip_for_prompt(spec: g.PromptSpec, rng: np.random.Generator) -> g.Clip:
    """A clip drawn from p(clip | prompt): free motions and positions are uniform."""
    taken = {o.position for o in spec.objects if o.position}
    free_positions = [p for p in g.POSITIONS if p not in taken]
    rng.shuffle(free_positions)
    objects = [g.ClipObject(o.shape, o.colour, o.motion or g.MOTIONS[rng.integers(len(g.MOTIONS))],
                            o.position or free_positions.pop()) for o in spec.objects]
    objects.sort(key=lambda o: g.POSITIONS.index(o.position))
    return g.Clip(tuple(objects), spec.background)


def clip_labels(clips: list[g.Clip]) -> dict[str, torch.Tensor]:
    """Per-quadrant labels: content (0 empty, 1 + shape), colour, motion; and background.

    Colour and motion of an empty quadrant are -100 (ignored by cross-entropy).
    """
    n, slots = len(clips), len(g.POSITIONS)
    content = torch.zeros(n, slots, dtype=torch.long)
    colour = torch.full((n, slots), -100, dtype=torch.long)
    motion = torch.full((n, slots), -100, dtype=torch.long)
    background = torch.tensor([g.BACKGROUNDS.index(c.background) for c in clips], dtype=torch.long)
    for i, c in enumerate(clips):
        for o in c.objects:
            k = g.POSITIONS.index(o.position)
            content[i, k] = 1 + g.SHAPES.index(o.shape)
            colour[i, k] = g.COLOURS.index(o.colour)
            motion[i, k] = g.MOTIONS.index(o.motion)
    return {"content": content, "colour": colour, "motion": motion, "background": background}


def paths(clips: list[g.Clip], seed: int) -> torch.Tensor:
    """Each quadrant's object centre per frame, (n, FRAMES, 4, 2) in pixels (x, y): a straight
    path of length TRAVEL in the object's direction, centred in its quadrant up to +-2 px."""
    n, slots = len(clips), len(g.POSITIONS)
    rng = np.random.default_rng([seed, 12])
    labels = clip_labels(clips)
    middle = torch.tensor([_QUADRANT_CENTRES[p] for p in g.POSITIONS], dtype=torch.float32).expand(n, slots, 2)
    middle = middle + torch.from_numpy(rng.uniform(-2, 2, (n, slots, 2))).float()
    direction = torch.tensor([_DIRECTION[m] for m in g.MOTIONS], dtype=torch.float32)[labels["motion"].clamp(min=0)]
    progress = torch.linspace(-0.5, 0.5, FRAMES)[None, :, None, None]  # first frame -0.5, last +0.5
    return middle[:, None] + TRAVEL * progress * direction[:, None]


def render(clips: list[g.Clip], seed: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """Draw clips as float frames in [-1, 1], shape (n, FRAMES, 3, RESOLUTION, RESOLUTION).

    `seed` fixes the per-clip jitter (path placement, radius, colour, background stripes), the
    same in every frame of a clip, so that only the objects' motion changes from frame to frame.
    """
    n, slots = len(clips), len(g.POSITIONS)
    rng = np.random.default_rng([seed, 13])
    labels = clip_labels(clips)
    present = (labels["content"] > 0).float()
    radius = RADIUS * torch.from_numpy(rng.uniform(0.92, 1.08, (n, slots))).float()
    palette = torch.tensor([_RGB[c] for c in g.COLOURS])
    colour = palette[labels["colour"].clamp(min=0)] + torch.from_numpy(rng.uniform(-0.05, 0.05, (n, slots, 3))).float()
    background = torch.tensor([_RGB[c.background] for c in clips]) + torch.from_numpy(
        rng.uniform(-0.04, 0.04, (n, 3))).float()
    stripes = torch.from_numpy(np.stack([rng.uniform(0, np.pi, n), rng.uniform(0, 2 * np.pi, n),
                                         rng.uniform(3, 6, n)], axis=1)).float()

    def per_frame(t: torch.Tensor) -> torch.Tensor:  # (n, ...) -> (n * FRAMES, ...), frames of a clip together
        return t.repeat_interleave(FRAMES, dim=0)

    centre = paths(clips, seed).reshape(n * FRAMES, slots, 2)
    args = (per_frame(present), centre, per_frame(radius), per_frame(colour), per_frame(background),
            per_frame(stripes), per_frame(labels["content"]))
    frames = draw_pixels(*(a.to(device) for a in args)).clamp(-1, 1)
    return frames.view(n, FRAMES, 3, RESOLUTION, RESOLUTION)
