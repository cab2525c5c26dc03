"""Read a finished run's logged losses and weights, and measure how far two runs are apart.

Used to check that N processes train what one does (tests/test_tdm_distributed.py on CPU,
`python -m methods.tdm.scaling` on GPUs).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

# accelerate names a checkpoint's networks by the order of prepare() in methods.tdm.train._prepare
CHECKPOINT_FILES = {"student": "model.safetensors", "fake_score": "model_1.safetensors"}


def read_losses(out: Path) -> list[dict]:
    """losses.jsonl: one record per logged step (step, K, loss/<role>)."""
    return [json.loads(line) for line in (Path(out) / "losses.jsonl").read_text().splitlines() if line]


def checkpoint_weights(out: Path) -> dict[str, dict[str, torch.Tensor]]:
    """Both roles' weights in the run's latest checkpoint (not FSDP's sharded layout)."""
    checkpoint = sorted((Path(out) / "checkpoints").glob("step-*"))[-1]
    return {role: load_file(checkpoint / name) for role, name in CHECKPOINT_FILES.items()}


def exported_weights(out: Path) -> dict[str, dict[str, torch.Tensor]]:
    """The exported student's denoiser weights, per student-K<K> folder (however it was trained)."""
    found = {}
    for folder in sorted(Path(out).glob("student-K*")):
        tensors = {}
        for file in sorted(folder.glob("*/diffusion_pytorch_model*.safetensors")):
            tensors.update(load_file(file))
        found[folder.name] = tensors
    return found


def loss_differences(a: list[dict], b: list[dict]) -> dict:
    """Largest relative difference per loss, with the logged steps and K checked to agree."""
    if [r["step"] for r in a] != [r["step"] for r in b] or [r["K"] for r in a] != [r["K"] for r in b]:
        raise ValueError("the two runs logged different steps or step counts K")
    keys = [k for k in a[0] if k.startswith("loss/")] if a else []
    return {k: max(abs(x[k] - y[k]) / max(abs(x[k]), 1e-12) for x, y in zip(a, b)) for k in keys}


def weight_differences(a: dict[str, dict[str, torch.Tensor]], b: dict[str, dict[str, torch.Tensor]]) -> dict:
    """Largest absolute difference per network; the same tensor names are required on both sides."""
    out = {}
    for name in a:
        if a[name].keys() != b[name].keys():
            raise ValueError(f"{name}: the two runs' tensors have different names")
        out[name] = max((a[name][k].float() - b[name][k].float()).abs().max().item() for k in a[name])
    return out
