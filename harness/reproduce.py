"""Regenerate a table of the TDM paper, ours beside the paper's numbers.

    python -m harness.reproduce list                     # the tables, where each runs, what each needs
    python -m harness.reproduce table5                   # tiny-sd15; on a CPU the reduced scale
    python -m harness.reproduce table5 --world gmm
    python -m harness.reproduce table5 table6 table7 table8 --device cuda --scale full
    python -m harness.reproduce table3                   # training cost of the runs above
    python -m harness.reproduce table4 --world tiny-cogvideox --device cuda   # the video world (Table 4)
    python -m harness.reproduce table5 --dry-run         # the cells, seeds and training runs, then exit
    python -m harness.reproduce table4 --report-only     # the tables from the records there, computing nothing
    python -m harness.reproduce table1 --dry-run         # every recipe cell and the files it still needs
    python -m harness.reproduce table1 table2 --weights-root weights   # the recipe cells whose weights are there

Each grid cell (train a preset -> sample through the sampler interface -> evaluate) writes
results/<table>/<world>/<cell>-seed<s>.json; finished cells are kept unless --force, and a
killed run picks up where it stopped. The tables go to paper_tables/<table>.{csv,md,tex,png}
(or <results-dir>/paper_tables/ for another results folder). A record this checkout would make
under another fingerprint (the world's teacher, the preset or the evaluation changed since) is
shown marked "(stale)", never as current. User mistakes end in one line on stderr and exit code 2.

Tables 1 and 2 are grids of recipe cells (published checkpoints, baselines/recipes.py): nothing
is trained, one result per cell. They run on the tiny-sd15 world's metrics for now (sampled at
its 64 px, judged by its classifier): plumbing, not the paper's comparison. Weights come from
--weights-root (laid out <DIR>/<owner>/<name>/<file>) or the Hugging Face cache. A cell whose
files are missing is skipped and listed on stderr with them; the command exits 0 when some cell
ran, and 2, in one line, when none of the requested cells can run.

Table 4 runs on the small video world tiny-cogvideox (its build: harness/worlds/tiny_cogvideox/
location.py): the world's teacher at 50 and at 4 DDIM steps with CFG (teacher cells: nothing trained,
one result each, seed 0), and TDM-4step students of it, scored with the world's own video metrics
beside the paper's VBench total. Without --world, a table runs on tiny-sd15 where it can, else on
its first world (Table 4: tiny-cogvideox).
"""
from __future__ import annotations

import csv
import io
import sys
import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path


from methods.common.cli import OneLineParser, check_device, parse_seeds, quiet_libraries
from methods.common.errors import UserError
from methods.common.provenance import write_json_atomic, write_text_atomic

from baselines import weights as weight_files

from . import cost, report
from .runner import RECIPE_SEED, RECIPE_SEED_MEANING, Job, Runner, read_result
from .scales import SCALES, get_scale
from .tables import REAL, TABLES, Table, check_world, get_table

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RESULTS = ROOT / "results"


def cmd_list() -> None:
    for table in TABLES.values():
        runs = f"runs on {', '.join(table.worlds)}" if table.worlds else "cannot run yet"
        what = {"grid": _grid_size(table), "cost": f"cost of {', '.join(table.cost_of)}",
                "published": "published numbers only"}[table.kind]
        print(f"{table.id}  {table.title}\n         {what}; {runs}; needs {table.needs}")


def _grid_size(table: Table) -> str:
    if not table.has_recipes:
        return f"{len(table.cells())} cells"
    return f"{_count(len(table.cells()), 'recipe cell')}, {_needing(len(table.pending()))}"


def _needing(n: int) -> str:
    return f"{_count(n, 'row')} that {'needs' if n == 1 else 'need'} training first"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


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
    """A trained cell once per training seed; a recipe cell once, at RECIPE_SEED (it has no training seed)."""
    return [Job(table, cell, seed, world, scale) for cell in table.cells()
            for seed in (seeds if cell.trained else (RECIPE_SEED,))]


def load_records(results_dir: Path, table_ids) -> list[dict]:
    """Every cell record of these tables in the results folder (all worlds and scales)."""
    records = []
    for table_id in table_ids:
        for path in sorted((results_dir / table_id).glob("*/*.json")):
            records.append(read_result(path))
    return records


