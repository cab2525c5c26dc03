"""Denoiser adapters: one interface, x0 and eps, over every diffusers backbone the paper uses.

Distillation code asks "what is x0 / eps at (x_t, t)?" and should never care whether the
backbone predicts epsilon (SD-1.5, SDXL, PixArt-alpha) or v (CogVideoX), how its conditions
are spelled, or how its output is laid out. Each adapter implements only `raw`: the model's
prediction in its own parameterisation; the base class converts it through the schedule.
"""
from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from .schedule import NoiseSchedule, eps_to_x0, v_to_eps, v_to_x0

PREDICTION_TYPES = ("epsilon", "v_prediction")


class Denoiser(Protocol):
    schedule: NoiseSchedule

    def x0(self, x_t: Tensor, t: Tensor, cond: dict, step_cond: Tensor | None = None) -> Tensor: ...

    def eps(self, x_t: Tensor, t: Tensor, cond: dict, step_cond: Tensor | None = None) -> Tensor: ...


class DenoiserAdapter:
    """Base class: holds model, schedule and prediction type; turns `raw` into x0 and eps.

    Conversions run in x_t's dtype; the model sees its inputs in its own dtype (so a bf16
    backbone can serve float32 latents), and its output is cast back to x_t's dtype."""

    def __init__(self, model, schedule: NoiseSchedule, prediction_type: str):
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
        self.model, self.schedule, self.prediction_type = model, schedule, prediction_type

    @classmethod
    def from_scheduler(cls, model, scheduler) -> "DenoiserAdapter":
        """Schedule and prediction type both from a diffusers scheduler instance."""
        return cls(model, NoiseSchedule.from_scheduler(scheduler), scheduler.config.prediction_type)

    @classmethod
    def from_config(cls, model, config: dict) -> "DenoiserAdapter":
        """Schedule and prediction type both from a scheduler config dict (epsilon when unset)."""
        return cls(model, NoiseSchedule.from_config(config), config.get("prediction_type", "epsilon"))

    def raw(self, x_t: Tensor, t: Tensor, cond: dict, step_cond: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def x0_eps(self, x_t: Tensor, t: Tensor, cond: dict, step_cond: Tensor | None = None):
        """Both predictions from one forward pass."""
        out = self.raw(x_t, t, cond, step_cond).to(x_t.dtype)
        alpha, sigma = self.schedule.alpha_sigma(t, x_t)
        if self.prediction_type == "epsilon":
            return eps_to_x0(x_t, out, alpha, sigma), out
        return v_to_x0(x_t, out, alpha, sigma), v_to_eps(x_t, out, alpha, sigma)

    def x0(self, x_t: Tensor, t: Tensor, cond: dict, step_cond: Tensor | None = None) -> Tensor:
        return self.x0_eps(x_t, t, cond, step_cond)[0]

    def eps(self, x_t: Tensor, t: Tensor, cond: dict, step_cond: Tensor | None = None) -> Tensor:
        return self.x0_eps(x_t, t, cond, step_cond)[1]

    # Helpers for subclasses.
    @property
    def core(self):
        """The model itself, under any DDP/FSDP wrapper that accelerate.prepare put around it."""
        return getattr(self.model, "module", self.model)

    def _in(self, x: Tensor | None) -> Tensor | None:
        """A floating tensor in the model's dtype and device (masks and ids left as they are)."""
        if x is None:
            return None
        dtype = self.core.dtype if x.is_floating_point() else x.dtype
        return x.to(device=self.core.device, dtype=dtype)

    def _t(self, t: Tensor, x_t: Tensor) -> Tensor:
        """Integer timesteps, one per row, on the model's device (as the pipelines pass them)."""
        return t.to(device=self.core.device, dtype=torch.long).expand(x_t.shape[0])

    def _step_cond(self, step_cond: Tensor | None, n: int) -> Tensor | None:
        """Check step_cond against the model's `time_cond_proj_dim`: only such models embed it."""
        if step_cond is None:
            return None
        dim = getattr(self.core.config, "time_cond_proj_dim", None)
        if dim is None:
            raise ValueError(f"{type(self.core).__name__} has no time_cond_proj_dim in its config, so it "
                             "cannot take step_cond; build it with time_cond_proj_dim set")
        if tuple(step_cond.shape) != (n, dim):
            raise ValueError(f"step_cond must have shape ({n}, {dim}), got {tuple(step_cond.shape)}")
        return self._in(step_cond)


class UNetAdapter(DenoiserAdapter):
    """SD-1.5's UNet2DConditionModel: cond = {"encoder_hidden_states": (n, L, D)}."""

    def _added_cond_kwargs(self, cond: dict) -> dict | None:
        return None

    def raw(self, x_t, t, cond, step_cond=None):
        return self.model(
            self._in(x_t), self._t(t, x_t), encoder_hidden_states=self._in(cond["encoder_hidden_states"]),
            timestep_cond=self._step_cond(step_cond, len(x_t)),
            added_cond_kwargs=self._added_cond_kwargs(cond), return_dict=False)[0]


class SDXLUNetAdapter(UNetAdapter):
    """SDXL's UNet: cond also has the pooled "text_embeds" (n, P) and "time_ids" (n, 6)."""

    def _added_cond_kwargs(self, cond: dict) -> dict:
        return {"text_embeds": self._in(cond["text_embeds"]), "time_ids": self._in(cond["time_ids"])}


class PixArtAdapter(DenoiserAdapter):
    """PixArtTransformer2DModel: cond = {"encoder_hidden_states", optional "encoder_attention_mask"}.

    Models with micro-conditions (1024px, sample_size 128) also need cond "resolution" and
    "aspect_ratio"; their values depend on the VAE's scale, which only the pipeline knows."""

    def _added_cond_kwargs(self, cond: dict) -> dict:
        if not self.core.use_additional_conditions:
            return {"resolution": None, "aspect_ratio": None}  # as PixArtAlphaPipeline for 512px
        if "resolution" not in cond or "aspect_ratio" not in cond:
            raise ValueError("this PixArt model uses additional conditions: cond needs 'resolution' (n, 2) "
                             "and 'aspect_ratio' (n, 1) in pixels, as PixArtAlphaPipeline builds them")
        return {"resolution": self._in(cond["resolution"]), "aspect_ratio": self._in(cond["aspect_ratio"])}

    def raw(self, x_t, t, cond, step_cond=None):
        self._step_cond(step_cond, len(x_t))  # raises: PixArt has no step-count embedding
        out = self.model(
            self._in(x_t), encoder_hidden_states=self._in(cond["encoder_hidden_states"]),
            encoder_attention_mask=self._in(cond.get("encoder_attention_mask")), timestep=self._t(t, x_t),
            added_cond_kwargs=self._added_cond_kwargs(cond), return_dict=False)[0]
        if out.shape[1] == 2 * x_t.shape[1]:
            out = out.chunk(2, dim=1)[0]  # learned sigma: the first half is epsilon
        return out


def cogvideox_rotary_emb(config, latents: Tensor) -> tuple[Tensor, Tensor]:
    """CogVideoXPipeline._prepare_rotary_positional_embeddings, from the latent grid alone.

    The pipeline divides pixel sizes by the VAE's spatial factor; the latents already are that."""
    from diffusers.models.embeddings import get_3d_rotary_pos_embed
    from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid

    frames, height, width = latents.shape[1], latents.shape[3], latents.shape[4]
    p, p_t = config.patch_size, config.patch_size_t
    grid = (height // p, width // p)
    base_height, base_width = config.sample_height // p, config.sample_width // p
    if p_t is None:  # CogVideoX 1.0
        crops = get_resize_crop_region_for_grid(grid, base_width, base_height)
        return get_3d_rotary_pos_embed(embed_dim=config.attention_head_dim, crops_coords=crops, grid_size=grid,
                                       temporal_size=frames, device=latents.device)
    return get_3d_rotary_pos_embed(  # CogVideoX 1.5
        embed_dim=config.attention_head_dim, crops_coords=None, grid_size=grid,
        temporal_size=(frames + p_t - 1) // p_t, grid_type="slice", max_size=(base_height, base_width),
        device=latents.device)


class CogVideoXAdapter(DenoiserAdapter):
    """CogVideoXTransformer3DModel: latents (n, frames, C, H, W), cond = {"encoder_hidden_states"}."""

    def raw(self, x_t, t, cond, step_cond=None):
        config = self.core.config
        if getattr(config, "ofs_embed_dim", None) is not None:
            raise NotImplementedError("CogVideoX image-to-video models (ofs_embed_dim set) are not supported")
        rotary = cogvideox_rotary_emb(config, x_t) if config.use_rotary_positional_embeddings else None
        return self.model(
            hidden_states=self._in(x_t), encoder_hidden_states=self._in(cond["encoder_hidden_states"]),
            timestep=self._t(t, x_t), timestep_cond=self._step_cond(step_cond, len(x_t)),
            image_rotary_emb=rotary, return_dict=False)[0]


def _stack_conds(cond: dict, uncond: dict) -> dict:
    """[uncond; cond] per key; rows must agree in everything but the batch dimension."""
    if set(cond) != set(uncond):
        raise ValueError(f"cond and uncond must have the same keys, got {sorted(cond)} and {sorted(uncond)}")
    both = {}
    for key in cond:
        c, u = cond[key], uncond[key]
        if c is None and u is None:
            both[key] = None
            continue
        if c is None or u is None or c.shape[1:] != u.shape[1:]:
            shapes = [None if v is None else tuple(v.shape) for v in (c, u)]
            raise ValueError(f"cond[{key!r}] and uncond[{key!r}] differ beyond the batch dimension "
                             f"({shapes[0]} vs {shapes[1]}); pad both to the same sequence length")
        both[key] = torch.cat([u, c])
    return both


def classifier_free_guidance(denoiser: Denoiser, x_t: Tensor, t: Tensor, cond: dict, uncond: dict,
                             scale: float, step_cond: Tensor | None = None) -> Tensor:
    """Guided x0 = x0_u + scale (x0_c - x0_u), with both halves in ONE batched forward pass.

    Guiding x0 equals guiding eps (or v) for the same x_t and t, since the conversions are affine."""
    n = len(x_t)
    t = t.expand(n)
    both_step = None if step_cond is None else torch.cat([step_cond, step_cond])
    x0 = denoiser.x0(torch.cat([x_t, x_t]), torch.cat([t, t]), _stack_conds(cond, uncond), both_step)
    x0_u, x0_c = x0[:n], x0[n:]
    return x0_u + scale * (x0_c - x0_u)
