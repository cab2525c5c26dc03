"""A stand-in for clean-fid's TorchScript Inception (`inception-2015-12-05.pt`): the same call
interface with a few random layers. The real file cannot be downloaded here; tests and the parity
check (harness/metrics/parity/) compare everything around the network with it: resize,
batching, statistics and the Frechet distance."""
from __future__ import annotations

from pathlib import Path

import torch

from .fid import INCEPTION_FILE


class _InceptionLayers(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, kernel_size=13, stride=13)
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.proj = torch.nn.Conv2d(8, 2048, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.pool(torch.relu(self.conv(x))))


class StandInInception(torch.nn.Module):
    """The interface of clean-fid's TorchScript file as clean-fid calls it: `layers(x)` on resized,
    normalised images gives the (n, 2048, 1, 1) pool features; `forward(img, return_features=True)`
    on [0, 255] images. A few random layers instead of Inception."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.layers = _InceptionLayers()
        self.output = torch.nn.Linear(2048, 1008)

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = torch.nn.functional.interpolate(img, size=(299, 299), mode="bilinear", align_corners=False)
        features = self.layers((x - 128) / 128).flatten(1)
        return features if return_features else self.output(features)


def write_inception(root: Path) -> Path:
    import warnings

    path = root / "clean-fid" / INCEPTION_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # torch >= 2.13 deprecates TorchScript; the real file is one
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(StandInInception().eval()).save(str(path))
    return path
