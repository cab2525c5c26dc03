"""The command line: `python -m harness.table4_real plan|run`, and the options harness.reproduce's
`table4 --world real` shares."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from methods.common.cli import OneLineParser, check_device, quiet_libraries
from methods.common.errors import UserError

from . import __doc__ as package_doc
from .config import DEFAULT_ENV, DEFAULT_OUT, DEFAULT_STUDENT, Table4Config
from .planning import format_plan, plan
from .protocol import CELLS, FLICKER_SAMPLES, SAMPLES, VBENCH_SETUP, VBENCH_URL
from .running import run, summary


def add_arguments(parser: argparse.ArgumentParser, weights_root: bool = True) -> None:
    """Table 4's options (a caller with its own --weights-root passes weights_root=False)."""
    if weights_root:
        parser.add_argument("--weights-root", metavar="DIR",
                            help="weights laid out DIR/<owner>/<name>/<file> (default: the Hugging Face cache)")
    parser.add_argument("--vbench-root", metavar="DIR", help=f"a checkout of {VBENCH_URL} (the augmented prompts)")
    parser.add_argument("--vbench-env", metavar="DIR", default=str(DEFAULT_ENV),
                        help=f"VBench's environment (made by {VBENCH_SETUP}; default {DEFAULT_ENV})")
    parser.add_argument("--student", metavar="DIR", default=str(DEFAULT_STUDENT),
                        help="this project's trained student: the cogvideox-2b run folder or its student-K4 export")
    parser.add_argument("--out", metavar="DIR", default=str(DEFAULT_OUT),
                        help="videos and results (default %(default)s)")
    parser.add_argument("--cells", default=",".join(CELLS), help="comma-separated, of: " + ", ".join(CELLS))
    parser.add_argument("--prompts", default="augmented", choices=("augmented", "original"))
    parser.add_argument("--samples", type=int, default=SAMPLES, help="videos per prompt (VBench: 5)")
    parser.add_argument("--flicker-samples", type=int, default=FLICKER_SAMPLES,
                        help="videos per temporal-flickering prompt (VBench: 25, static-filtered to 5)")
    parser.add_argument("--video-seed", type=int, default=0, help="base of every video's seed")
    parser.add_argument("--dtype", default="float16", choices=("float16", "bfloat16", "float32"),
                        help="on a GPU (a CPU samples in float32)")
    parser.add_argument("--dimensions", default="all", help="VBench dimensions: all, or a comma-separated list")
    parser.add_argument("--limit", type=int, help="only the first N prompts (a smoke run, never the benchmark)")
    parser.add_argument("--clip", metavar="F,H,W", help="frames,height,width instead of 49,480,720 (smoke runs, tests)")
    parser.add_argument("--hub-weights", action="store_true", help="let VBench fetch CLIP and DINO from their hubs")


def config_from_args(args: argparse.Namespace) -> Table4Config:
    """A config from parsed options (add_arguments'); an option a caller did not add keeps its default.
    `results_dir` is never read from them (harness.reproduce's --results-dir means another folder)."""
    def get(name, default=None):
        value = getattr(args, name, None)
        return default if value is None else value

    clip = None
    if get("clip"):
        try:
            clip = tuple(int(v) for v in args.clip.split(","))
            assert len(clip) == 3 and min(clip) > 0
        except (ValueError, AssertionError):
            raise UserError(f"--clip expects frames,height,width, got {args.clip!r}") from None
    paths = {}
    for name, option in (("weights_root", "--weights-root"), ("vbench_root", "--vbench-root")):
        if get(name) is not None:
            paths[name] = Path(get(name))
            if not paths[name].is_dir():
                raise UserError(f"{option} {paths[name]} is not a folder")
    d = Table4Config()
    return Table4Config(
        out=Path(get("out", d.out)), vbench_env=Path(get("vbench_env", d.vbench_env)), student=Path(get("student", d.student)),
        cells=tuple(c.strip() for c in get("cells", ",".join(d.cells)).split(",") if c.strip()),
        prompts=get("prompts", d.prompts), samples=get("samples", d.samples),
        flicker_samples=get("flicker_samples", d.flicker_samples), seed=get("video_seed", d.seed),
        dtype=get("dtype", d.dtype), dimensions=get("dimensions", d.dimensions), limit=get("limit"), clip=clip,
        hub_weights=bool(get("hub_weights", False)), **paths)


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m harness.table4_real", description=package_doc.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    plan_parser = commands.add_parser("plan", help="the cells, prompts, videos, cost and missing files; writes nothing")
    run_parser = commands.add_parser("run", help="sample the cells' videos, score them with VBench, write the results")
    for sub in (plan_parser, run_parser):
        add_arguments(sub)
    run_parser.add_argument("--device", default="cuda", choices=("cpu", "cuda"))
    run_parser.add_argument("--batch-size", type=int, default=1, help="videos per pipeline call")
    run_parser.add_argument("--no-vbench", action="store_true", help="only sample the videos")
    run_parser.add_argument("--force", action="store_true", help="rerun VBench on finished cells")
    run_parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
        if args.command == "plan":
            print(format_plan(plan(config)))
            return 0
        device = check_device(args.device)
        quiet_libraries()
        records = run(config, device, args.batch_size, evaluate=not args.no_vbench, force=args.force,
                      show_progress=not args.no_progress)
        print(summary(records))
        failed = [r["cell"] for r in records if r.get("vbench_returncode")]
        if failed:
            print(f"error: VBench failed on some dimensions of {', '.join(failed)}; see their vbench/logs",
                  file=sys.stderr)
            return 1
        return 0
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