def write_grid_report(table: Table, results_dir: Path, out_dir: Path, runner: Runner) -> str:
    records = [{**record, "stale": runner.is_stale(table, record)} for record in load_records(results_dir, [table.id])]
    rows = report.long_rows(table, records)
    if not rows:
        return f"{table.id}: no results in {results_dir / table.id} yet"
    agreement = report.ranking_agreement(rows, across_steps=table.across_steps)
    md = report.markdown(table, rows, agreement)
    write_text_atomic(out_dir / f"{table.id}.csv", _csv(rows, report.csv_columns(table)))
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


def _weights_root(text: str | None) -> Path | None:
    if text is None:
        return None
    root = Path(text)
    if not root.is_dir():
        raise UserError(f"--weights-root {text} is not a folder")
    return root


def _where(root: Path | None) -> str:
    return (f"looked under {root} and in the Hugging Face cache" if root is not None
            else "looked in the Hugging Face cache; pass --weights-root DIR")


def _missing(job: Job, runner: Runner, state: str | None = None) -> list[str]:
    """The files a recipe cell still needs before it can run: none for a trained cell, or for one
    whose result is already there (it is not sampled again). `state`: runner.status(job), if known."""
    if job.cell.kind != "recipe":
        return []
    if not runner.force and (state or runner.status(job)) not in ("to compute", "stale"):
        return []
    return weight_files.missing(job.cell.sampler_recipe, runner.weights_root)


def _runnable(jobs: list[Job], runner: Runner) -> list[Job]:
    """The jobs that can run; the recipe cells without weights are listed on stderr. None at all: a user error."""
    missing = {id(job): _missing(job, runner) for job in jobs}
    skipped = [job for job in jobs if missing[id(job)]]
    if skipped and len(skipped) == len(jobs):
        tables = " ".join(dict.fromkeys(job.table.id for job in jobs))
        raise UserError(f"no cell of {tables} can run: the weights of its {len(jobs)} recipe cells are missing "
                        f"({_where(runner.weights_root)}); python -m harness.reproduce {tables} --dry-run lists them")
    for job in skipped:
        print(f"skipped {job.table.id} {job.cell.key}: missing {'; '.join(missing[id(job)])}", file=sys.stderr)
    if skipped:
        print(f"skipped {_count(len(skipped), 'recipe cell')} whose weights are missing ({_where(runner.weights_root)})",
              file=sys.stderr)
    return [job for job in jobs if not missing[id(job)]]


def _seeds(text: str | None, scale) -> tuple[int, ...]:
    return scale.seeds if text is None else parse_seeds(text)


def reproduce(args) -> None:
    tables = [get_table(name) for name in args.tables]
    world = args.world or default_world(tables)
    if world == REAL and any(table.id == "table4" for table in tables):
        return _table4_real(tables, args)
    for table in tables:
        if table.kind == "published":
            raise UserError(f"{table.id} cannot run yet: it needs {table.needs}; its published numbers are in "
                            f"paper_tables/published/{table.id}.csv")
        check_world(table, world)
    device = check_device(args.device)
    scale = get_scale(args.scale if args.scale != "auto" else ("full" if device == "cuda" else "reduced"))
    seeds = _seeds(args.seeds, scale)
    results_dir = Path(args.results_dir)
    out_dir = ROOT / "paper_tables" if results_dir.resolve() == DEFAULT_RESULTS else results_dir / "paper_tables"
    runner = Runner(results_dir, device, args.force, not args.no_progress, _weights_root(args.weights_root))
    jobs = [job for table in tables if table.kind == "grid" for job in jobs_for(table, world, scale, seeds)]
    if args.variants:  # training variants, or recipe names for recipe cells
        wanted = args.variants.split(",")
        unknown = sorted(set(wanted) - {job.cell.variant for job in jobs})
        if unknown:
            raise UserError(f"--variants: {', '.join(unknown)} not in the grid of {', '.join(args.tables)}")
        jobs = [job for job in jobs if job.cell.variant in wanted]
    if jobs:  # one evaluator per world and scale: a world that is not built says so before anything is written
        runner.evaluator(jobs[0])
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
        _print_plan(jobs, scale, runner)
        _print_teacher_plan(jobs, runner)
        _print_recipe_plans(tables, jobs, runner, world, scale)
        return
    if args.report_only:  # the tables from the records the results folder holds; nothing is computed
        jobs = []
    jobs = _runnable(jobs, runner)
    _writable(results_dir)
    if jobs:
        if scale.name != "full":
            print(f"scale: {scale.name} (a smaller configuration than the committed results; "
                  f"see harness/scales.py)", file=sys.stderr)
        runner.run(jobs)
    _writable(out_dir)
    for table in tables:
        print(write_cost_report(table, results_dir, out_dir) if table.kind == "cost"
              else write_grid_report(table, results_dir, out_dir, runner))
        print(f"wrote {out_dir / table.id}.*")


