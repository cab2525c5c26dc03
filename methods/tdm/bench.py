"""Speed and memory of TDM training at real size (SD-1.5, SDXL or PixArt-alpha), on random weights.

    python -m methods.tdm.bench --out results/bench/tdm-sd15-h100.json [--batch-size 16] [--iterations 20]
    python -m methods.tdm.bench --backbone sdxl --out results/bench/tdm-sdxl-h100.json [key=value ...]

Builds a random-initialised pipeline folder of the backbone's real architecture
(methods.common.random_pipelines), runs the preset of the same name on it (bf16 on GPU)
without checkpoints or export, and writes seconds per iteration, samples per second and
peak memory with provenance. The first iteration is warm-up and is not timed.
"""
from __future__ import annotations

from dataclasses import asdict
import json
import sys
import tempfile
import time
from pathlib import Path

PROMPTS = ["a photo of a cat on a sofa", "a watercolour painting of a lighthouse at dusk",
           "an astronaut riding a horse", "a bowl of ramen, studio lighting", "a city street in the rain at night",
           "a portrait of an old fisherman", "a red sports car on a mountain road", "a cosy library with tall shelves"]


def main(argv: list[str] | None = None) -> int:
    from harness.provenance import provenance, write_json_atomic
    from methods.common.cli import OneLineParser, is_main_launch_process, quiet_libraries
    from methods.common.errors import UserError
    from methods.common.random_pipelines import BUILDERS

    from .presets import resolve
    from .train import train

    parser = OneLineParser(prog="python -m methods.tdm.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--backbone", choices=tuple(BUILDERS), default="sd15", help="also the preset (default: sd15)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--pipeline", help="use this pipeline folder instead of building a random one")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None)
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)
    quiet_libraries()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            started = time.time()
            pipeline = args.pipeline or str(BUILDERS[args.backbone](Path(tmp) / f"{args.backbone}-random"))
            build_seconds = time.time() - started
            (Path(tmp) / "prompts.txt").write_text("\n".join(PROMPTS))
            config = resolve(args.backbone, [f"teacher={pipeline}", f"prompts={Path(tmp) / 'prompts.txt'}",
                                      f"batch_size={args.batch_size}", f"iterations={args.iterations}",
                                      "checkpoint_every=0", "export=false", "tracker=none", "log_every=1",
                                      f"output_dir={Path(tmp) / 'run'}", *args.overrides])
            summary = train(config, args.device)
            if not is_main_launch_process():
                return 0
            losses = [json.loads(line) for line in (Path(tmp) / "run" / "losses.jsonl").read_text().splitlines()]
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    device = summary["device"]
    record = {"what": f"TDM training iterations at {args.backbone} size on random weights (speed and memory only)",
              "command": "python -m methods.tdm.bench " + " ".join(argv if argv is not None else sys.argv[1:]),
              "pipeline": f"random {args.backbone} architecture" if not args.pipeline else args.pipeline,
              "pipeline_build_seconds": round(build_seconds, 1), **summary,
              "final_losses": losses[-1], "config": asdict(config),
              "provenance": provenance(device)}
    write_json_atomic(args.out, record)
    print(json.dumps({k: v for k, v in record.items() if k != "config"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
