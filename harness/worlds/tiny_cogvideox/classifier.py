"""The tiny-cogvideox world's classifier: the feature space and judge of the world metrics.

A small CNN reads each frame (64 x 64) into an 8 x 8 map of features. Per frame it predicts the
background and, for each quadrant, whether it holds an object and that object's shape and
colour (per-frame attributes: the temporal-consistency metric asks how often they change within
a clip). Per clip it predicts each quadrant's motion from that quadrant's 4 x 4 features in every
frame, in order (motion needs where the object is, so the quadrant's map is not pooled). The
clip's features, the mean of its frames' bottlenecks beside its motion bottleneck, are the
feature space of the Frechet distances.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from harness.worlds.building import SavedWithConfig
from harness.worlds.tiny_sd15.classifier import conv_trunk

from . import grammar as g
from .dataset import FRAMES

FRAME_HEADS = ("content", "colour")


@dataclass(frozen=True)
class ClassifierConfig:
    width: int = 32        # channels of the first conv stage; doubles at each of the three stages
    frame_dim: int = 64    # a frame's bottleneck
    motion_dim: int = 64   # a quadrant's motion bottleneck


class ClipClassifier(SavedWithConfig, nn.Module):
    CONFIG = ClassifierConfig

    def __init__(self, config: ClassifierConfig = ClassifierConfig()):
        super().__init__()
        self.config = config
        self.trunk, channels = conv_trunk(config.width)  # per frame: 64 -> 8 pixels
        self.reduce = nn.Conv2d(channels, 16, 1)  # per location, before the quadrants' maps are read whole
        self.frame_bottleneck = nn.Sequential(nn.Flatten(), nn.Linear(channels * 8 * 8, config.frame_dim), nn.SiLU())
        self.motion_bottleneck = nn.Sequential(nn.Linear(FRAMES * 16 * 4 * 4, config.motion_dim), nn.SiLU())
        slots = len(g.POSITIONS)
        self.heads = nn.ModuleDict({
            "background": nn.Linear(config.frame_dim, len(g.BACKGROUNDS)),
            "content": nn.Linear(config.frame_dim, slots * (1 + len(g.SHAPES))),
            "colour": nn.Linear(config.frame_dim, slots * len(g.COLOURS)),
            "motion": nn.Linear(config.motion_dim, len(g.MOTIONS)),
        })

    @property
    def feature_dim(self) -> int:
        return self.config.frame_dim + self.config.motion_dim

    def _encode(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """clips in [-1, 1], (n, F, 3, 64, 64) -> frame bottlenecks (n, F, frame_dim) and each
        quadrant's motion bottleneck (n, 4, motion_dim)."""
        n = len(clips)
        maps = self.trunk(clips.flatten(0, 1))                                 # (n F, C, 8, 8)
        frames = self.frame_bottleneck(maps).view(n, FRAMES, -1)
        local = self.reduce(maps).view(n, FRAMES, 16, 2, 4, 2, 4)              # quadrant rows, cols of 4 x 4
        quadrants = local.permute(0, 3, 5, 1, 2, 4, 6).reshape(n, 4, -1)        # (n, slots: TL TR BL BR, F 16 4 4)
        return frames, self.motion_bottleneck(quadrants)

    def features(self, clips: torch.Tensor) -> torch.Tensor:
        """(n, F, 3, 64, 64) -> (n, feature_dim): the frames' mean bottleneck and the quadrants' mean motion one."""
        frames, motion = self._encode(clips)
        return torch.cat([frames.mean(1), motion.mean(1)], dim=1)

    def forward(self, clips: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits: background (n, F, B), content and colour (n, F, slots, classes) per frame;
        motion (n, slots, motions) per clip."""
        frames, motion = self._encode(clips)
        n, slots = len(clips), len(g.POSITIONS)
        out = {"background": self.heads["background"](frames), "motion": self.heads["motion"](motion)}
        for name in FRAME_HEADS:
            out[name] = self.heads[name](frames).view(n, FRAMES, slots, -1)
        return out

    def loss(self, clips: torch.Tensor, labels: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy of every head; clip labels (`dataset.clip_labels`) hold in every frame."""
        logits = self(clips)
        ce = nn.functional.cross_entropy
        total = ce(logits["background"].flatten(0, 1), labels["background"].repeat_interleave(FRAMES))
        total = total + ce(logits["motion"].flatten(0, 1), labels["motion"].flatten(), ignore_index=-100)
        for name in FRAME_HEADS:
            target = labels[name][:, None].expand(-1, FRAMES, -1)
            total = total + ce(logits[name].flatten(0, 2), target.flatten(), ignore_index=-100)
        return total

    @torch.no_grad()
    def predict(self, clips: torch.Tensor) -> dict[str, torch.Tensor]:
        """Arg-max labels: background (n, F), content and colour (n, F, slots), motion (n, slots)."""
        return {k: v.argmax(-1) for k, v in self(clips).items()}


def augment(clips: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The image world's blur and noise of random strength, frame by frame, so the judge also
    reads soft, decoded samples."""
    from harness.worlds.tiny_sd15.classifier import augment as augment_images

    return augment_images(clips.flatten(0, 1), generator).view_as(clips)