def _print_plan(jobs: list[Job], scale, runner: Runner) -> None:
    """The trained cells by training run, each with what running it would do (runner.status)."""
    jobs = [job for job in jobs if job.cell.trained]
    if not jobs:
        return
    runs, states = {}, Counter()
    for job in jobs:
        config = job.train_config(runner.results_dir)
        state = runner.status(job)
        states[state.split(" of ")[0]] += 1
        runs.setdefault(job.run_dir(runner.results_dir), (config, []))[1].append(
            f"{job.cell.key}-seed{job.seed} [{job.table.id}: {state}]")
    counts = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    print(f"scale {scale.name}: {len(jobs)} cells from {len(runs)} training runs ({counts})")
    for run_dir, (config, cells) in runs.items():
        m = config.method
        print(f"  {run_dir}: {config.iterations} iterations, batch {m.batch_size}, steps {list(m.steps)}, "
              f"loss {m.loss}, solver {m.solver}, importance {m.importance_weights}, match {m.match}, "
              f"step conditioning {m.step_conditioning and m.unify}\n      cells: {', '.join(cells)}")


def _print_teacher_plan(jobs: list[Job], runner: Runner) -> None:
    """The teacher cells (Table 4): how each is sampled and what running it would do."""
    jobs = [job for job in jobs if job.cell.kind == "teacher"]
    if not jobs:
        return
    evaluator = runner.evaluator(jobs[0])
    print(f"{_count(len(jobs), 'teacher cell')} (the world's teacher, nothing trained; one result each at seed "
          f"{RECIPE_SEED}, {RECIPE_SEED_MEANING}):")
    for job in jobs:
        steps, guidance = job.cell.steps, evaluator.guidance
        nfe = steps * (2 if guidance != 1 else 1)
        role = "; the fd_teacher reference" if steps == evaluator.reference_steps else ""
        print(f"  {job.cell.key}-seed{job.seed} [{job.table.id}: {runner.status(job)}]: {steps} {job.cell.solver.upper()} "
              f"steps, CFG {guidance:g} ({nfe} NFE){role}")


def _print_recipe_plans(tables: list[Table], jobs: list[Job], runner: Runner, world: str, scale) -> None:
    """Per table with recipe cells: every cell (row, backbone, steps, recipe, NFE, status and the
    files it still needs), then the rows that need training first."""
    for table in tables:
        if table.kind != "grid" or not table.has_recipes:
            continue
        mine = {job.cell: job for job in jobs if job.table is table and not job.cell.trained}
        rows = [row for row in table.rows if row.cell in mine]
        evaluator = runner.evaluator(mine[rows[0].cell]) if rows else None
        how = f"  {evaluator.metrics_note}\n  {evaluator.sampling_note}; " if evaluator else "  "
        print(f"{table.id} on {world}, scale {scale.name}: {_count(len(rows), 'recipe cell')}, "
              f"{_needing(len(table.pending()))}\n{how}"
              f"one result per cell, seed {RECIPE_SEED} ({RECIPE_SEED_MEANING})\n"
              f"  weights: {_where(runner.weights_root)}")
        for line in evaluator.missing() if evaluator else []:
            print(f"  missing for the evaluation: {line}")
        lines = [["row", "backbone", "steps", "recipe", "NFE", "status"]]
        lines += [_recipe_line(row, mine[row.cell], runner) for row in rows]
        _print_columns(lines)
        if table.pending():
            print("  not runnable yet (this paper's own models; each needs a real-size training run):")
            _print_columns([[row.label, report.backbone_label(row), str(row.paper_steps), "needs " + row.needs]
                            for row in table.pending()], indent="    ")


