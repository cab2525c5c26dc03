"""Does the teacher read the motion words? Its denoising loss under the true caption against the
same caption with every motion reversed, on fixed clips, noise and timesteps.

A teacher that ignores motion pays the same loss under both captions (relative gap 0); one that
has learnt it pays more under the wrong one. The build logs the gap of the EMA teacher as it
trains (`build.json`, stages.teacher.motion_gap), so a run shows whether motion is being learnt
long before sampling could.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from harness.worlds.building import autocast

from . import dataset
from . import grammar as g

# The wrong motion of each: the opposite direction; a standing object is said to move left.
WRONG_MOTION = {"left": "right", "right": "left", "up": "down", "down": "up", "still": "left"}
LEVELS = (900, 500)  # timesteps of the zero-terminal-SNR schedule: mostly noise, and half way


@dataclass(frozen=True)
class MotionProbe:
    latents: torch.Tensor     # (n, F', C, h, w), scaled as the teacher is trained on them
    true_ids: torch.Tensor    # (n, L) every object's motion and position named
    wrong_ids: torch.Tensor   # (n, L) the same captions with each motion replaced (WRONG_MOTION)
    noise: torch.Tensor       # (n, F', C, h, w), fixed
    levels: tuple[int, ...] = LEVELS


def wrong_caption(clip: g.Clip) -> str:
    """The clip's full caption with every object's motion replaced by WRONG_MOTION's."""
    objects = tuple(replace(o, motion=WRONG_MOTION[o.motion]) for o in clip.objects)
    return g.Clip(objects, clip.background).caption(name_motion=True, name_position=True)


@torch.no_grad()
def make_probe(seed: int, n: int, vae, tokenizer, scaling_factor: float, device) -> MotionProbe:
    """n training-split clips (a seed of their own, not the bank's), encoded once (the posterior's mode)."""
    from .build import token_ids

    clips = [s.clip for s in dataset.sample_clips(seed, n)]
    frames = dataset.render(clips, seed=seed, device=device)
    with autocast(device):
        latents = vae.encode(frames.permute(0, 2, 1, 3, 4)).latent_dist.mode().float().permute(0, 2, 1, 3, 4)
    true_ids = token_ids(tokenizer, [c.caption(name_motion=True, name_position=True) for c in clips])
    wrong_ids = token_ids(tokenizer, [wrong_caption(c) for c in clips])
    noise = torch.randn(latents.shape, generator=torch.Generator(device).manual_seed(seed), device=device)
    return MotionProbe(latents * scaling_factor, true_ids.to(device), wrong_ids.to(device), noise)


@torch.no_grad()
def motion_gap(transformer, text_encoder, probe: MotionProbe, alphas_cumprod: torch.Tensor) -> dict[str, float]:
    """Relative loss gap (wrong - true) / true of v-prediction at each of the probe's levels, keyed "t<level>"."""
    from .build import v_target

    device = probe.latents.device
    gaps = {}
    for level in probe.levels:
        t = torch.full((len(probe.latents),), level, device=device)
        x_t, v = v_target(alphas_cumprod, probe.latents, probe.noise, t)
        losses = []
        for ids in (probe.true_ids, probe.wrong_ids):
            with autocast(device):
                pred = transformer(hidden_states=x_t, encoder_hidden_states=text_encoder(ids)[0], timestep=t,
                                   return_dict=False)[0]
            losses.append((pred.float() - v).square().mean())
        gaps[f"t{level}"] = float((losses[1] - losses[0]) / losses[0])
    return gaps
