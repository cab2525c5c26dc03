"""The tiny-sd15 world's attribute classifier: the feature space and judge of the world metrics.

A small CNN reads a 64x64 image and predicts the background and, for each quadrant,
whether it holds an object and that object's shape, colour and size. Every head reads one
64-d bottleneck, which is the feature space of the Frechet distances.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from . import grammar as g

FEATURE_DIM = 64


@dataclass(frozen=True)
class ClassifierConfig:
    width: int = 32  # channels of the first conv stage; doubles at each of the three stages
    feature_dim: int = FEATURE_DIM


class AttributeClassifier(nn.Module):
    def __init__(self, config: ClassifierConfig = ClassifierConfig()):
        super().__init__()
        self.config = config
        w = config.width
        layers, channels = [], 3
        for out in (w, 2 * w, 4 * w):  # 64 -> 32 -> 16 -> 8
            layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1), nn.GroupNorm(8, out), nn.SiLU(),
                       nn.Conv2d(out, out, 3, padding=1), nn.GroupNorm(8, out), nn.SiLU()]
            channels = out
        self.trunk = nn.Sequential(*layers)
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

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(folder / "model.safetensors"))
        (folder / "config.json").write_text(json.dumps(asdict(self.config), indent=2) + "\n")

    @classmethod
    def load(cls, folder: str | Path) -> "AttributeClassifier":
        folder = Path(folder)
        model = cls(ClassifierConfig(**json.loads((folder / "config.json").read_text())))
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
        return model.eval()


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
