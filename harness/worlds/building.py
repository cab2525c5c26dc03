"""What the small worlds' builders, datasets and judges share (tiny-sd15, tiny-cogvideox).

Training loops' helpers (bf16 autocast on a GPU, EMA, timed stages), a classifier mixin that
saves to safetensors with its config, the held-out split of procedurally captioned samples, and
the choice of mode-coverage prompts.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file


def check_build_config(cfg) -> None:
    """The range checks both worlds' BuildConfigs share (they name their stages alike); a ValueError
    naming the first setting out of range."""
    for name in ("vae_steps", "vae_batch", "classifier_steps", "classifier_batch", "bank_size", "teacher_steps",
                 "teacher_batch"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(cfg, name)}")
    for name in ("vae_lr", "classifier_lr", "teacher_lr"):
        if not (getattr(cfg, name) > 0 and math.isfinite(getattr(cfg, name))):
            raise ValueError(f"{name} must be a positive number, got {getattr(cfg, name)}")
    for name in ("seed", "teacher_warmup", "teacher_max_minutes", "vae_kl_weight"):
        if not getattr(cfg, name) >= 0:
            raise ValueError(f"{name} must be 0 or more, got {getattr(cfg, name)}")
    for name in ("caption_dropout", "ema_decay"):
        if not 0 <= getattr(cfg, name) < 1:
            raise ValueError(f"{name} must lie in [0, 1), got {getattr(cfg, name)}")


def autocast(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def fit(model: torch.nn.Module, lr: float, batches, loss_of: Callable, device) -> tuple[torch.nn.Module, list[float]]:
    """AdamW (no weight decay) on `loss_of(batch)` (run under bf16 autocast on a GPU) for every batch
    of the iterable `batches`; the model in eval mode and the losses."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    for batch in batches:
        with autocast(device):
            loss = loss_of(batch)
        opt.zero_grad(set_to_none=True)
        loss.float().backward()
        opt.step()
        losses.append(loss.detach())  # no .item() here: it would wait for the GPU every step
    return model.eval(), torch.stack(losses).float().tolist()


@torch.no_grad()
def ema_update(ema_models, models_, decay: float) -> None:
    for ema_model, model in zip(ema_models, models_):
        torch._foreach_lerp_(list(ema_model.parameters()), list(model.parameters()), 1 - decay)


def tail_mean(values: list[float], n: int = 100) -> float:
    tail = values[-n:]
    return round(sum(tail) / max(len(tail), 1), 5)


def timed(record: dict, stage: str, run: Callable):
    """Run a stage that returns (*trained, losses); record its seconds, steps and final loss."""
    start = time.time()
    *trained, losses = run()
    record["stages"][stage] = {"seconds": round(time.time() - start, 1), "steps_done": len(losses),
                               "final_loss": tail_mean(losses)}
    return trained[0] if len(trained) == 1 else trained


class SavedWithConfig:
    """save(folder) / load(folder) for an nn.Module built from a frozen dataclass `config`
    (class attribute CONFIG): model.safetensors and config.json."""

    CONFIG: type

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(folder / "model.safetensors"))
        (folder / "config.json").write_text(json.dumps(asdict(self.config), indent=2) + "\n")

    @classmethod
    def load(cls, folder: str | Path):
        folder = Path(folder)
        model = cls(cls.CONFIG(**json.loads((folder / "config.json").read_text())))
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
        return model.eval()


def take_split(draw: Callable, is_held_out: Callable[[str], bool], n: int, split: str) -> list:
    """n samples of one split ("train" or "held_out") from `draw(k)`, which returns k fresh samples
    with a `.caption`; the held-out split is the captions `is_held_out` selects, and training
    samples never carry one of them."""
    if split not in ("train", "held_out"):
        raise ValueError(f"unknown split {split!r}; expected 'train' or 'held_out'")
    out: list = []
    while len(out) < n:
        for s in draw(max(64, 2 * (n - len(out)) if split == "train" else 12 * (n - len(out)))):
            if is_held_out(s.caption) == (split == "held_out"):
                out.append(s)
                if len(out) == n:
                    break
    return out


def coverage_prompts(held_out: list, parse: Callable, count: int, repeats: int) -> list[str]:
    """`count` distinct one-object captions of `held_out` samples that leave some attribute free,
    each repeated `repeats` times (several samples of one prompt: mode coverage)."""
    chosen: list[str] = []
    for s in held_out:
        spec = parse(s.caption)
        if len(spec.objects) == 1 and spec.free_attributes and s.caption not in chosen:
            chosen.append(s.caption)
        if len(chosen) == count:
            break
    return [p for p in chosen for _ in range(repeats)]
