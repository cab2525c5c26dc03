"""What the trainer needs from a backbone: the three roles, the trainable networks, batches
of noise and conditions, and the export of a trained student.

`SDBackbone` serves SD-1.5-style pipeline folders (the tiny-sd15 world and SD-1.5 itself);
`GMMBackbone` serves the gmm world, whose teacher is exact. Both answer the same questions,
so `train.py` never asks which one it holds.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from methods.common.adapters import UNetAdapter
from methods.common.errors import UserError
from methods.common.pipeline_io import check_pipeline_folder
from methods.common.schedule import NoiseSchedule

from .config import TrainConfig
from .randomness import BatchRandom
from .step_conditioning import STEP_EMBEDDING_DIM, fold_step_conditioning, step_embedding, with_step_conditioning
from .trainer import Roles

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


def resolve_teacher(name: str) -> Path:
    """A local pipeline folder for `name`: a folder, "tiny-sd15", or a Hugging Face id already cached."""
    if name == "tiny-sd15":
        from harness.worlds.tiny_sd15.judge import PIPELINE

        return check_pipeline_folder(PIPELINE)
    if not name:
        raise UserError("no teacher given: set teacher=<pipeline folder or Hugging Face id>")
    if Path(name).exists():
        return check_pipeline_folder(name)
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(name, local_files_only=True)
    except Exception:  # huggingface_hub raises several types for "not cached" and "bad id"
        raise UserError(f"teacher {name!r} is neither a local folder nor in the Hugging Face cache; "
                        f"download it on a connected machine (huggingface-cli download {name}) "
                        "or pass teacher=<local pipeline folder>") from None
    return check_pipeline_folder(folder)


def step_condition(config: TrainConfig, K: int, n: int, device) -> torch.Tensor | None:
    """The K embedding for n rows when the run conditions on K (Eq. 8), else None."""
    method = config.method
    if not (method.unify and method.step_conditioning):
        return None
    return step_embedding(torch.full((n,), K), STEP_EMBEDDING_DIM).to(device)


class SDBackbone:
    """A StableDiffusionPipeline folder: UNet teacher, copies as student and fake score."""

    def __init__(self, config: TrainConfig, device: torch.device, weight_dtype: torch.dtype):
        from diffusers import StableDiffusionPipeline

        self.config, self.device = config, device
        self.folder = resolve_teacher(config.teacher)
        try:
            pipe = StableDiffusionPipeline.from_pretrained(
                str(self.folder), safety_checker=None, feature_extractor=None, requires_safety_checker=False,
                local_files_only=True)
        except (OSError, ValueError, KeyError) as err:
            raise UserError(f"cannot load the pipeline in {self.folder}: {err}") from None
        self.pipe = pipe
        teacher = pipe.unet.to(device, weight_dtype).requires_grad_(False).eval()
        self.text_encoder = pipe.text_encoder.to(device, weight_dtype).requires_grad_(False).eval()
        torch.manual_seed(config.seed)  # LoRA's random init: from the config, not the process's history
        self.modules = {"student": self._trainable(teacher), "fake_score": self._trainable(teacher)}
        adapter = lambda model: UNetAdapter.from_scheduler(model, pipe.scheduler)  # noqa: E731
        self.roles = Roles(adapter(self.modules["student"]), adapter(self.modules["fake_score"]), adapter(teacher),
                           NoiseSchedule.from_scheduler(pipe.scheduler))
        scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
        size = config.resolution or teacher.config.sample_size * scale
        if size % scale:
            raise UserError(f"resolution {size} is not a multiple of the VAE's factor {scale}")
        self.latent_shape = (teacher.config.in_channels, size // scale, size // scale)
        self.prompts = _prompt_source(config)
        with torch.no_grad():
            self.uncond_embedding = self._encode([""])

    def _trainable(self, teacher):
        """Algorithm 1, line 1: a copy of the teacher; with step conditioning and LoRA when asked."""
        model = copy.deepcopy(teacher).float()
        if self.config.method.unify and self.config.method.step_conditioning:
            model = with_step_conditioning(model)
        if self.config.lora_rank:
            from peft import LoraConfig

            model.requires_grad_(False)
            model.add_adapter(LoraConfig(r=self.config.lora_rank, lora_alpha=self.config.lora_rank,
                                         init_lora_weights="gaussian", target_modules=LORA_TARGETS))
            if model.time_embedding.cond_proj is not None:
                model.time_embedding.cond_proj.requires_grad_(True)
        return model.requires_grad_(True) if not self.config.lora_rank else model.train()

    def _encode(self, prompts: list[str]) -> torch.Tensor:
        tok = self.pipe.tokenizer
        ids = tok(prompts, padding="max_length", max_length=tok.model_max_length, truncation=True,
                  return_tensors="pt").input_ids.to(self.device)
        return self.text_encoder(ids)[0]

    def batch(self, rng: BatchRandom, step: int):
        """Noise, cond and uncond for this process's rows of the global batch of `step`."""
        prompts = self.prompts(self.config.seed, step, rng.global_size)[rng.rows]
        with torch.no_grad():
            cond = {"encoder_hidden_states": self._encode(list(prompts)).float()}
        uncond = {"encoder_hidden_states": self.uncond_embedding.float().expand(len(prompts), -1, -1)}
        return rng.randn(*self.latent_shape), cond, uncond

    def export(self, student, out: Path, K: int) -> Path:
        """A StableDiffusionPipeline folder whose UNet is the student for K steps (CFG baked in)."""
        from diffusers import DPMSolverMultistepScheduler

        unet = copy.deepcopy(student).to("cpu", torch.float32)
        lora_dir = None
        if self.config.lora_rank:
            from peft.utils import get_peft_model_state_dict

            # With the "unet." key prefix diffusers' loaders look for, so that the teacher's
            # pipe.load_lora_weights(lora_dir) applies it (unet.save_lora_adapter writes bare keys,
            # which load_lora_weights skips with only a warning).
            lora_dir = out / "lora"
            type(self.pipe).save_lora_weights(
                str(lora_dir), unet_lora_layers=get_peft_model_state_dict(unet),
                unet_lora_adapter_metadata=unet.peft_config["default"].to_dict())
            unet.fuse_lora()
            unet.unload_lora()
        if unet.config.time_cond_proj_dim is not None:
            unet = fold_step_conditioning(unet, K)
        scheduler = DPMSolverMultistepScheduler.from_config(
            self.pipe.scheduler.config, algorithm_type="dpmsolver++", solver_order=2, timestep_spacing="trailing")
        pipe = type(self.pipe)(vae=self.pipe.vae, text_encoder=self.pipe.text_encoder, tokenizer=self.pipe.tokenizer,
                               unet=unet, scheduler=scheduler, safety_checker=None, feature_extractor=None,
                               requires_safety_checker=False)
        pipe.save_pretrained(str(out))
        scheduler.set_timesteps(K)
        _write_student_card(out, self.config, K, [int(t) for t in scheduler.timesteps], lora_dir)
        return out


