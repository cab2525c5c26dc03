"""The published few-step samplers from the command line.

    python -m baselines list [--markdown]              # every recipe: method, backbone, steps, scheduler, source
    python -m baselines needs NAME [--weights-root DIR] # the files a recipe needs and which are missing
    python -m baselines sample NAME --prompt "a red cube" --seeds 0,1 --out DIR [--weights-root DIR] [--device cuda]

`sample` writes one PNG per (prompt, seed), `manifest.json` (file, prompt, seed, sampler) and
`sampler.json` (the recipe with its resolved timesteps, scheduler config and weight hashes).
User mistakes (an unknown name, missing weights, a bad value) end in one line, exit code 2, and
nothing written.
"""
from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

from methods.common.cli import OneLineParser, parse_seeds
from methods.common.errors import UserError

from . import weights as weight_files
from .recipes import RECIPES
from .registry import get_recipe, load_sampler

COLUMNS = ("name", "method", "backbone", "steps", "NFE", "scheduler", "guidance", "eta", "attach", "source")


def _rows() -> list[tuple]:
    rows = []
    for r in RECIPES.values():
        steps = ",".join(map(str, r.timesteps)) if r.timesteps else str(r.steps)
        steps = f"{r.steps} (t={steps})" if r.timesteps else steps
        guidance = f"{r.guidance:g} ({r.guidance_mode})"
        overrides = ", ".join(f"{k}={v}" for k, v in r.scheduler_config)
        scheduler = f"{r.scheduler} ({overrides})" if overrides else r.scheduler
        attach = "+".join(f"{w.attach}" + (f" x{w.scale:g}" if w.attach == "lora" and w.scale != 1 else "")
                          for w in r.weights) or "pipeline"
        eta = "-" if r.eta is None else f"{r.eta:g}"
        rows.append((r.name, r.method, r.pipeline, steps, r.nfe, scheduler, guidance, eta, attach, r.source))
    return rows


def cmd_list(markdown: bool) -> None:
    rows = _rows()
    if markdown:
        print("| " + " | ".join(COLUMNS) + " |")
        print("|" + "---|" * len(COLUMNS))
        for row in rows:
            print("| " + " | ".join(str(c) for c in row) + " |")
        return
    widths = [max(len(str(c)) for c in col) for col in zip(COLUMNS, *rows)][:-1]
    for row in [COLUMNS, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)) + "  " + str(row[-1]))


def cmd_needs(name: str, root: Path | None) -> int:
    recipe = get_recipe(name)
    lost = set(weight_files.missing(recipe, root))
    for repo, path in weight_files.needed(recipe):
        what = f"{repo} : {path}" if path else f"{repo} (the whole repository)"
        print(f"{'missing' if what in lost else 'found  '}  {what}")
    return 0


def cmd_sample(args) -> int:
    from PIL import Image

    recipe = get_recipe(args.name)
    if args.steps is not None:
        if args.steps < 1:
            raise UserError(f"--steps must be at least 1, got {args.steps}")
        recipe = recipe.with_steps(args.steps)
    for key in ("height", "width"):
        value = getattr(args, key)
        if value is not None:
            if value < 8 or value % 8:
                raise UserError(f"--{key} must be a positive multiple of 8, got {value}")
            recipe = replace(recipe, **{key: value})
    seeds = parse_seeds(args.seeds)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"--out {out} is not empty")
    sampler = load_sampler(recipe, device=args.device, weights_root=args.weights_root)  # checks weights first
    jobs = [(p, s) for p in args.prompt for s in seeds]
    images = sampler.sample([p for p, _ in jobs], [s for _, s in jobs])
    out.mkdir(parents=True, exist_ok=True)
    manifest = []
    for i, ((prompt, seed), image) in enumerate(zip(jobs, images)):
        name = f"{i:05d}.png"
        if image.ndim == 4:  # video: the frames side by side
            image = image.transpose(1, 0, 2, 3).reshape(image.shape[1], -1, 3)
        Image.fromarray(image).save(out / name)
        manifest.append({"file": name, "prompt": prompt, "seed": seed, "sampler": recipe.name})
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    (out / "sampler.json").write_text(json.dumps(sampler.describe(), indent=1, default=str) + "\n")
    print(f"wrote {len(manifest)} images of {recipe.name} ({recipe.nfe} network evaluations each) to {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m baselines", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="every recipe")
    p.add_argument("--markdown", action="store_true")
    p = sub.add_parser("needs", help="the files a recipe needs, found or missing")
    p.add_argument("name")
    p.add_argument("--weights-root", type=Path)
    p = sub.add_parser("sample", help="sample a recipe to PNG files")
    p.add_argument("name")
    p.add_argument("--prompt", action="append", required=True)
    p.add_argument("--seeds", default="0")
    p.add_argument("--out", required=True)
    p.add_argument("--weights-root", type=Path)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--steps", type=int)
    p.add_argument("--height", type=int)
    p.add_argument("--width", type=int)
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            cmd_list(args.markdown)
            return 0
        if args.command == "needs":
            return cmd_needs(args.name, args.weights_root)
        return cmd_sample(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
