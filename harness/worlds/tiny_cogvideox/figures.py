"""Filmstrips of the tiny-cogvideox teacher: does it move its objects as the caption says?

    python -m harness.worlds.tiny_cogvideox.figures --out results/world/tiny-cogvideox/teacher_filmstrip.png \\
        [--world DIR] [--steps 1,4,50] [--device cpu]

For each prompt, one row of real frames (a clip drawn for the prompt) and one row per step count
of the teacher (DDIM on trailing timesteps, CFG 3, the same seed in every row), one column per
frame shown (every other one).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

# Objects in quadrant order (top left, top right, bottom left, bottom right), as in every training caption.
FILMSTRIP_PROMPTS = (
    "a red circle moving right at the top left on a grey background",
    "a yellow triangle moving down at the top right and a blue square moving up at the bottom left on a white background",
    "a green diamond moving left on a black background",
)
FILMSTRIP_STEPS = (1, 4, 50)
FRAMES_SHOWN = (0, 2, 4, 6, 8)  # of the clip's 9: enough to see the motion, at half the file size


def real_clips(prompts: list[str], seed: int = 0) -> np.ndarray:
    """One clip per prompt from p(clip | prompt), uint8 (n, frames, H, W, 3)."""
    from . import dataset
    from . import grammar as g
    from .judge import to_uint8

    rng = np.random.default_rng([seed, 20])
    clips = [dataset.clip_for_prompt(g.parse_prompt(p), rng) for p in prompts]
    return to_uint8(dataset.render(clips, seed=seed))


def teacher_filmstrip(world: str | Path, out: str | Path, steps=FILMSTRIP_STEPS, prompts=FILMSTRIP_PROMPTS,
                      device: str = "cpu", guidance: float | None = None, seed: int = 0) -> Path:
    """Write the filmstrip PNG: per prompt a real row, then the teacher at each step count."""
    from diffusers import CogVideoXPipeline

    from baselines.base import SamplerSpec
    from baselines.teacher import VideoTeacherSampler
    from harness.worlds.tiny_sd15.figures import save_grid

    from .evaluate import DEFAULT_GUIDANCE

    guidance = DEFAULT_GUIDANCE if guidance is None else guidance
    pipeline = Path(world) / "pipeline"
    pipe = CogVideoXPipeline.from_pretrained(pipeline, local_files_only=True).to(device)
    pipe.set_progress_bar_config(disable=True)
    rows = [("real", real_clips(list(prompts), seed))]
    for n in steps:
        spec = SamplerSpec(f"teacher-ddim-{n}", "tiny-cogvideox", str(pipeline), "ddim", n, guidance)
        clips = VideoTeacherSampler(spec, device, pipe=pipe).sample(list(prompts), [seed] * len(prompts))
        rows.append((f"{n} step{'s' * (n > 1)}", clips))
    images, labels = [], []
    for i, prompt in enumerate(prompts):
        for label, clips in rows:
            images.extend(clips[i][list(FRAMES_SHOWN)])
            labels.append(f"{prompt} | {label}")
    out = Path(out)
    save_grid(np.stack(images), out, columns=len(FRAMES_SHOWN), row_labels=labels,
              column_labels=[f"frame {k}" for k in FRAMES_SHOWN])
    return out


def main(argv: list[str] | None = None) -> int:
    from methods.common.errors import UserError

    from . import location

    parser = argparse.ArgumentParser(prog="python -m harness.worlds.tiny_cogvideox.figures", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the PNG to write")
    parser.add_argument("--world", help="a build folder; default: the world's build (assets/ or "
                                        "$TDM_TINY_COGVIDEOX_WORLD)")
    parser.add_argument("--steps", default=",".join(map(str, FILMSTRIP_STEPS)), help="teacher step counts")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    try:
        steps = [int(s) for s in args.steps.split(",")]
        if any(s < 1 for s in steps):
            raise ValueError
    except ValueError:
        print(f"error: --steps must be positive integers separated by commas, got {args.steps!r}", file=sys.stderr)
        return 2
    try:
        print(teacher_filmstrip(location.build_folder(args.world), args.out, steps, device=args.device))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
