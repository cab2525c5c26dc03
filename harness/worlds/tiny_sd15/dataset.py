"""Procedural captioned images of the tiny-sd15 world, deterministic per seed.

Scenes are sampled with numpy's PCG64 (identical on every platform), captions come from
`grammar`, and `render` draws them with torch, batched, on any device.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from harness.worlds.building import take_split

from . import grammar as g

RESOLUTION = 64  # pixels; the VAE maps this to a 16x16x4 latent
_QUADRANT_CENTRES = {"top left": (16, 16), "top right": (48, 16), "bottom left": (16, 48), "bottom right": (48, 48)}
_BASE_RADIUS = {"small": 7.0, "large": 12.0}
_RGB = {
    "red": (0.86, 0.16, 0.16), "green": (0.16, 0.70, 0.24), "blue": (0.16, 0.31, 0.86),
    "yellow": (0.90, 0.82, 0.16), "purple": (0.59, 0.24, 0.75), "orange": (0.94, 0.55, 0.12),
    "grey": (0.50, 0.50, 0.50), "white": (0.92, 0.92, 0.92), "black": (0.10, 0.10, 0.10),
    "brown": (0.43, 0.31, 0.20),
}
# Probability that a caption names sizes / positions; the rest leave them free (several modes).
P_NAME_SIZE = 0.75
P_NAME_POSITION = 0.75


@dataclass(frozen=True)
class Sample:
    scene: g.Scene
    caption: str


def sample_scenes(seed: int, n: int, split: str = "train") -> list[Sample]:
    """n captioned scenes of one split ("train" or "held_out"), a pure function of (seed, n, split).

    The held-out split is the set of captions `grammar.is_held_out` selects; training
    scenes never carry one of those captions.
    """
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])  # take_split checks `split`
    return take_split(lambda k: _draw(rng, k), g.is_held_out, n, split)


def _draw(rng: np.random.Generator, n: int) -> list[Sample]:
    n_objects = rng.integers(1, g.MAX_OBJECTS + 1, n)
    positions = np.argsort(rng.random((n, len(g.POSITIONS))), axis=1)
    shapes = rng.integers(0, len(g.SHAPES), (n, g.MAX_OBJECTS))
    colours = rng.integers(0, len(g.COLOURS), (n, g.MAX_OBJECTS))
    sizes = rng.integers(0, len(g.SIZES), (n, g.MAX_OBJECTS))
    backgrounds = rng.integers(0, len(g.BACKGROUNDS), n)
    name_size = rng.random(n) < P_NAME_SIZE
    name_position = rng.random(n) < P_NAME_POSITION
    samples = []
    for i in range(n):
        slots = sorted(positions[i, : n_objects[i]])
        objects = tuple(
            g.SceneObject(g.SHAPES[shapes[i, k]], g.COLOURS[colours[i, k]], g.SIZES[sizes[i, k]], g.POSITIONS[slot])
            for k, slot in enumerate(slots)
        )
        scene = g.Scene(objects, g.BACKGROUNDS[backgrounds[i]])
        samples.append(Sample(scene, scene.caption(bool(name_size[i]), bool(name_position[i]))))
    return samples


def scene_for_prompt(spec: g.PromptSpec, rng: np.random.Generator) -> g.Scene:
    """A scene drawn from p(scene | prompt): free sizes and positions are uniform."""
    taken = {o.position for o in spec.objects if o.position}
    free_positions = [p for p in g.POSITIONS if p not in taken]
    rng.shuffle(free_positions)
    objects = []
    for o in spec.objects:
        position = o.position or free_positions.pop()
        size = o.size or g.SIZES[rng.integers(len(g.SIZES))]
        objects.append(g.SceneObject(o.shape, o.colour, size, position))
    objects.sort(key=lambda o: g.POSITIONS.index(o.position))
    return g.Scene(tuple(objects), spec.background)


def scene_labels(scenes: list[g.Scene]) -> dict[str, torch.Tensor]:
    """Per-quadrant labels: content (0 empty, 1+shape), colour, size; and background.

    Colour and size of an empty quadrant are -100 (ignored by cross-entropy).
    """
    n, slots = len(scenes), len(g.POSITIONS)
    content = torch.zeros(n, slots, dtype=torch.long)
    colour = torch.full((n, slots), -100, dtype=torch.long)
    size = torch.full((n, slots), -100, dtype=torch.long)
    background = torch.tensor([g.BACKGROUNDS.index(s.background) for s in scenes], dtype=torch.long)
    for i, s in enumerate(scenes):
        for o in s.objects:
            k = g.POSITIONS.index(o.position)
            content[i, k] = 1 + g.SHAPES.index(o.shape)
            colour[i, k] = g.COLOURS.index(o.colour)
            size[i, k] = g.SIZES.index(o.size)
    return {"content": content, "colour": colour, "size": size, "background": background}


def render(scenes: list[g.Scene], seed: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """Draw scenes as float images in [-1, 1], shape (n, 3, 64, 64).

    `seed` fixes the small per-image jitter (object placement, radius, colour, background
    stripes), so the same scenes and seed give the same pixels.
    """
    n, slots = len(scenes), len(g.POSITIONS)
    rng = np.random.default_rng([seed, 2])
    labels = scene_labels(scenes)
    present = (labels["content"] > 0).float()
    centre = torch.tensor([_QUADRANT_CENTRES[p] for p in g.POSITIONS], dtype=torch.float32).expand(n, slots, 2)
    centre = centre + torch.from_numpy(rng.uniform(-3, 3, (n, slots, 2))).float()
    radius = torch.tensor(
        [[_BASE_RADIUS[g.SIZES[max(int(z), 0)]] for z in row] for row in labels["size"]], dtype=torch.float32
    ) * torch.from_numpy(rng.uniform(0.92, 1.08, (n, slots))).float()
    palette = torch.tensor([_RGB[c] for c in g.COLOURS])
    colour = palette[labels["colour"].clamp(min=0)] + torch.from_numpy(rng.uniform(-0.05, 0.05, (n, slots, 3))).float()
    background = torch.tensor([_RGB[s.background] for s in scenes]) + torch.from_numpy(
        rng.uniform(-0.04, 0.04, (n, 3))).float()
    stripes = torch.from_numpy(np.stack([rng.uniform(0, np.pi, n), rng.uniform(0, 2 * np.pi, n),
                                         rng.uniform(3, 6, n)], axis=1)).float()
    args = (present, centre, radius, colour, background, stripes, labels["content"])
    return draw_pixels(*(a.to(device) for a in args)).clamp(-1, 1)


def draw_pixels(present, centre, radius, colour, background, stripes, content) -> torch.Tensor:
    """Pixels in [-1, 1] of n images: per slot a shape (content 1 + SHAPES index; 0 none) of a colour
    at a centre with a radius, over a striped background; also the video world's frames."""
    n = present.shape[0]
    axis = torch.arange(RESOLUTION, device=present.device, dtype=torch.float32) + 0.5
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    # Background: flat colour with faint stripes of random angle, phase and frequency (texture).
    angle, phase, freq = (stripes[:, i, None, None] for i in range(3))
    wave = torch.sin(2 * torch.pi * freq * (xx * torch.cos(angle) + yy * torch.sin(angle)) / RESOLUTION + phase)
    image = background[:, :, None, None] + 0.06 * wave[:, None]
    dx = xx - centre[..., 0, None, None]  # (n, slots, H, W)
    dy = yy - centre[..., 1, None, None]
    r = radius[..., None, None]
    sdf = torch.stack([
        torch.sqrt(dx**2 + dy**2) - r,                                       # circle
        torch.maximum(dx.abs(), dy.abs()) - 0.8 * r,                          # square
        torch.maximum(dy, 0.866 * dx.abs() - 0.5 * dy) - 0.55 * r,            # triangle, apex up
        (dx.abs() + dy.abs()) / 1.4142 - 0.75 * r,                            # diamond
    ])
    shape_index = (content - 1).clamp(min=0)[None, ..., None, None].expand(1, n, -1, RESOLUTION, RESOLUTION)
    sdf = sdf.gather(0, shape_index)[0]
    coverage = (0.5 - sdf).clamp(0, 1) * present[..., None, None]  # one-pixel anti-aliasing
    shading = 1 - 0.12 * (torch.sqrt(dx**2 + dy**2) / r).clamp(max=1.5)  # soft radial shading (detail)
    for k in range(present.shape[1]):
        fill = colour[:, k, :, None, None] * shading[:, k, None]
        image = image * (1 - coverage[:, k, None]) + fill * coverage[:, k, None]
    return image * 2 - 1


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] float (n, 3, H, W) -> uint8 (n, H, W, 3), the layout samplers return."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def from_uint8(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1
