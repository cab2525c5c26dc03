"""Commands of the small worlds.

    python -m harness.world evaluate            # the teacher table: steps x solver x world metrics
    python -m harness.world sample --prompt "a red circle on a grey background" --out red.png
    python -m harness.world grid --out grid.png # teacher samples at 1, 2, 4 and 25 steps
    python -m harness.world build --out build/tiny-sd15 --device cuda   # retrain the world

User mistakes end in one line on stderr and exit code 2, having written nothing.
"""
from __future__ import annotations

import argparse
import math
import json
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from tqdm.auto import tqdm

from baselines.base import SamplerSpec
from baselines.teacher import SOLVERS, STUDENT_SOLVERS, TeacherSampler
from methods.common.provenance import provenance, write_json_atomic
from harness.worlds import check_world
from harness.worlds.tiny_sd15 import grammar
from harness.worlds.tiny_sd15.judge import PIPELINE, EvalConfig, Judge
from methods.common.cli import OneLineParser, check_device, apply_overrides, quiet_libraries
from methods.common.errors import UserError
from methods.common.pipeline_io import load_sd_pipeline

DEFAULT_GUIDANCE = 3.5  # the TDM paper's CFG scale for SD-1.5 (Appendix D)
REFERENCE = ("dpmpp", 25)  # fd_teacher compares with these teacher samples


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if any(v < 1 or v > 1000 for v in values):
        raise argparse.ArgumentTypeError(f"step counts must lie in 1..1000, got {text!r}")
    return values


