"""TDM-unify's step conditioning (Sec. 3.2, Eq. 8): the student and the fake score are told K.

K enters as a sinusoidal embedding through the UNet's `time_cond_proj_dim` path, which adds
`cond_proj(embedding)` to the timestep features. `cond_proj` starts at zero, so a
step-conditioned network starts exactly equal to the teacher it was copied from (Alg. 1,
line 1). For export the condition is folded into the timestep MLP's bias, which gives a
plain UNet for one K that any diffusers pipeline can load.
"""
from __future__ import annotations

import math

import torch

STEP_EMBEDDING_DIM = 256  # as LCM's guidance embedding; the UNet's `time_cond_proj_dim`


def step_embedding(K: torch.Tensor, dim: int = STEP_EMBEDDING_DIM, scale: float = 100.0) -> torch.Tensor:
    """Sinusoidal embedding of the step count K (n,) -> (n, dim).

    K is small (1..8), so it is scaled before embedding to spread it over the frequencies.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / half)
    angles = (K.double() * scale)[:, None] * freqs[None, :].to(K.device)
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()


def with_step_conditioning(unet, dim: int = STEP_EMBEDDING_DIM):
    """A copy of a UNet2DConditionModel (or CogVideoX transformer) that takes step_cond, equal to it at start."""
    if getattr(unet.config, "time_cond_proj_dim", None) is not None:
        raise ValueError("this model already has a time_cond_proj_dim; step conditioning would collide with it")
    model = type(unet).from_config(_config_with(unet, time_cond_proj_dim=dim))
    missing, unexpected = model.load_state_dict(unet.state_dict(), strict=False)
    if unexpected or any(not key.endswith("cond_proj.weight") for key in missing):
        raise RuntimeError(f"state dicts differ beyond cond_proj: missing {missing}, unexpected {unexpected}")
    proj = _cond_proj(model)
    torch.nn.init.zeros_(proj.weight)
    return model.to(device=unet.device, dtype=unet.dtype)


def _config_with(model, **changes) -> dict:
    """The model's config with `changes`, which diffusers' from_config will honour.

    A model built in code, or loaded from a config that predates a key (SD-1.5's own lacks
    time_cond_proj_dim), lists the keys it took defaults for in `_use_default_values`, and
    from_config drops every key listed there: the change would be silently ignored.
    """
    config = {k: v for k, v in model.config.items() if k != "_use_default_values"}
    return {**config, **changes}


def _cond_proj(model) -> torch.nn.Linear:
    embedding = model.time_embedding
    if embedding.cond_proj is None:
        raise ValueError(f"{type(model).__name__} has no step conditioning (time_embedding.cond_proj)")
    return embedding.cond_proj


def fold_step_conditioning(model, K: int):
    """A plain copy (no time_cond_proj_dim) that behaves as `model` does with step_cond = embed(K)."""
    return fold_condition(model, step_embedding(torch.tensor([K]), model.config.time_cond_proj_dim))


def fold_condition(model, embedding: torch.Tensor):
    """A plain copy (no time_cond_proj_dim) that behaves as `model` does with this one condition (1, dim):
    TDM-unify's K, or an LCM student's guidance scale.

    linear_1(s + P e) = linear_1(s) + W_1 P e, so the constant W_1 P e moves into linear_1's bias.
    """
    proj = _cond_proj(model)
    e = embedding.to(device=proj.weight.device, dtype=torch.float64)
    linear_1 = model.time_embedding.linear_1
    shift = (linear_1.weight.double() @ (proj.weight.double() @ e[0]))
    plain = type(model).from_config(_config_with(model, time_cond_proj_dim=None))
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("cond_proj.weight")}
    state["time_embedding.linear_1.bias"] = (linear_1.bias.double() + shift).to(linear_1.bias.dtype)
    plain.load_state_dict(state)
    return plain.to(device=model.device, dtype=model.dtype)
