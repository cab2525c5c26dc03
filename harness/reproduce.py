"""Regenerate a table of the TDM paper, ours beside the paper's numbers.

    python -m harness.reproduce list                     # the tables, where each runs, what each needs
    python -m harness.reproduce table5                   # tiny-sd15; on a CPU the reduced scale
    python -m harness.reproduce table5 --world gmm
    python -m harness.reproduce table5 table6 table7 table8 --device cuda --scale full
    python -m harness.reproduce table3                   # training cost of the runs above
    python -m harness.reproduce table5 --dry-run         # the cells, seeds and training runs, then exit

Each grid cell (train a preset -> sample through the sampler interface -> evaluate) writes
results/<table>/<world>/<cell>-seed<s>.json; finished cells are kept unless --force, and a
killed run picks up where it stopped. The tables go to paper_tables/<table>.{csv,md,tex,png}
(or <results-dir>/paper_tables/ for another results folder). User mistakes end in one line
on stderr and exit code 2.
"""
from __future__ import annotations

import csv
import io
import sys
import tempfile
from pathlib import Path


from methods.common.cli import OneLineParser, check_device, quiet_libraries
from methods.common.errors import UserError
from methods.common.provenance import write_json_atomic, write_text_atomic

from . import cost, report
from .runner import Job, Runner, read_result
from .scales import SCALES, get_scale
from .tables import TABLES, Table, check_world, get_table

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RESULTS = ROOT / "results"


def cmd_list() -> None:
    for table in TABLES.values():
        runs = f"runs on {', '.join(table.worlds)}" if table.worlds else "cannot run yet"
        what = {"grid": f"{len(table.cells())} cells", "cost": f"cost of {', '.join(table.cost_of)}",
                "published": "published numbers only"}[table.kind]
        print(f"{table.id}  {table.title}\n         {what}; {runs}; needs {table.needs}")


