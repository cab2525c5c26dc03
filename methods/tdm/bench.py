"""Speed and memory of TDM training at real size (SD-1.5, SDXL or PixArt-alpha) on random weights,
or on the shipped tiny-sd15 world.

    python -m methods.tdm.bench --out results/bench/tdm-sd15-h200.json [--batch-size 16] [--iterations 20]
    python -m methods.tdm.bench --backbone sdxl --out results/bench/tdm-sdxl-h200.json [key=value ...]
    python -m methods.tdm.bench --backbone tiny-sd15 --batch-size 256 --compare execution=eager --out ...

Builds a random-initialised pipeline folder of the backbone's real architecture
(methods.common.random_pipelines), runs the preset of the same name on it (bf16 on GPU)
without checkpoints or export, and writes seconds per iteration, samples per second and
peak memory with provenance. The first two iterations are warm-up (under CUDA graphs: the
eager run and the capture) and are not timed. `tiny-sd15` runs the world's `tiny-sd15-4step`
preset on its shipped teacher and captions. `--compare "key=value ..."` runs the same bench
again with those settings changed (e.g. `execution=eager`) and records both and their ratio.

Then, in the same process and on the same pipeline, batch and iteration count, it measures the
official demo script's pass structure (methods.tdm.official_layout; `--no-reference` skips it)
and records both, the speed-up of the project's trainer over it, and each one's achieved
TFLOP/s against `--peak-tflops`.
"""
from __future__ import annotations

from dataclasses import asdict
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

PROMPTS = ["a photo of a cat on a sofa", "a watercolour painting of a lighthouse at dusk",
           "an astronaut riding a horse", "a bowl of ramen, studio lighting", "a city street in the rain at night",
           "a portrait of an old fisherman", "a red sports car on a mountain road", "a cosy library with tall shelves"]
TINY = "tiny-sd15"  # the shipped world: its own teacher and captions, nothing to build
PEAK_TFLOPS = 790.0  # about what a dense bf16 matrix product reaches on one H200 (--peak-tflops for other GPUs)


def main(argv: list[str] | None = None) -> int:
    from methods.common.provenance import provenance, write_json_atomic
    from methods.common.cli import OneLineParser, is_main_launch_process, quiet_libraries
    from methods.common.errors import UserError
    from methods.common.random_pipelines import BUILDERS

    parser = OneLineParser(prog="python -m methods.tdm.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--backbone", choices=(*BUILDERS, TINY), default="sd15", help="also the preset (default: sd15)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--pipeline", help="use this pipeline folder instead of building a random one")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None)
    parser.add_argument("--no-reference", action="store_true",
                        help="skip the official script's layout (measured after the project's run by default)")
    parser.add_argument("--peak-tflops", type=float, default=PEAK_TFLOPS,
                        help=f"the device's dense matmul rate, for achieved/peak (default: {PEAK_TFLOPS}, one H200)")
    parser.add_argument("--compare", metavar='"key=value ..."',
                        help="also run with these settings changed, in the same process, and record the ratio")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)
    quiet_libraries()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            started = time.time()
            pipeline = args.pipeline or (None if args.backbone == TINY else
                                         str(BUILDERS[args.backbone](Path(tmp) / f"{args.backbone}-random")))
            build_seconds = time.time() - started
            config = bench_config(args.backbone, pipeline, Path(tmp), args.batch_size, args.iterations, args.overrides)
            summary, losses = run(config, args.device)
            if not is_main_launch_process():
                return 0
            compared = None
            if args.compare:
                other = bench_config(args.backbone, pipeline, Path(tmp) / "compare", args.batch_size, args.iterations,
                                     [*args.overrides, *args.compare.split()])
                free_memory(summary["device"])
                compared = {**dict(zip(("summary", "final_losses"), run(other, args.device))),
                            "overrides": args.compare.split()}
            official = None if args.no_reference else reference(config, summary["device"], args.iterations)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    device = summary["device"]
    project = {**summary, "ms_per_sample_iteration": ms_per_sample_iteration(summary)}
    weights = "the shipped teacher" if args.backbone == TINY else "random weights"
    record = {"what": f"TDM training iterations at {args.backbone} size on {weights} (speed and memory only)",
              "command": "python -m methods.tdm.bench " + " ".join(argv if argv is not None else sys.argv[1:]),
              "pipeline": args.pipeline or ("the shipped tiny-sd15 teacher" if args.backbone == TINY
                                            else f"random {args.backbone} architecture"),
              "pipeline_build_seconds": round(build_seconds, 1), **project,
              **throughput(project, args.peak_tflops),
              "final_losses": losses, "config": asdict(config),
              "peak_tflops_assumed": args.peak_tflops,
              "official_layout": None if official is None else {**official, **throughput(official, args.peak_tflops)},
              **against_official(project, official),
              "compared": None if compared is None else _compared(project, compared, args.peak_tflops),
              "provenance": provenance(device)}
    write_json_atomic(args.out, record)
    print(json.dumps({k: v for k, v in record.items() if k not in ("config", "official_layout", "compared")}, indent=2))
    print(table(record))
    return 0