class ModuleDenoiser:
    """A module whose forward is its x0 prediction, as a denoiser; `model` may be DDP-wrapped."""

    def __init__(self, model):
        self.model = model

    def x0(self, x_t, t, cond, step_cond=None):
        return self.model(x_t, t, cond, step_cond)


class GMMBackbone:
    """The gmm world: exact teacher, residual-MLP student and fake score, class labels as prompts."""

    def __init__(self, config: TrainConfig, device: torch.device, weight_dtype: torch.dtype):
        from harness.worlds.gmm import ExactDenoiser, GaussianMixture, ResidualStudent, sd15_schedule

        self.config, self.device = config, device
        self.mixture = GaussianMixture.default()
        schedule = sd15_schedule()
        teacher = ExactDenoiser(self.mixture, schedule)
        torch.manual_seed(config.seed)
        self.modules = {"student": ResidualStudent(teacher, self.mixture.classes).to(device),
                        "fake_score": ResidualStudent(teacher, self.mixture.classes).to(device)}
        self.roles = Roles(ModuleDenoiser(self.modules["student"]), ModuleDenoiser(self.modules["fake_score"]),
                           teacher, schedule)
        self.latent_shape = (self.mixture.dim,)

    def batch(self, rng: BatchRandom, step: int):
        labels = rng.randint(self.mixture.classes)
        return rng.randn(*self.latent_shape), {"class": labels}, {"class": torch.full_like(labels, -1)}

    def export(self, student, out: Path, K: int) -> Path:
        out.mkdir(parents=True, exist_ok=True)
        torch.save(student.mlp.state_dict(), out / "student_mlp.pt")
        _write_student_card(out, self.config, K, None, None)
        return out


def _write_student_card(out: Path, config: TrainConfig, K: int, timesteps, lora_dir) -> None:
    from dataclasses import asdict

    card = {"method": "TDM", "steps": K, "timesteps": timesteps, "guidance_scale": 1.0,
            "note": "CFG is distilled into the student: sample with guidance_scale=1",
            "lora": None if lora_dir is None else str(lora_dir.name), "config": asdict(config)}
    (out / "tdm_student.json").write_text(json.dumps(card, indent=2, default=list))


def _prompt_source(config: TrainConfig):
    """prompts(seed, step, n) -> the n prompts of the global batch of `step` (a pure function)."""
    import numpy as np

    if config.prompts == "tiny-sd15":
        from harness.worlds.tiny_sd15.dataset import sample_scenes

        return lambda seed, step, n: np.array([s.caption for s in sample_scenes(seed * 1_000_003 + step, n)],
                                               dtype=object)
    path = Path(config.prompts)
    if not config.prompts or not path.is_file():
        raise UserError(f"prompts={config.prompts!r}: expected 'tiny-sd15' or a text file with one prompt per line")
    lines = np.array([line.strip() for line in path.read_text().splitlines() if line.strip()], dtype=object)
    if not len(lines):
        raise UserError(f"prompt file {path} holds no prompts")

    def prompts(seed, step, n):
        rng = np.random.default_rng([seed, step])
        return lines[rng.integers(0, len(lines), n)]
    return prompts


BACKBONES = {"sd15": SDBackbone, "gmm": GMMBackbone}


def load_backbone(config: TrainConfig, device: torch.device, weight_dtype: torch.dtype):
    if config.backbone not in BACKBONES:
        raise UserError(f"backbone {config.backbone!r} has presets but no training path yet; "
                        f"trainable now: {', '.join(BACKBONES)}")
    return BACKBONES[config.backbone](config, device, weight_dtype)
