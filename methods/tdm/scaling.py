"""N GPUs against one on a random-initialised real-size pipeline: do they train the same thing,
and how much faster is it?

    python -m methods.tdm.scaling --processes 2 --out results/bench/tdm-sd15-ddp.json
    python -m methods.tdm.scaling --processes 2 --fsdp --out results/bench/tdm-sd15-fsdp.json

1. Equivalence: `--check-iterations` iterations at global batch `--check-batch` in fp32, once as
   `python -m methods.tdm.train` and once through `accelerate launch` on N processes (DDP, or
   FSDP with --fsdp); the logged losses and the exported student's weights are compared.
2. Scaling: `--iterations` iterations at `--per-gpu-batch` rows per process in bf16 on one
   process and on N; efficiency = samples/s with N / (N x samples/s with one).

With --processes 1 the launched side is a one-process DDP (or FSDP) run: a check of the launch
path and of the wrapper's cost, not of scaling. Every run is a subprocess; when one fails, the
tail of its output is printed and nothing is written.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PIPELINE_BUILDERS = ("sd15", "sdxl", "pixart")


def _train(processes: int, args: list[str], out: Path, fsdp: bool, launched: bool, mixed_precision: str) -> dict:
    """One training run as a subprocess; its summary.json."""
    from .launch import train_command

    command = train_command(processes, [*args, f"output_dir={out}", "--no-progress"], fsdp=fsdp,
                            mixed_precision=mixed_precision, launcher=launched)
    log = out.with_suffix(".log")
    started = time.perf_counter()
    with log.open("w") as f:
        done = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT)
    if done.returncode:
        tail = "".join(log.read_text().splitlines(keepends=True)[-150:])
        raise RuntimeError(f"{' '.join(command)} failed (exit {done.returncode}):\n{tail}")
    summary = json.loads((out / "summary.json").read_text())
    return {**summary, "command": " ".join(command[1:]), "launch_seconds": round(time.perf_counter() - started, 1)}


def _equivalence(args, common: list[str], sides: dict, tmp: Path) -> dict:
    """The same fp32 run on one process and on N: largest loss and exported-weight differences."""
    from .compare import exported_weights, loss_differences, read_losses, weight_differences

    check = [*common, f"iterations={args.check_iterations}", f"batch_size={args.check_batch}",
             "mixed_precision=no", "export=true"]
    runs = {name: _train(p, check, tmp / f"check-{name}", args.fsdp and launched, launched, "no")
            for name, (p, launched) in sides.items()}
    one, launched = tmp / "check-one", tmp / "check-launched"
    return {"global_batch": args.check_batch, "iterations": args.check_iterations, "precision": "fp32",
            "max_loss_rel_diff": loss_differences(read_losses(one), read_losses(launched)),
            "max_student_weight_abs_diff": weight_differences(exported_weights(one), exported_weights(launched)),
            "runs": runs}


def _scaling(args, common: list[str], sides: dict, tmp: Path) -> dict:
    """bf16 throughput at a fixed batch per process; efficiency = sps(N) / (N sps(1))."""
    n = args.processes
    speed = [*common, f"iterations={args.iterations}", "export=false"]
    runs = {name: _train(p, [*speed, f"batch_size={args.per_gpu_batch * p}"], tmp / f"speed-{name}",
                         args.fsdp and launched, launched, "bf16")
            for name, (p, launched) in sides.items()}
    one, many = runs["one"]["samples_per_second"], runs["launched"]["samples_per_second"]
    return {"per_gpu_batch": args.per_gpu_batch, "iterations": args.iterations,
            "samples_per_second": {"1 (python)": one, f"{n} (accelerate launch)": many},
            "efficiency": many / (n * one), "runs": runs}


def _parser():
    from methods.common.cli import OneLineParser

    parser = OneLineParser(prog="python -m methods.tdm.scaling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--fsdp", action="store_true", help="the launched side uses FSDP2 (accelerate_configs/fsdp.yaml)")
    parser.add_argument("--backbone", choices=PIPELINE_BUILDERS, default="sd15", help="also the preset")
    parser.add_argument("--pipeline", help="a pipeline folder to use instead of a random one")
    parser.add_argument("--check-batch", type=int, default=4)
    parser.add_argument("--check-iterations", type=int, default=5)
    parser.add_argument("--per-gpu-batch", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--skip-check", action="store_true", help="throughput only")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: processes over gloo (a test)")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    return parser


def main(argv: list[str] | None = None) -> int:
    from methods.common.provenance import provenance, write_json_atomic
    from methods.common.random_pipelines import BUILDERS

    from .bench import PROMPTS

    parser = _parser()
    args = parser.parse_intermixed_args(argv)
    n = args.processes
    if n < 1 or args.check_batch % n:
        parser.error(f"--check-batch {args.check_batch} must divide evenly over --processes {n}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pipeline = args.pipeline or str(BUILDERS[args.backbone](tmp / f"{args.backbone}-random"))
        (tmp / "prompts.txt").write_text("\n".join(PROMPTS))
        common = ["--preset", args.backbone, f"teacher={pipeline}", f"prompts={tmp / 'prompts.txt'}",
                  "tracker=none", "checkpoint_every=0", "log_every=1", "--device", args.device, *args.overrides]
        record = {"what": f"TDM on {n} process(es) ({'FSDP2' if args.fsdp else 'DDP'}) against one, "
                          f"{args.backbone} architecture on random weights",
                  "command": "python -m methods.tdm.scaling " + " ".join(argv if argv is not None else sys.argv[1:]),
                  "processes": n, "wrapper": "FSDP2" if args.fsdp else "DDP"}
        sides = {"one": (1, False), "launched": (n, True)}  # name: (processes, through accelerate launch)
        try:
            if not args.skip_check:
                record["equivalence"] = _equivalence(args, common, sides, tmp)
            record["scaling"] = _scaling(args, common, sides, tmp)
        except RuntimeError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        record["provenance"] = provenance(args.device)
        write_json_atomic(args.out, record)
    print(json.dumps({k: v for k, v in record.items() if k not in ("equivalence", "scaling")} | {
        "equivalence": {k: v for k, v in record.get("equivalence", {}).items() if k != "runs"},
        "efficiency": record["scaling"]["efficiency"], "samples_per_second": record["scaling"]["samples_per_second"]},
        indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