def bench_config(backbone: str, pipeline: str | None, folder: Path, batch_size: int, iterations: int, overrides):
    """The preset of `backbone` on `pipeline`, timed only: no checkpoints, export or trackers."""
    from .presets import resolve

    folder.mkdir(parents=True, exist_ok=True)
    if backbone == TINY:
        data = ["teacher=tiny-sd15", "prompts=tiny-sd15"]
    else:
        (folder / "prompts.txt").write_text("\n".join(PROMPTS))
        data = [f"teacher={pipeline}", f"prompts={folder / 'prompts.txt'}"]
    return resolve(f"{TINY}-4step" if backbone == TINY else backbone, [
        *data, f"batch_size={batch_size}", f"iterations={iterations}", "checkpoint_every=0", "export=false",
        "tracker=none", "log_every=1", f"output_dir={folder / 'run'}", *overrides])


def run(config, device: str | None) -> tuple[dict, dict | None]:
    """train()'s summary and the last logged losses."""
    from .train import train

    summary = train(config, device)
    log = Path(config.output_dir) / "losses.jsonl"
    lines = log.read_text().splitlines() if log.is_file() else []
    return summary, json.loads(lines[-1]) if lines else None


def _compared(project: dict, compared: dict, peak_tflops: float) -> dict:
    """The comparison run, and how many times faster the main run is."""
    other = {**compared["summary"], "ms_per_sample_iteration": ms_per_sample_iteration(compared["summary"])}
    return {"overrides": compared["overrides"], **other, **throughput(other, peak_tflops),
            "final_losses": compared["final_losses"],
            "speedup_of_main_run": ratio(other["ms_per_sample_iteration"], project["ms_per_sample_iteration"])}


def reference(config, device: str, iterations: int) -> dict:
    """The official script's layout on the same pipeline, batch and iterations, after the project's
    run has let go of its memory. Running out of GPU memory is a result here, not a failure: the
    project's measurement is still written."""
    import torch

    from .official_layout import measure_official_layout

    free_memory(device)  # so that the reference's peak is its own
    try:
        return measure_official_layout(config, device, iterations)
    except torch.cuda.OutOfMemoryError as err:
        message = str(err).splitlines()[0] if str(err) else "CUDA"
    free_memory(device)  # the failed layout's tensors go with the exception
    return {"error": f"out of memory: {message}", "batch_size": config.method.batch_size}


def against_official(project: dict, official: dict | None) -> dict:
    """speed-up = official / project time per sample-iteration; memory = project / official peak."""
    official = official or {}
    return {"speedup_vs_official": ratio(official.get("ms_per_sample_iteration"), project["ms_per_sample_iteration"]),
            "peak_memory_vs_official": ratio(project["peak_memory_gib"], official.get("peak_memory_gib"))}


def free_memory(device: str) -> None:
    """Release what the project's run left behind: its networks and optimisers are garbage once
    train() returns, but reference cycles keep them until a collection."""
    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def ms_per_sample_iteration(run: dict) -> float | None:
    seconds = run.get("seconds_per_iteration")
    return 1000 * seconds / run["batch_size"] if seconds else None


def ratio(numerator, denominator) -> float | None:
    return numerator / denominator if numerator and denominator else None


def throughput(run: dict, peak_tflops: float) -> dict:
    """Achieved TFLOP/s (FLOPs of one iteration over its seconds) and its fraction of the peak."""
    achieved = ratio(run.get("flops_per_iteration"), run.get("seconds_per_iteration"))
    achieved = achieved / 1e12 if achieved else None
    return {"achieved_tflops": achieved, "fraction_of_peak": ratio(achieved, peak_tflops)}


def table(record: dict) -> str:
    """Both layouts side by side, then the speed-up and the memory ratio."""
    columns = [("ms/sample-it", "ms_per_sample_iteration", "{:.1f}"), ("s/it", "seconds_per_iteration", "{:.3f}"),
               ("samples/s", "samples_per_second", "{:.1f}"), ("peak GiB", "peak_memory_gib", "{:.1f}"),
               ("TFLOP/s", "achieved_tflops", "{:.3g}"), ("of peak", "fraction_of_peak", "{:.1%}")]
    execution = record.get("execution", "?")
    rows = [(f"project ({execution})", record)]
    if record.get("compared"):
        rows.append((f"project ({' '.join(record['compared']['overrides'])})", record["compared"]))
    if record["official_layout"] is not None:
        rows.append(("official pass structure", record["official_layout"]))

    def cell(run, key, fmt):
        return "-" if run.get(key) is None else fmt.format(run[key])

    lines = [f"{'layout':28s}" + "".join(f"{title:>14s}" for title, _, _ in columns)]
    lines += [f"{name:28s}" + "".join(f"{cell(run, key, fmt):>14s}" for _, key, fmt in columns) for name, run in rows]
    if record["official_layout"] is not None and "error" in record["official_layout"]:
        lines.append(f"official pass structure: {record['official_layout']['error']}")
    if record.get("compared") and record["compared"]["speedup_of_main_run"]:
        lines.append(f"speed-up of the first row over the second: {record['compared']['speedup_of_main_run']:.2f}x")
    if record["official_layout"] is not None and "error" not in record["official_layout"]:
        speedup, memory = record["speedup_vs_official"], record["peak_memory_vs_official"]
        lines.append(f"speed-up of the project over the official layout: "
                     f"{'-' if speedup is None else f'{speedup:.2f}x'}; peak memory, project / official: "
                     f"{'-' if memory is None else f'{memory:.2f}x'} (assumed peak {record['peak_tflops_assumed']:g} "
                     "TFLOP/s)")
    return "\n".join(lines)


if __name__ == "__main__":
    from .train import exit_launched

    code = main()
    exit_launched(code)  # a launched run ends without tearing down its process group (train.py)
    sys.exit(code)
