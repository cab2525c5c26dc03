"""The tiny-cogvideox teacher by step count: does the world make few steps clearly worse than many?

    python -m harness.worlds.tiny_cogvideox.evaluate --world build/tiny-cogvideox --steps 1,2,4,8,25,50 \\
        --guidance 3 --device cuda --out results/world/tiny-cogvideox-teacher.json

Samples the world's teacher (DDIM on trailing timesteps, CFG) on the judge's held-out prompts at
each step count, scores the clips with the world's metrics, and writes one JSON (floors, one row per
step count, provenance); fd_teacher is measured against the teacher at the largest step count
(whose own row has none). Beside them, the real clips' own values and those of the same clips
through the world's VAE: the best any sampler of its latents can reach.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from methods.common.provenance import provenance, write_json_atomic

METRICS = ("fd_data", "fd_teacher", "alignment", "motion_accuracy", "temporal_consistency", "mode_coverage")
DEFAULT_GUIDANCE = 3.0  # the world's CFG scale: Table 4's teacher rows and the tiny-cogvideox presets use it too


def evaluate(world: Path, steps: list[int], guidance: float, device: str, cfg) -> dict:
    """The teacher at each step count (none: the floors alone), the real clips' floors and their
    floors through the world's VAE."""
    import torch
    from diffusers import AutoencoderKLCogVideoX

    from baselines.base import SamplerSpec
    from baselines.teacher import VideoTeacherSampler

    from .classifier import ClipClassifier
    from .judge import Judge

    judge = Judge(ClipClassifier.load(world / "classifier"), cfg)
    rows, reference = [], None
    for n in sorted(steps, reverse=True):  # the most steps first: the fd_teacher reference
        spec = SamplerSpec(f"teacher-ddim-{n}", "tiny-cogvideox", str(world / "pipeline"), "ddim", n, guidance)
        sampler = VideoTeacherSampler(spec, device)
        start = time.perf_counter()
        metrics, features = judge.score(sampler, reference)
        reference = features if reference is None else reference
        rows.append({"steps": n, "nfe": n * (2 if guidance != 1 else 1), **metrics,
                     "seconds": round(time.perf_counter() - start, 2), "sampler": sampler.describe()})
        del sampler
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    vae = AutoencoderKLCogVideoX.from_pretrained(world / "pipeline" / "vae").to(device).eval()
    return {"what": "the tiny-cogvideox teacher by step count, scored with the world's metrics",
            "world": str(world), "build": json.loads((world / "build.json").read_text()).get("commit"),
            "guidance": guidance, "eval": asdict(cfg), "floors": judge.floors(), "vae_floors": judge.vae_floors(vae),
            "rows": sorted(rows, key=lambda r: r["steps"]), **provenance(torch.device(device))}


def markdown(record: dict) -> str:
    head = "| steps | NFE | " + " | ".join(METRICS) + " |"
    lines = [head, "|" + "---:|" * (len(METRICS) + 2)]
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for r in record["rows"]:
        lines.append(f"| {r['steps']} | {r['nfe']} | " + " | ".join(fmt(r[m]) for m in METRICS) + " |")
    for label, key in (("real clips", "floors"), ("real clips through the VAE", "vae_floors")):
        if key in record:
            lines.append(f"| {label} | - | " + " | ".join(fmt(record[key].get(m)) for m in METRICS) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from . import location
    from .judge import EvalConfig

    parser = argparse.ArgumentParser(prog="python -m harness.worlds.tiny_cogvideox.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", help="a build folder (pipeline/, classifier/, build.json); default: the world's "
                                         "build (its assets/ folder, or $TDM_TINY_COGVIDEOX_WORLD)")
    parser.add_argument("--steps", default="1,2,4,8,25,50", help="step counts, or 'none' for the floors alone")
    parser.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--prompts", type=int, default=EvalConfig.n_prompts)
    parser.add_argument("--coverage", default=f"{EvalConfig.coverage_prompts}x{EvalConfig.coverage_samples}",
                        help="coverage prompts x clips per prompt")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    try:
        world = location.build_folder(args.world)
        steps = [] if args.steps == "none" else [int(s) for s in args.steps.split(",")]
        if steps and (min(steps) < 1 or len(set(steps)) != len(steps)):
            raise ValueError(f"--steps must be distinct positive integers, got {args.steps!r}")
        if not args.guidance >= 1:
            raise ValueError(f"--guidance must be 1 (none) or more, got {args.guidance}")
        prompts, _, samples = args.coverage.partition("x")
        cfg = EvalConfig(n_prompts=args.prompts, coverage_prompts=int(prompts), coverage_samples=int(samples))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    record = evaluate(world, steps, args.guidance, args.device, cfg)
    write_json_atomic(args.out, record)
    print(markdown(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
