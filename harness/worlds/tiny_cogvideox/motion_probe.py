"""Does the teacher read the motion words? Its denoising loss under the true caption against the
same caption with every motion reversed, on fixed clips, noise and timesteps.

A teacher that ignores motion pays the same loss under both captions (relative gap 0); one that
has learnt it pays more under the wrong one. The build logs the gap of the EMA teacher as it
trains (`build.json`, stages.teacher.motion_gap), so a run shows whether motion is being learnt
long before sampling could.

    python -m harness.worlds.tiny_cogvideox.motion_probe harness/worlds/tiny_cogvideox/assets/build.json \
        --out results/world/tiny-cogvideox/motion-gap.png      # the logged gap as a plot
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from harness.worlds.building import autocast
from methods.common.errors import UserError

from . import dataset
from . import grammar as g
from .models import token_ids, v_target

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


def plot_gaps(build_json: str | Path, out: str | Path) -> Path:
    """The motion gap a build logged (build.json, stages.teacher.motion_gap) against its teacher's steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    record = json.loads(Path(build_json).read_text())
    gaps = record["stages"]["teacher"].get("motion_gap")
    if not gaps:
        raise UserError(f"{build_json} logged no motion gap (built before the probe, or with probe_every=0)")
    earlier = _earlier_teacher_steps(record.get("continued_from"))
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for key in gaps[0]:
        if key != "step":
            ax.plot([earlier + g["step"] for g in gaps], [g[key] for g in gaps], marker="o", ms=3,
                    label=f"t = {key[1:]}")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("teacher steps" + (f" (this build continued one of {earlier:,})" if earlier else ""))
    ax.set_ylabel("(loss wrong - loss true) / loss true")
    ax.set_title(f"tiny-cogvideox teacher: reversed motion words, build {record.get('commit', '?')[:7]}")
    ax.legend()
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def _earlier_teacher_steps(previous: dict | None) -> int:
    """Teacher steps of the builds a build continued, summed down the chain."""
    steps = 0
    while previous:
        steps += previous.get("stages", {}).get("teacher", {}).get("steps_done", 0)
        previous = previous.get("continued_from")
    return steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.worlds.tiny_cogvideox.motion_probe",
                                     description="Plot the motion gap a world build logged.")
    parser.add_argument("build_json", help="a build's build.json, e.g. harness/worlds/tiny_cogvideox/assets/build.json")
    parser.add_argument("--out", required=True, help="the PNG to write")
    args = parser.parse_args(argv)
    try:
        print(plot_gaps(args.build_json, args.out))
    except (UserError, FileNotFoundError, KeyError, json.JSONDecodeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
