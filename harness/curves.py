"""Convergence curves of several methods side by side: the small world's Fig. 9 (TDM against DMD2).

    python -m harness.curves budget-4step budget-dmd2-4step --x generator_updates --out results/curves/tdm-dmd2
    python -m harness.curves budget-4step budget-dmd2-4step --x train_seconds --metric fd_teacher

Each name is a budget sweep (`python -m harness.sweep NAME --set iterations=...`) whose cell records
are read from results/sweeps/NAME/<world>/; nothing is trained or sampled. A curve is one sweep's
metric (mean and sample std over its seeds) against one of three axes:

- `iterations`, the loop's own count, which means different work per method;
- `generator_updates`, the student's optimiser steps: TDM updates its student every iteration, DMD2
  on one iteration in `generator_every` (its two time-scale rule);
- `train_seconds`, iterations times the median measured seconds per iteration of the sweep's cells:
  the compute-matched axis the paper's Fig. 9 uses (training time). Only fair between sweeps measured
  on one kind of device, so the caption names each sweep's devices.

Writes OUT.csv, OUT.md (with the command and each sweep's code and devices) and OUT.png.
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from methods.common.cli import OneLineParser
from methods.common.errors import UserError
from methods.common.provenance import write_text_atomic

from .reproduce import DEFAULT_RESULTS

AXES = ("iterations", "generator_updates", "train_seconds")


def sweep_records(results_dir: Path, name: str, world: str) -> list[dict]:
    """The finished cells of a budget sweep, each with a training budget."""
    folder = results_dir / "sweeps" / name / world
    records = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    records = [r for r in records if r.get("training", {}).get("iterations")]
    if not records:
        raise UserError(f"no finished cells of a sweep {name!r} in {folder} (python -m harness.sweep {name} "
                        f"--world {world} --set iterations=... makes them)")
    return records


def generator_updates(config: dict) -> int:
    """The student's optimiser steps in a run of `config` (a record's training config)."""
    iterations = config["iterations"]
    if config.get("algorithm", "tdm") == "dmd2":
        every = config["method"]["generator_every"]
        return iterations // every  # turns close each run of `every` iterations
    return iterations


def curve(records: list[dict], metric: str, axis: str) -> list[dict]:
    """Points (x, mean, std, seeds) of one sweep, by budget."""
    by_budget: dict[int, list[dict]] = {}
    for r in records:
        by_budget.setdefault(r["training"]["iterations"], []).append(r)
    seconds = statistics.median(r["training"]["seconds_per_iteration"] for r in records
                                if r["training"].get("seconds_per_iteration")) if axis == "train_seconds" else None
    points = []
    for iterations, group in sorted(by_budget.items()):
        values = [r["metrics"][metric] for r in group if r["metrics"].get(metric) is not None]
        if not values:
            continue
        x = {"iterations": iterations, "generator_updates": generator_updates(group[0]["training"]["config"]),
             "train_seconds": None if seconds is None else iterations * seconds}[axis]
        points.append({"x": x, "iterations": iterations, "mean": statistics.fmean(values),
                       "std": statistics.stdev(values) if len(values) > 1 else None,
                       "seeds": sorted(r["seed"] for r in group)})
    return points


def label(records: list[dict]) -> str:
    """What trained a sweep's cells: the method and its variant."""
    config = records[0]["training"]["config"]
    return f"{config.get('algorithm', 'tdm').upper()} ({records[0]['cell']['variant']})"


def provenance(records: list[dict]) -> str:
    commits = sorted({r.get("commit", "?")[:12] for r in records})
    devices = sorted({r.get("device", "?") for r in records})
    return f"code {', '.join(commits)}; devices {', '.join(devices)}"


def draw(curves: dict[str, list[dict]], labels: dict[str, str], metric: str, direction: str, axis: str,
         path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    for name, points in curves.items():
        ax.errorbar([p["x"] for p in points], [p["mean"] for p in points], yerr=[p["std"] or 0.0 for p in points],
                    marker="o", capsize=3, label=labels[name])
    if min(p["x"] for points in curves.values() for p in points) > 0:
        ax.set_xscale("log")  # budgets grow geometrically
    ax.set_xlabel(axis.replace("_", " "))
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} ({direction} is better), mean and std over seeds", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m harness.curves", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweeps", nargs="+", metavar="SWEEP", help="budget sweeps' names (results/sweeps/SWEEP)")
    parser.add_argument("--world", default="tiny-sd15", help="the sweeps' world folder (e.g. tiny-sd15, gmm-smoke)")
    parser.add_argument("--metric", default="fd_teacher")
    parser.add_argument("--x", dest="axis", default="generator_updates", choices=AXES)
    parser.add_argument("--results-dir", default=str(DEFAULT_RESULTS))
    parser.add_argument("--out", help="output path without suffix (default: RESULTS/curves/<sweeps>-<world>)")
    args = parser.parse_args(argv)
    results_dir = Path(args.results_dir)
    try:
        records = {name: sweep_records(results_dir, name, args.world) for name in args.sweeps}
        for name, rs in records.items():
            if args.metric not in rs[0]["metrics"]:
                raise UserError(f"--metric {args.metric!r}: sweep {name} measured {', '.join(rs[0]['metrics'])}")
        curves = {name: curve(rs, args.metric, args.axis) for name, rs in records.items()}
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else results_dir / "curves" / f"{'-'.join(args.sweeps)}-{args.world}"
    out.parent.mkdir(parents=True, exist_ok=True)
    labels = {name: label(rs) for name, rs in records.items()}
    direction = next(iter(records.values()))[0]["metric_directions"].get(args.metric, "?")
    rows = [(name, labels[name], p) for name, points in curves.items() for p in points]
    write_text_atomic(out.with_suffix(".csv"), f"sweep,method,{args.axis},iterations,{args.metric} mean,"
                      f"{args.metric} std,seeds\n" + "".join(
                          f"{name},{lab},{p['x']:g},{p['iterations']},{p['mean']},{'' if p['std'] is None else p['std']},"
                          f"{' '.join(map(str, p['seeds']))}\n" for name, lab, p in rows))
    command = "python -m harness.curves " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [f"# {args.metric} against {args.axis.replace('_', ' ')} on {args.world}", "", f"`{command}`", "",
             *[f"- `{name}`: {labels[name]}, {provenance(rs)}" for name, rs in records.items()], "",
             f"| sweep | method | {args.axis} | iterations | {args.metric} mean | std | seeds |",
             "|---|---|---:|---:|---:|---:|---|"]
    lines += [f"| {name} | {lab} | {p['x']:g} | {p['iterations']} | {p['mean']:.4g} | "
              f"{'-' if p['std'] is None else format(p['std'], '.2g')} | {' '.join(map(str, p['seeds']))} |"
              for name, lab, p in rows]
    write_text_atomic(out.with_suffix(".md"), "\n".join(lines) + "\n")
    draw(curves, labels, args.metric, direction, args.axis, out.with_suffix(".png"))
    print("\n".join(lines))
    print(f"wrote {out}.csv, .md and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
