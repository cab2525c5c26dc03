"""The tiny-sd15 world's attribute classifier: the feature space and judge of the world metrics.

A small CNN reads a 64x64 image and predicts the background and, for each quadrant,
whether it holds an object and that object's shape, colour and size. Every head reads one
64-d bottleneck, which is the feature space of the Frechet distances.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from harness.worlds.building import SavedWithConfig

from . import grammar as g

FEATURE_DIM = 64


@dataclass(frozen=True)
class ClassifierConfig:
    width: int = 32  # channels of the first conv stage; doubles at each of the three stages
    feature_dim: int = FEATURE_DIM


def conv_trunk(width: int) -> tuple[nn.Sequential, int]:
    """Three stride-2 stages of two 3x3 convolutions (64 -> 32 -> 16 -> 8 pixels), width doubling
    at each; also the video world's per-frame trunk. Returns the trunk and its output channels."""
    layers, channels = [], 3
    for out in (width, 2 * width, 4 * width):
        layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1), nn.GroupNorm(8, out), nn.SiLU(),
                   nn.Conv2d(out, out, 3, padding=1), nn.GroupNorm(8, out), nn.SiLU()]
        channels = out
    return nn.Sequential(*layers), channels


class AttributeClassifier(SavedWithConfig, nn.Module):
    CONFIG = ClassifierConfig

    def __init__(self, config: ClassifierConfig = ClassifierConfig()):
        super().__init__()
        self.config = config
        self.trunk, channels = conv_trunk(config.width)
        self.bottleneck = nn.Sequential(nn.Flatten(), nn.Linear(channels * 8 * 8, config.feature_dim), nn.SiLU())
        slots = len(g.POSITIONS)
        self.heads = nn.ModuleDict({
            "background": nn.Linear(config.feature_dim, len(g.BACKGROUNDS)),
            "content": nn.Linear(config.feature_dim, slots * (1 + len(g.SHAPES))),
            "colour": nn.Linear(config.feature_dim, slots * len(g.COLOURS)),
            "size": nn.Linear(config.feature_dim, slots * len(g.SIZES)),
        })

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """images in [-1, 1], (n, 3, 64, 64) -> (n, feature_dim)."""
        return self.bottleneck(self.trunk(images))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per head: background (n, B); content, colour, size (n, slots, classes)."""
        f = self.features(images)
        slots = len(g.POSITIONS)
        out = {"background": self.heads["background"](f)}
        for name in ("content", "colour", "size"):
            out[name] = self.heads[name](f).view(len(f), slots, -1)
        return out

    def loss(self, images: torch.Tensor, labels: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = self(images)
        ce = nn.functional.cross_entropy
        total = ce(logits["background"], labels["background"])
        for name in ("content", "colour", "size"):
            total = total + ce(logits[name].flatten(0, 1), labels[name].flatten(), ignore_index=-100)
        return total

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Arg-max labels in the layout of `dataset.scene_labels` (colour/size kept for all slots)."""
        return {k: v.argmax(-1) for k, v in self(images).items()}


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Blur and noise of random strength, so the judge also reads soft, decoded samples."""
    n = len(images)
    sigma = torch.rand(n, generator=generator, device=images.device) * 1.2
    taps = torch.arange(-2, 3, device=images.device, dtype=images.dtype)
    kernel = torch.exp(-(taps[None] ** 2) / (2 * sigma[:, None].clamp(min=1e-3) ** 2))
    kernel = kernel / kernel.sum(1, keepdim=True)  # (n, 5), separable
    x = images.permute(1, 0, 2, 3).reshape(1, 3 * n, *images.shape[2:])
    kx = kernel.repeat(3, 1)[:, None, None, :]
    x = nn.functional.conv2d(nn.functional.pad(x, (2, 2, 0, 0), mode="replicate"), kx, groups=3 * n)
    x = nn.functional.conv2d(nn.functional.pad(x, (0, 0, 2, 2), mode="replicate"), kx.transpose(2, 3), groups=3 * n)
    x = x.reshape(3, n, *images.shape[2:]).permute(1, 0, 2, 3)
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x + noise * torch.rand(n, 1, 1, 1, generator=generator, device=x.device) * 0.1