def _int_from(low: int, high: int | None = None):
    """An argparse type: an integer in [low, high]."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f"in {low}..{high}" if high is not None else f"of at least {low}"
            raise argparse.ArgumentTypeError(f"expected an integer {bound}, got {text!r}")
        return value
    return parse


def _guidance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"the guidance scale must be 0 or more (1: none), got {text!r}")
    return value


def _solver_list(text: str) -> list[str]:
    values = text.split(",")
    for v in values:
        if v not in STUDENT_SOLVERS:  # "lcm" for an LCM or DMD2 student's folder (--pipeline)
            raise argparse.ArgumentTypeError(f"unknown solver {v!r}; expected {', '.join(STUDENT_SOLVERS)}")
    return values


def _check_output(path: Path) -> Path:
    parent = path.parent if str(path.parent) else Path(".")
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise UserError(f"cannot write {path}: {probe} is not writable")
    return path


def cmd_evaluate(args) -> None:
    device = check_device(args.device)
    pipe = load_sd_pipeline(args.pipeline, device)
    cfg = replace(EvalConfig(), n_prompts=args.n_prompts, classifier=args.classifier)
    if not (Path(args.classifier) / "model.safetensors").is_file():
        raise UserError(f"no classifier weights at {Path(args.classifier) / 'model.safetensors'}")
    if args.out:
        _check_output(Path(args.out))
    start = time.time()
    judge = Judge.load(cfg)
    rows = []
    # fd_teacher always compares with the shipped teacher's samples (25 DPM-Solver++ steps, CFG 3.5),
    # whichever pipeline is being evaluated: a student is judged against its teacher.
    teacher_pipe = pipe if Path(args.pipeline).resolve() == PIPELINE.resolve() else load_sd_pipeline(PIPELINE, device)
    spec = SamplerSpec(f"teacher-{REFERENCE[0]}-{REFERENCE[1]}", "tiny-sd15", str(PIPELINE), *REFERENCE,
                       DEFAULT_GUIDANCE)
    t0 = time.time()
    metrics, reference = judge.score(TeacherSampler(spec, device, pipe=teacher_pipe), None)
    if teacher_pipe is pipe and args.guidance == DEFAULT_GUIDANCE:
        rows.append({"solver": REFERENCE[0], "steps": REFERENCE[1], **metrics, "fd_teacher": 0.0,
                     "seconds": round(time.time() - t0, 1)})
    order = [(s, n) for s in args.solvers for n in args.steps if not (rows and (s, n) == REFERENCE)]
    for solver, steps in tqdm(order, desc="settings", unit="setting"):
        spec = SamplerSpec(f"{Path(args.pipeline).name}-{solver}-{steps}", "tiny-sd15", str(args.pipeline), solver,
                           steps, args.guidance)
        t0 = time.time()
        metrics, _ = judge.score(TeacherSampler(spec, device, pipe=pipe), reference)
        rows.append({"solver": solver, "steps": steps, **metrics, "seconds": round(time.time() - t0, 1)})
        tqdm.write(_format_row(rows[-1]))
    keep = [r for r in rows if r["solver"] in args.solvers and r["steps"] in args.steps]
    floors = judge.floors()
    table = sorted(keep, key=lambda r: (r["solver"], r["steps"]))
    print("\n" + render_markdown(table, floors, args.guidance, cfg))
    if args.out:
        write_json_atomic(args.out, {
            "what": "tiny-sd15: world metrics of a pipeline by solver and step count",
            "pipeline": str(args.pipeline), "guidance": args.guidance, "eval_config": asdict(cfg),
            "reference_for_fd_teacher": f"shipped teacher, {REFERENCE[0]} {REFERENCE[1]} steps, CFG {DEFAULT_GUIDANCE}",
            "rows": table, "floors": floors, "wall_seconds": round(time.time() - start, 1), **provenance(device),
        })
        print(f"\nwrote {args.out}")


def _format_row(r: dict) -> str:
    return (f"{r['solver']:>6} {r['steps']:>3} steps  fd_data {r['fd_data']:8.3f}  fd_teacher {r['fd_teacher']:8.3f}  "
            f"alignment {r['alignment']:.3f}  mode_coverage {r['mode_coverage']:.3f}  ({r['seconds']} s)")


def render_markdown(rows: list[dict], floors: dict, guidance: float, cfg: EvalConfig) -> str:
    lines = [
        f"tiny-sd15 pipeline, CFG {guidance}, {cfg.n_prompts} held-out prompts (1 seed each); "
        f"mode coverage on {cfg.coverage_prompts} prompts x {cfg.coverage_samples} seeds",
        "",
        "| solver | steps | fd_data | fd_teacher | alignment | mode_coverage |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['solver']} | {r['steps']} | {r['fd_data']:.3f} | {r['fd_teacher']:.3f} | "
                     f"{r['alignment']:.3f} | {r['mode_coverage']:.3f} |")
    lines.append(f"| real images (floor) | - | {floors['fd_data']:.3f} | - | {floors['alignment']:.3f} | "
                 f"{floors['mode_coverage']:.3f} |")
    lines.append(f"\nalignment of real images with shuffled prompts: {floors['alignment_shuffled_prompts']:.3f}")
    return "\n".join(lines)


def cmd_sample(args) -> None:
    for prompt in args.prompt:
        grammar.parse_prompt(prompt)  # the world's judge only understands its own grammar
    device = check_device(args.device)
    out = _check_output(Path(args.out))
    spec = SamplerSpec(f"teacher-{args.solver}-{args.steps}", "tiny-sd15", str(args.pipeline), args.solver,
                       args.steps, args.guidance)
    sampler = TeacherSampler(spec, device)
    prompts = [p for p in args.prompt for _ in range(args.n)]
    seeds = [args.seed + i for _ in args.prompt for i in range(args.n)]
    from harness.worlds.tiny_sd15.figures import save_grid

    save_grid(sampler.sample(prompts, seeds), out, columns=args.n, row_labels=args.prompt)
    print(f"wrote {out}")


def cmd_grid(args) -> None:
    from harness.worlds.tiny_sd15.figures import teacher_grid

    device = check_device(args.device)
    out = _check_output(Path(args.out))
    teacher_grid(args.pipeline, out, device=device, guidance=args.guidance)
    print(f"wrote {out}")


def cmd_build(args) -> None:
    from harness.worlds.tiny_sd15.build import BuildConfig, build

    cfg = apply_overrides(BuildConfig(), args.set)
    if args.previous and not (Path(args.previous) / "build.json").is_file():
        raise UserError(f"--previous {args.previous} is not a world build: build.json is missing there")
    device = check_device(args.device)
    out = _check_output(Path(args.out) / "build.json").parent
    record = build(out, cfg, device, previous=args.previous)
    print(json.dumps(record, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m harness.world", description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", default="tiny-sd15", help="which small world (default: tiny-sd15)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    p = sub.add_parser("evaluate", help="teacher metrics by solver and step count")
    p.add_argument("--steps", type=_int_list, default=[1, 2, 4, 8, 25])
    p.add_argument("--solvers", type=_solver_list, default=list(SOLVERS))
    p.add_argument("--n-prompts", type=_int_from(1), default=EvalConfig.n_prompts)
    p.add_argument("--classifier", default=EvalConfig.classifier, help="the world's attribute classifier folder")
    p.add_argument("--out", help="also write the table as JSON with provenance")
    p.set_defaults(func=cmd_evaluate)
    p = sub.add_parser("sample", help="teacher samples for prompts of the grammar, as a PNG grid")
    p.add_argument("--prompt", action="append", required=True)
    p.add_argument("--steps", type=_int_from(1, 1000), default=25)
    p.add_argument("--solver", choices=SOLVERS, default="dpmpp")
    p.add_argument("--seed", type=_int_from(0), default=0)
    p.add_argument("--n", type=_int_from(1), default=4, help="samples per prompt")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_sample)
    p = sub.add_parser("grid", help="teacher samples at 1, 2, 4 and 25 steps for a few prompts")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_grid)
    p = sub.add_parser("build", help="train the world's models from scratch (use a GPU)")
    p.add_argument("--out", required=True)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a BuildConfig field")
    p.add_argument("--previous", help="a finished build: reuse its VAE and classifier, continue its teacher")
    p.set_defaults(func=cmd_build, device="cuda")
    for name, p in sub.choices.items():
        p.add_argument("--pipeline", default=str(PIPELINE), help="pipeline folder (default: the shipped teacher)")
        p.add_argument("--guidance", type=_guidance, default=DEFAULT_GUIDANCE)
        if name != "build":
            p.add_argument("--device", default="cpu")
        else:
            p.add_argument("--device", default="cuda")
    args = parser.parse_args(argv)
    quiet_libraries()
    try:
        check_world(args.world)
        args.func(args)
    except (UserError, grammar.GrammarError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
