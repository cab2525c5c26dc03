"""Measure a training setting on a small world: every combination of values, every seed, the
world's metrics, and a summary per setting (mean and spread over seeds).

    python -m harness.sweep fisher-alpha --world gmm --variant 4step-fisher --set fisher_alpha=1.0,1.2 --seeds 0,1,2
    python -m harness.sweep lr --variant 4step --set lr_student=2e-6,5e-6 --set lr_fake=2e-5,2e-4 --device cuda
    python -m harness.sweep budget-4step --world tiny-cogvideox --set iterations=250,500,1000,2000 --device cuda

Each combination of the `--set` values (their product) trains the variant's preset at the scale's
settings with those values on top, for every seed, and is sampled at `--steps` steps: cells are made
by the tables' runner (results/sweeps/<NAME>/<world>/; finished ones are kept unless --force and a
killed sweep resumes). The summary goes to results/sweeps/<NAME>/<world>.{csv,md}, with the command
and the code and device of the cells, and for a single numeric setting a plot of every metric
against it (.png; with `--set iterations=...`, the convergence curve). Mistakes end in one line and exit code 2.

A curve's budgets (`--set iterations=500,1500,4500`) share one training run per seed, each budget
continuing from the last one's final checkpoint, so a curve costs its longest budget; run one
process per curve.

On tiny-cogvideox the students are sampled with DDIM (the only solver of the video samplers), and
fd_teacher is against the world's 50-step teacher, as in Table 4.
"""
from __future__ import annotations

import itertools
import re
import statistics
import sys
from dataclasses import fields
from pathlib import Path

from methods.common.cli import OneLineParser, check_device, quiet_libraries
from methods.common.errors import UserError
from methods.common.provenance import write_text_atomic
from methods.common.method import METHODS, get_method
from methods.tdm.config import TrainConfig
from methods.tdm.presets import METHOD_VARIANTS, PRESETS, VARIANTS, resolve

from .reproduce import DEFAULT_RESULTS, _seeds, _writable
from .runner import Job, Runner
from .scales import SCALES, get_scale
from .tables import SMALL_WORLDS, VIDEO_WORLDS, Cell, Row, Table

SETTABLE = ({f.name for f in fields(TrainConfig) if f.name != "method"}
            | {f.name for name in METHODS for f in fields(get_method(name).config_class)})
NOT_SWEPT = {"output_dir", "seed", "tracker", "backbone", "teacher", "prompts"}  # the runner's or the world's


def parse_settings(texts: list[str]) -> list[tuple[str, list[str]]]:
    """['lr_fake=2e-5,2e-4', ...] -> [('lr_fake', ['2e-5', '2e-4']), ...], checked against the configs."""
    out = []
    for text in texts:
        key, _, values = text.partition("=")
        if not values or key in NOT_SWEPT or key not in SETTABLE:
            known = ", ".join(sorted(SETTABLE - NOT_SWEPT))
            raise UserError(f"--set expects KEY=VALUE[,VALUE...] with KEY one of {known}; got {text!r}")
        out.append((key, values.split(",")))
    if len({key for key, _ in out}) != len(out):
        raise UserError("--set: each key once (give its values as a comma-separated list)")
    return out