def _writable(folder: Path) -> Path:
    """Create the folder and prove we can write in it, before any work starts."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-"):
            pass
    except OSError as err:
        raise UserError(f"cannot write results to {folder}: {err.strerror}") from None
    return folder


def jobs_for(table: Table, world: str, scale, seeds) -> list[Job]:
    return [Job(table, cell, seed, world, scale) for cell in table.cells() for seed in seeds]


def load_records(results_dir: Path, table_ids) -> list[dict]:
    """Every cell record of these tables in the results folder (all worlds and scales)."""
    records = []
    for table_id in table_ids:
        for path in sorted((results_dir / table_id).glob("*/*.json")):
            records.append(read_result(path))
    return records


def write_grid_report(table: Table, results_dir: Path, out_dir: Path) -> str:
    rows = report.long_rows(table, load_records(results_dir, [table.id]))
    if not rows:
        return f"{table.id}: no results in {results_dir / table.id} yet"
    agreement = report.ranking_agreement(rows)
    md = report.markdown(table, rows, agreement)
    write_text_atomic(out_dir / f"{table.id}.csv", _csv(rows, report.CSV_COLUMNS))
    write_text_atomic(out_dir / f"{table.id}.md", md)
    write_text_atomic(out_dir / f"{table.id}.tex", report.latex(table, rows))
    write_json_atomic(out_dir / f"{table.id}-ranking.json", {"table": table.id, "ranking_agreement": agreement})
    report.plot(table, rows, out_dir / f"{table.id}.png")
    return md


def write_cost_report(table: Table, results_dir: Path, out_dir: Path) -> str:
    records = load_records(results_dir, table.cost_of)
    rows = cost.measured_rows(records) + cost.projected_rows() + cost.published_rows(table)
    md = cost.markdown(table, rows)
    write_text_atomic(out_dir / f"{table.id}.csv", _csv(rows, cost.COST_COLUMNS))
    write_text_atomic(out_dir / f"{table.id}.md", md)
    write_text_atomic(out_dir / f"{table.id}.tex", cost.latex(table, rows))
    cost.plot(rows, out_dir / f"{table.id}.png")
    return md


def _csv(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if r.get(k) is None else r.get(k)) for k in columns} for r in rows)
    return buf.getvalue()


def _seeds(text: str | None, scale) -> tuple[int, ...]:
    if text is None:
        return scale.seeds
    try:
        seeds = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise UserError(f"--seeds expects comma-separated integers, got {text!r}") from None
    if not seeds or min(seeds) < 0:
        raise UserError(f"--seeds expects non-negative integers, got {text!r}")
    return seeds


def reproduce(args) -> None:
    tables = [get_table(name) for name in args.tables]
    for table in tables:
        if table.kind == "published":
            raise UserError(f"{table.id} cannot run yet: it needs {table.needs}; its published numbers are in "
                            f"paper_tables/published/{table.id}.csv")
        check_world(table, args.world)
    device = check_device(args.device)
    scale = get_scale(args.scale if args.scale != "auto" else ("full" if device == "cuda" else "reduced"))
    seeds = _seeds(args.seeds, scale)
    results_dir = Path(args.results_dir)
    out_dir = ROOT / "paper_tables" if results_dir.resolve() == DEFAULT_RESULTS else results_dir / "paper_tables"
    jobs = [job for table in tables if table.kind == "grid" for job in jobs_for(table, args.world, scale, seeds)]
    if args.variants:
        wanted = args.variants.split(",")
        unknown = sorted(set(wanted) - {job.cell.variant for job in jobs})
        if unknown:
            raise UserError(f"--variants: {', '.join(unknown)} not in the grid of {', '.join(args.tables)}")
        jobs = [job for job in jobs if job.cell.variant in wanted]
    # Grouped by training run, so whoever trains a run evaluates its cells of every table next.
    first = {}
    for i, job in enumerate(jobs):
        first.setdefault(job.cell.variant, i)
    jobs.sort(key=lambda job: (job.seed, first[job.cell.variant]))
    for table in tables:
        if table.kind == "cost" and not jobs and not load_records(results_dir, table.cost_of):
            raise UserError(f"{table.id} reports the training runs of {', '.join(table.cost_of)}, and "
                            f"{results_dir} holds none yet: run those tables first")
    if args.dry_run:
        _print_plan(jobs, scale, results_dir)
        return
    _writable(results_dir)
    if jobs:
        if scale.name != "full":
            print(f"scale: {scale.name} (a smaller configuration than the committed results; "
                  f"see harness/scales.py)", file=sys.stderr)
        Runner(results_dir, device, args.force, not args.no_progress).run(jobs)
    _writable(out_dir)
    for table in tables:
        writer = write_cost_report if table.kind == "cost" else write_grid_report
        print(writer(table, results_dir, out_dir))
        print(f"wrote {out_dir / table.id}.*")


def _print_plan(jobs: list[Job], scale, results_dir: Path) -> None:
    runs = {}
    for job in jobs:
        config = job.train_config(results_dir)
        runs.setdefault(job.run_dir(results_dir), (config, []))[1].append(f"{job.cell.key}-seed{job.seed}")
    print(f"scale {scale.name}: {len(jobs)} cells from {len(runs)} training runs")
    for run_dir, (config, cells) in runs.items():
        m = config.method
        print(f"  {run_dir}: {config.iterations} iterations, batch {m.batch_size}, steps {list(m.steps)}, "
              f"loss {m.loss}, solver {m.solver}, importance {m.importance_weights}, match {m.match}, "
              f"step conditioning {m.step_conditioning and m.unify}\n      cells: {', '.join(cells)}")


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m harness.reproduce", description=__doc__.split("\n\n")[0])
    parser.add_argument("tables", nargs="+", metavar="TABLE", help="list, or one or more of table1 ... table8")
    parser.add_argument("--world", default="tiny-sd15", help="tiny-sd15 (default) or gmm")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--scale", default="auto", choices=("auto", *SCALES),
                        help="auto: full on cuda, reduced on cpu")
    parser.add_argument("--seeds", help="training seeds, e.g. 0,1,2 (default: the scale's)")
    parser.add_argument("--variants", help="only the cells of these training variants, e.g. unify,4step")
    parser.add_argument("--results-dir", default=str(DEFAULT_RESULTS))
    parser.add_argument("--force", action="store_true", help="recompute finished cells and retrain their runs")
    parser.add_argument("--dry-run", action="store_true", help="print the cells and training runs, then exit")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        if args.tables == ["list"]:
            cmd_list()
            return 0
        quiet_libraries()
        reproduce(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
