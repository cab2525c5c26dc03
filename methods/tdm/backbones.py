"""What the trainer needs from a backbone: the three roles, the trainable networks, batches
of noise and conditions, and the export of a trained student.

`SDBackbone` serves SD-1.5-style pipeline folders (the tiny-sd15 world and SD-1.5 itself),
`SDXLBackbone` (backbones_sdxl.py) SDXL, `PixArtBackbone` (backbones_pixart.py) PixArt-alpha and
`CogVideoXBackbone` (backbones_cogvideox.py) CogVideoX text-to-video; what they share is in
pipeline_backbone.py. `GMMBackbone` serves the gmm world, whose teacher is exact. All answer the
same questions, so `train.py` never asks which one it holds.
"""
from __future__ import annotations

from pathlib import Path

import torch

from methods.common.errors import UserError
from methods.common.worlds import world

from .backbones_cogvideox import CogVideoXBackbone
from .backbones_pixart import PixArtBackbone
from .backbones_sdxl import SDXLBackbone
from .config import TrainConfig
from .pipeline_backbone import PipelineBackbone, resolve_teacher, write_student_card  # noqa: F401 (re-exported)
from .randomness import BatchRandom
from .step_conditioning import STEP_EMBEDDING_DIM, step_embedding
from .trainer import Roles


def step_condition(config: TrainConfig, K: int, n: int, device) -> torch.Tensor | None:
    """The K embedding for n rows when the run conditions on K (Eq. 8), else None."""
    method = config.method
    if not (method.unify and method.step_conditioning):
        return None
    return step_embedding(torch.full((n,), K), STEP_EMBEDDING_DIM).to(device)


class SDBackbone(PipelineBackbone):
    """A StableDiffusionPipeline folder: UNet teacher, copies as student and fake score."""

    LOAD_KWARGS = dict(safety_checker=None, feature_extractor=None, requires_safety_checker=False)

    def _tokenize(self, prompts: list[str]) -> torch.Tensor:
        tok = self.pipe.tokenizer
        return tok(prompts, padding="max_length", max_length=tok.model_max_length, truncation=True,
                   return_tensors="pt").input_ids

    def _encode_tokens(self, ids: torch.Tensor) -> dict:
        return {"encoder_hidden_states": self.pipe.text_encoder(ids.to(self.device, non_blocking=True))[0]}

    def _encode(self, prompts: list[str]) -> dict:
        return self._encode_tokens(self._tokenize(prompts))


class ModuleDenoiser:
    """A module whose forward is its x0 prediction, as a denoiser; `model` may be DDP-wrapped."""

    def __init__(self, model):
        self.model = model

    def x0(self, x_t, t, cond, step_cond=None):
        return self.model(x_t, t, cond, step_cond)


class GMMBackbone:
    """The gmm world: exact teacher, residual-MLP student and fake score, class labels as prompts."""

    def __init__(self, config: TrainConfig, device: torch.device, weight_dtype: torch.dtype):
        gmm = world("gmm")
        self.config, self.device = config, device
        self.mixture = gmm.GaussianMixture.default()
        schedule = gmm.sd15_schedule()
        teacher = self.teacher = gmm.ExactDenoiser(self.mixture, schedule)
        torch.manual_seed(config.seed)
        self.modules = {"student": self.trainable_copy(device), "fake_score": self.trainable_copy(device)}
        self.roles = Roles(ModuleDenoiser(self.modules["student"]), ModuleDenoiser(self.modules["fake_score"]),
                           teacher, schedule)
        self.latent_shape = (self.mixture.dim,)

    def trainable_copy(self, device):
        """A fresh residual MLP of the student's architecture (random init from torch's global RNG)."""
        return world("gmm").ResidualStudent(self.teacher, self.mixture.classes).to(device)

    def host_batch(self, rng: BatchRandom, step: int) -> dict:
        labels = rng.randint(self.mixture.classes)
        return {"labels": labels, "noise": rng.randn(*self.latent_shape)}

    def device_batch(self, host: dict):
        labels = host["labels"].to(self.device)
        return host["noise"].to(self.device), {"class": labels}, {"class": torch.full_like(labels, -1)}

    def batch(self, rng: BatchRandom, step: int):
        return self.device_batch(self.host_batch(rng, step))

    def export(self, student, out: Path, K: int) -> Path:
        out.mkdir(parents=True, exist_ok=True)
        torch.save(student.mlp.state_dict(), out / "student_mlp.pt")
        write_student_card(out, self.config, K, None, None)
        return out


BACKBONES = {"sd15": SDBackbone, "sdxl": SDXLBackbone, "pixart": PixArtBackbone, "cogvideox": CogVideoXBackbone,
             "gmm": GMMBackbone}


def load_backbone(config: TrainConfig, device: torch.device, weight_dtype: torch.dtype):
    if config.backbone not in BACKBONES:
        raise UserError(f"backbone {config.backbone!r} has presets but no training path yet; "
                        f"trainable now: {', '.join(BACKBONES)}")
    return BACKBONES[config.backbone](config, device, weight_dtype)