def _recipe_line(row, job: Job, runner: Runner) -> list[str]:
    recipe = job.cell.sampler_recipe
    state = runner.status(job)
    missing = _missing(job, runner, state)
    if missing:
        state = "missing:" + "".join(f"\n      {what}" for what in missing)
    elif state in ("to compute", "stale"):
        state = "ready (weights present)" + ("; its result is stale" if state == "stale" else "")
    return [row.label, report.backbone_label(row), str(recipe.steps), recipe.name, str(recipe.nfe), state]


def _print_columns(lines: list[list[str]], indent: str = "  ") -> None:
    """Left-aligned columns; a last cell with line breaks continues below its line."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]) - 1)]
    for line in lines:
        print(indent + "  ".join(cell.ljust(width) for cell, width in zip(line, widths)) + "  " + line[-1])


def _table4_real(tables: list[Table], args) -> None:
    """Table 4 at real size (harness/table4_real/): CogVideoX-2B, the released TDM LoRA and this
    project's student on VBench's prompts, scored by VBench in its own environment. Its videos and
    per-cell records go to --out (default runs/table4-real); the records are also copied to
    <results-dir>/table4/real/."""
    from . import table4_real

    if len(tables) > 1:
        raise UserError("table4 --world real runs alone: its cells are videos scored by VBench, not a grid")
    config = replace(table4_real.config_from_args(args), results_dir=Path(args.results_dir) / "table4" / "real")
    if args.dry_run:
        print(table4_real.format_plan(table4_real.plan(config)))
        return
    device = check_device(args.device)
    records = table4_real.run(config, device, force=args.force, show_progress=not args.no_progress)
    print(table4_real.summary(records))


def default_world(tables: list[Table]) -> str:
    """tiny-sd15 where every table runs on it (and for the tables that run nowhere yet, which then
    say so); else the first table's first world that every table runs on (Table 4: tiny-cogvideox)."""
    runnable = [table for table in tables if table.worlds]
    if not runnable or all("tiny-sd15" in table.worlds for table in runnable):
        return "tiny-sd15"
    shared = [w for w in runnable[0].worlds if all(w in table.worlds for table in runnable)]
    return shared[0] if shared else "tiny-sd15"


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m harness.reproduce", description=__doc__.split("\n\n")[0])
    parser.add_argument("tables", nargs="+", metavar="TABLE", help="list, or one or more of table1 ... table8")
    parser.add_argument("--world", help="tiny-sd15 (the default where a table runs on it), gmm, tiny-cogvideox (Table 4, "
                                         "its default), or real (Tables 1-2 with the paper's metrics; --weights-root)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--scale", default="auto", choices=("auto", *SCALES),
                        help="auto: full on cuda, reduced on cpu")
    parser.add_argument("--seeds", help="training seeds, e.g. 0,1,2 (default: the scale's)")
    parser.add_argument("--variants", help="only the cells of these training variants or recipes, e.g. unify,4step "
                                           "or tcd-sd15,tcd-sd15@realistic-vision")
    parser.add_argument("--results-dir", default=str(DEFAULT_RESULTS))
    parser.add_argument("--weights-root", metavar="DIR",
                        help="recipe cells' weights, laid out DIR/<owner>/<name>/<file> (default: the Hugging Face "
                             "cache); cells whose files are missing are skipped and listed")
    parser.add_argument("--vbench-root", metavar="DIR",
                        help="table4 --world real: a checkout of VBench (its prompt lists, the augmented ones too)")
    parser.add_argument("--vbench-env", metavar="DIR",
                        help="table4 --world real: VBench's own environment (scripts/vbench_env.sh; default .vbench-env)")
    parser.add_argument("--force", action="store_true", help="recompute finished cells and retrain their runs")
    parser.add_argument("--dry-run", action="store_true", help="print the cells and training runs, then exit")
    parser.add_argument("--report-only", action="store_true",
                        help="only write the tables from the records in --results-dir (records made under another "
                             "configuration than this checkout's are marked stale); compute nothing")
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