def sweep_jobs(name: str, world: str, variant: str, steps: int, settings, scale, seeds) -> list[Job]:
    """One job per combination of values and seed; each configuration is resolved (and so checked) first."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise UserError(f"the sweep's NAME must be letters, digits, '.', '_' or '-', got {name!r}")
    worlds = (*SMALL_WORLDS, *VIDEO_WORLDS)
    if world not in worlds:
        raise UserError(f"--world must be one of {', '.join(worlds)}, got {world!r}")
    known = [v for v in (*VARIANTS, *METHOD_VARIANTS.get(world, ())) if f"{world}-{v}" in PRESETS]
    if variant not in known:
        raise UserError(f"--variant must be one of {', '.join(known)} on {world}, got {variant!r}")
    solver = get_method(resolve(f"{world}-{variant}").algorithm).solver  # a DMD2 student: "lcm"
    cell = Cell(variant, steps, "ddim" if world in VIDEO_WORLDS else solver)
    table = Table(f"sweeps/{name}", f"sweep {name}", (Row(name, cell, "sweep"),))
    # Budgets in increasing order: a curve's budgets share one run per seed, each continuing the last.
    settings = [(k, sorted(v, key=_number) if k == "iterations" else v) for k, v in settings]
    jobs = []
    for values in itertools.product(*[v for _, v in settings]):
        chosen = tuple(zip([k for k, _ in settings], values))
        try:
            method = resolve(f"{world}-{variant}", {**scale.train.get(world, {}), **dict(chosen)}).method
        except (ValueError, TypeError) as err:
            raise UserError(f"--set {' '.join(f'{k}={v}' for k, v in chosen)}: {err}") from None
        if "iterations" in dict(chosen) and (method.lr_schedule != "constant" or method.lr_warmup) \
                and not method.lr_horizon:
            raise UserError("--set iterations=...: the budgets share one run, so the learning-rate schedule must "
                            "not depend on the budget; set lr_horizon")
        jobs += [Job(table, table.rows[0].cell, seed, world, scale, chosen) for seed in seeds]
    return jobs


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UserError(f"--set iterations expects numbers, got {text!r}") from None


def summarise(jobs: list[Job], records: list[dict]) -> tuple[list[str], list[list]]:
    """One row per setting: its values, the seeds, and mean and spread (sample std) of every metric."""
    keys, metrics = [k for k, _ in jobs[0].settings], list(records[0]["metrics"])
    groups: dict[tuple, list[dict]] = {}
    for job, rec in zip(jobs, records):
        groups.setdefault(tuple(v for _, v in job.settings), []).append(rec)
    header = [*keys, "seeds", *[f"{m} {part}" for m in metrics for part in ("mean", "std")]]
    rows = []
    for setting, group in groups.items():
        row = [*setting, " ".join(str(r["seed"]) for r in group)]
        for m in metrics:
            values = [r["metrics"][m] for r in group if r["metrics"].get(m) is not None]  # None: not measurable
            row += [statistics.fmean(values) if values else None, statistics.stdev(values) if len(values) > 1 else None]
        rows.append(row)
    return header, rows


def markdown(header, rows, records: list[dict], command: str) -> str:
    directions = records[0].get("metric_directions", {})
    cells = lambda row: " | ".join("-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v) for v in row)
    commits = sorted({r.get("commit", "?") for r in records})
    lines = [f"# Sweep: {records[0]['table'].split('/', 1)[-1]} on {records[0]['world']}", "",
             f"`{command}`", "",
             f"Variant `{records[0]['cell']['variant']}`, sampled at {records[0]['cell']['steps']} steps "
             f"({records[0]['cell']['solver']}), scale `{records[0]['scale']}`, {records[0]['n_samples']} "
             f"evaluation samples per cell. Metric directions: "
             + ", ".join(f"{m} {d} is better" for m, d in directions.items())
             + f". Code: {', '.join(commits)}; devices: {', '.join(sorted({r.get('device', '?') for r in records}))}.",
             "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [f"| {cells(row)} |" for row in rows]
    return "\n".join(lines) + "\n"


def plot(header: list[str], rows: list[list], directions: dict, title: str, path: Path) -> bool:
    """Every metric (mean, with the spread over seeds) against a single numeric setting: a
    convergence curve when the setting is `iterations`. False when there is no such setting."""
    key = header[0]
    if header[1] != "seeds":  # several settings: a table, not a curve
        return False
    try:
        xs = [float(row[0]) for row in rows]
    except ValueError:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = sorted(range(len(rows)), key=xs.__getitem__)
    fig, axes = plt.subplots(1, len(directions), figsize=(4 * len(directions), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], directions):
        i = header.index(f"{metric} mean")
        means = [float("nan") if rows[j][i] is None else rows[j][i] for j in order]
        spread = [rows[j][i + 1] or 0.0 for j in order]
        ax.errorbar([xs[j] for j in order], means, yerr=spread, marker="o", capsize=3)
        ax.set_xlabel(key)
        ax.set_title(f"{metric} ({directions[metric]} is better)", fontsize=9)
        if key == "iterations" or max(xs) / max(min(xs), 1e-30) >= 20:
            ax.set_xscale("log")
        ax.minorticks_off()  # ticks at the swept values only
        ax.set_xticks(sorted(xs), [f"{x:g}" for x in sorted(xs)])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m harness.sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("name", metavar="NAME", help="names the sweep's folder and summary")
    parser.add_argument("--world", default="tiny-sd15")
    parser.add_argument("--variant", default="4step", help="the training variant the settings change")
    parser.add_argument("--set", dest="settings", action="append", required=True, metavar="KEY=V1,V2",
                        help="a setting and its values; several --set: every combination")
    parser.add_argument("--steps", type=int, default=4, help="sampling steps of the evaluation (default 4)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--scale", default="full", choices=tuple(SCALES))
    parser.add_argument("--seeds", help="training seeds, e.g. 0,1,2 (default: the scale's)")
    parser.add_argument("--results-dir", default=str(DEFAULT_RESULTS))
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        if args.steps < 1:
            raise UserError(f"--steps must be at least 1, got {args.steps}")
        settings = parse_settings(args.settings)
        scale = get_scale(args.scale)
        jobs = sweep_jobs(args.name, args.world, args.variant, args.steps, settings, scale, _seeds(args.seeds, scale))
        device = check_device(args.device)
        results_dir = _writable(Path(args.results_dir))
        quiet_libraries()
        records = Runner(results_dir, device, args.force, not args.no_progress).run(jobs)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    header, rows = summarise(jobs, records)
    command = "python -m harness.sweep " + " ".join(argv if argv is not None else sys.argv[1:])
    out = results_dir / "sweeps" / args.name / jobs[0].scale.folder(args.world)
    csv_text = ",".join(header) + "\n" + "\n".join(",".join("" if v is None else str(v) for v in row)
                                                   for row in rows) + "\n"
    write_text_atomic(out.with_suffix(".csv"), csv_text)
    text = markdown(header, rows, records, command)
    write_text_atomic(out.with_suffix(".md"), text)
    print(text)
    title = f"{args.name}: {args.world}, {args.variant} at {args.steps} steps, mean and std over seeds"
    drawn = plot(header, rows, records[0]["metric_directions"], title, out.with_suffix(".png"))
    print(f"wrote {out}.csv, .md{' and .png' if drawn else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
