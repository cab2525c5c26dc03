"""Run a table's grid: for each cell and seed, train the variant, sample it, evaluate it, and
write `results/<table>/<world>/<cell>-seed<s>.json` atomically.

A recipe cell (a published checkpoint, Tables 1-2) is not trained: its sampler is the recipe's
(`baselines.load_sampler`, weights from `Runner.weights_root` or the Hugging Face cache). It has
no training seed, so it has one result, seed 0, which stands for the evaluation's own fixed
prompts and sampling seeds (RECIPE_SEED). Its fingerprint hashes the world, the scale, the
recipe as sampled and the evaluation config; its record carries `training: null`, the sampler's
`describe()` (with the sha256 of every attached file) and `resized_for_world`. The weights' hashes
are recorded, not fingerprinted (hashing gigabytes on every run and dry run would cost minutes):
after replacing a weights file, rerun with --force.

A teacher cell (Table 4's teacher rows) is the world's own teacher at a step count: nothing is
trained, one result at seed 0 as for a recipe cell; the world's evaluator samples it
(`teacher_sampler`) and says how (`teacher_facts`, fingerprinted beside the cell). A world whose
teacher may be rebuilt (tiny-cogvideox) fingerprints its files in the evaluation config and
stamps each training run with them (`runs/.../world.json`): a run made on another build is
trained afresh, not reused.

Caching and resuming:
- a finished cell (its JSON exists and its fingerprint matches) is not recomputed unless `force`;
- an evaluation another table already made with the same fingerprint is copied, not redone;
- training runs live in `<results>/runs/<world>/<variant>-seed<s>`, shared by all tables, and a
  half-trained run resumes from its latest checkpoint (methods/tdm/train.py);
- each training run is claimed with an OS file lock, so several runner processes can work on
  one grid (e.g. four on one GPU) without doing anything twice; a killed process's locks
  vanish with it;
- what a world's evaluation needs once (tiny-sd15: the real images' features and the teacher's
  reference features) lives in `<results>/runs/cache`, keyed by what fixes it, and is made on
  first use, so a grid whose cells are all finished makes none of it.

A cell's record splits its `eval_seconds` into parts (tiny-sd15: `sampler_load_seconds`,
`sampling_seconds`, `scoring_seconds`, and `judge_seconds` / `reference_seconds` with
`judge_from` / `reference_from`: "computed", "disk cache" or "memory").
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from methods.common.errors import UserError
from methods.common.provenance import provenance, write_json_atomic
from methods.tdm.presets import resolve

from .evaluation import EVALUATORS
from .scales import SCALES, Scale
from .tables import Cell, RecipeCell, Table, TeacherCell

RUNS = "runs"
POLL_SECONDS = 5.0
RECIPE_SEED = 0
RECIPE_SEED_MEANING = "no training seed: the evaluation's own fixed prompts and sampling seeds"


@dataclass(frozen=True, eq=False)
class Job:
    """One cell and training seed of a table in a world at a scale."""
    table: Table
    cell: Cell | RecipeCell | TeacherCell
    seed: int
    world: str
    scale: Scale
    settings: tuple[tuple[str, str], ...] = ()  # a sweep's key=value settings over the preset and scale

    def train_config(self, results_dir: Path):
        overrides = {**self.scale.train.get(self.world, {}), **dict(self.settings), "seed": self.seed,
                     "tracker": "none", "output_dir": str(self.run_dir(results_dir))}
        return resolve(f"{self.world}-{self.cell.variant}", overrides)

    @property
    def tag(self) -> str:
        """'' for a table's cell; '-key=value...' for a sweep's, so that its files are its own."""
        return _tag(self.settings)

    @property
    def run_tag(self) -> str:
        """The tag of the training run: without `iterations`, so that the budgets of a convergence
        curve share one run, each resuming from the previous budget's last checkpoint (a resumed
        run repeats the uninterrupted one; the learning-rate schedule must not depend on the budget)."""
        return _tag([(key, value) for key, value in self.settings if key != "iterations"])

    def run_dir(self, results_dir: Path) -> Path:
        return results_dir / RUNS / self.scale.folder(self.world) / f"{self.cell.variant}{self.run_tag}-seed{self.seed}"

    def result_path(self, results_dir: Path) -> Path:
        return (results_dir / self.table.id / self.scale.folder(self.world)
                / f"{self.cell.key}{self.tag}-seed{self.seed}.json")

    def lock_path(self, results_dir: Path) -> Path:
        """A trained cell locks its training run (shared by the cells sampled from it); a recipe or
        teacher cell locks itself."""
        what = {"trained": f"{self.cell.variant}{self.run_tag}-seed{self.seed}", "recipe": f"recipe-{self.cell.key}",
                "teacher": self.cell.key}[self.cell.kind]
        return results_dir / RUNS / "locks" / f"{self.scale.folder(self.world)}-{what}.lock"


def _tag(settings) -> str:
    return "".join(f"-{key}={value}" for key, value in settings)


@dataclass
class Runner:
    results_dir: Path
    device: str = "cpu"
    force: bool = False
    show_progress: bool = True
    weights_root: Path | None = None  # recipe cells' weights (baselines/weights.py); None: the Hugging Face cache
    _evaluators: dict = field(default_factory=dict)
    _retrained: set = field(default_factory=set)

    def run(self, jobs: list[Job]) -> list[dict]:
        """Finish every job, waiting for jobs whose training another process holds."""
        if not self.force:  # a corrupt result file stops the run now, not after hours of other cells
            for job in jobs:
                read_result(job.result_path(self.results_dir))
        done: dict[int, dict] = {}
        bar = tqdm(total=len(jobs), desc="cells", unit="cell", disable=not self.show_progress, dynamic_ncols=True)
        pending = list(range(len(jobs)))
        while pending:
            waiting = []
            for i in pending:
                job = jobs[i]
                record = self.run_job(job)
                if record is None:
                    waiting.append(i)
                    continue
                done[i] = record
                bar.update(1)
                bar.set_postfix_str(f"{job.cell.key} seed {job.seed}")
            if waiting and len(waiting) == len(pending):
                bar.set_postfix_str(f"waiting for {len(waiting)} cells trained by another process")
                time.sleep(POLL_SECONDS)
            pending = waiting
        bar.close()
        return [done[i] for i in range(len(jobs))]

    def run_job(self, job: Job) -> dict | None:
        """The cell's record; None when another process holds its training run."""
        path = job.result_path(self.results_dir)
        fingerprint = self.fingerprint(job)
        if not self.force:
            record = read_result(path)
            if record is not None and record.get("fingerprint") == fingerprint:
                return record
        with claim(job.lock_path(self.results_dir)) as mine:
            if not mine:
                return None
            record = None if self.force else self._same_evaluation_elsewhere(job, fingerprint)
            if record is None:
                record = self._compute(job, fingerprint)
            write_json_atomic(path, record)
            return record

    def fingerprint(self, job: Job) -> str:
        """Everything that fixes the cell's numbers: training config and cell, or the recipe as
        sampled; the evaluation config, with files named by their content rather than their place
        (a result is valid in any checkout). scripts/refingerprint_results.py moved the records
        made before that to this key."""
        evaluator = self.evaluator(job)
        return fingerprint_of(job, evaluator, evaluator.fingerprint_config())

    def status(self, job: Job) -> str:
        """What running the job would do: "finished", "copy of <other result>", "stale" (its file
        has another fingerprint) or "to compute". Reads files only."""
        fingerprint = self.fingerprint(job)
        record = read_result(job.result_path(self.results_dir))
        if record is not None and record.get("fingerprint") == fingerprint:
            return "finished"
        elsewhere = self._same_evaluation_elsewhere(job, fingerprint)
        if elsewhere is not None:
            return f"copy of {elsewhere['copied_from']}"
        return "stale" if record is not None else "to compute"

    def is_stale(self, table: Table, record: dict) -> bool:
        """Whether this checkout would make the record's cell under another fingerprint (the world's
        teacher, the preset, the scale or the evaluation changed since it was made, or the table no
        longer has the cell): a table shows it marked, never as current."""
        cell = next((cell for cell in table.cells() if cell.key == record["cell_key"]), None)
        scale = SCALES.get(record["scale"])
        return cell is None or scale is None or record.get("fingerprint") != self.fingerprint(
            Job(table, cell, record["seed"], record["world"], scale))

    def evaluator(self, job: Job):
        key = (job.world, job.scale.name)
        if key not in self._evaluators:
            self._evaluators[key] = EVALUATORS[job.world](job.scale, self.device, self.results_dir / RUNS / "cache",
                                                          weights_root=self.weights_root)
        return self._evaluators[key]

    def _same_evaluation_elsewhere(self, job: Job, fingerprint: str) -> dict | None:
        """The same cell evaluated for another table (e.g. TDM-4step in Tables 5-8): reuse it."""
        for other in sorted(self.results_dir.glob(f"*/{job.scale.folder(job.world)}/{job.cell.key}-seed{job.seed}.json")):
            record = read_result(other, strict=False)
            if record and record.get("fingerprint") == fingerprint:
                return {**record, "table": job.table.id, "copied_from": str(other.relative_to(self.results_dir))}
        return None

    def _compute(self, job: Job, fingerprint: str) -> dict:
        started = time.time()
        training = self._train(job) if job.cell.trained else None
        evaluator = self.evaluator(job)
        t0 = time.time()
        evaluator.take_parts()  # start this cell's split of eval_seconds afresh
        sampler = self._sampler(job, evaluator)
        metrics = evaluator.score(sampler)
        return {
            "table": job.table.id, "world": job.world, "scale": job.scale.name, "cell": asdict(job.cell),
            "cell_key": job.cell.key, "seed": job.seed, "fingerprint": fingerprint,
            "metrics": metrics, "metric_directions": evaluator.metrics, "n_samples": evaluator.n_samples,
            "sampler": sampler.describe(), "eval_config": asdict(evaluator.config), **_recipe_facts(job, sampler, evaluator),
            # eval_seconds includes the world's one-off parts (judge, teacher reference) when this
            # cell had to make them; the parts say which, e.g. reference_seconds and reference_from.
            "eval_seconds": round(time.time() - t0, 1), **evaluator.take_parts(), "training": training,
            "cell_wall_seconds": round(time.time() - started, 1), **provenance(self.device),
        }

    def _sampler(self, job: Job, evaluator):
        if job.cell.trained:
            return evaluator.sampler(job.run_dir(self.results_dir), job.cell)
        if job.cell.kind == "teacher":
            return evaluator.teacher_sampler(job.cell)
        return evaluator.recipe_sampler(job.cell.sampler_recipe, self.weights_root)

    def _train(self, job: Job) -> dict:
        """Train the job's variant unless a finished run with the same config exists; its record."""
        from methods.tdm.train import train

        config = job.train_config(self.results_dir)
        run_dir = Path(config.output_dir)
        if self.force and run_dir not in self._retrained:
            shutil.rmtree(run_dir, ignore_errors=True)
        self._retrained.add(run_dir)
        stamp = _stamp(self.evaluator(job), run_dir)
        summary = _finished_run(run_dir, config)
        if summary is None:
            summary = train(config, self.device, show_progress=self.show_progress)
        # wall_seconds covers the last invocation only: after a resume, from `resumed_from` on.
        keep = ("iterations", "resumed_from", "batch_size", "seconds_per_iteration", "samples_per_second",
                "peak_memory_gib", "wall_seconds", "flops_per_iteration", "flops_counted_at_K", "mixed_precision", "device",
                "num_processes")
        return {"config": asdict(config), **{k: summary.get(k) for k in keep},
                "final_losses": _final_losses(run_dir), **({"world_stamp": stamp} if stamp else {})}


# TrainConfig fields (dotted: "method.x" is TDMConfig's) added after results were committed:
# fingerprinted only when set away from their default, at which they compute what the code did
# before they existed, so that adding one does not make every committed result stale.
LATER_FIELDS = {"compile_scope": "networks", "cudnn_benchmark": False, "method.timesteps": (), "method.segments": "iid",
                "algorithm": "tdm"}


def _fingerprinted_config(config) -> dict:
    out = asdict(config)
    for path, default in LATER_FIELDS.items():
        *parents, name = path.split(".")
        owner = out
        for parent in parents:
            owner = owner[parent]
        if name in owner and owner[name] == default:
            del owner[name]
    return out


def fingerprint_of(job: Job, evaluator, eval_config: dict) -> str:
    if job.cell.trained:
        what = [_fingerprinted_config(job.train_config(Path("<results>"))), asdict(job.cell)]
    elif job.cell.kind == "teacher":
        what = [{"teacher": asdict(job.cell)}, evaluator.teacher_facts(job.cell)]
    else:
        what = [evaluator.recipe_for_world(job.cell.sampler_recipe).describe()]
    blob = json.dumps([job.world, job.scale.name, *what, eval_config], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _recipe_facts(job: Job, sampler, evaluator) -> dict:
    """What a recipe or teacher cell's record adds: how it was sampled beside the recipe, and what
    its numbers are (not) worth."""
    if job.cell.trained:
        return {}
    if job.cell.kind == "teacher":
        return {"seed_meaning": RECIPE_SEED_MEANING, "metrics_note": evaluator.metrics_note,
                "sampling_note": evaluator.sampling_note}
    return {"recipe": job.cell.recipe, "seed_meaning": RECIPE_SEED_MEANING,
            "resized_for_world": sampler.recipe.height,
            "recipe_size": [job.cell.sampler_recipe.height, job.cell.sampler_recipe.width],
            "measured_nfe": sampler.last_nfe,
            "metrics_note": evaluator.metrics_note, "sampling_note": evaluator.sampling_note}


WORLD_STAMP = "world.json"


def _stamp(evaluator, run_dir: Path) -> dict | None:
    """The world's stamp of what it trains on (None for worlds that ship fixed: tiny-sd15, gmm). A
    run folder made on another build of the world is removed, so that it is trained afresh rather
    than resumed or reused; the stamp is then written beside the run."""
    stamp = evaluator.training_stamp() if hasattr(evaluator, "training_stamp") else None
    if stamp is None:
        return None
    path = run_dir / WORLD_STAMP
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        found = None
    if found != stamp:
        shutil.rmtree(run_dir, ignore_errors=True)
        write_json_atomic(path, stamp)
    return stamp


def _finished_run(run_dir: Path, config) -> dict | None:
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
        same = json.loads((run_dir / "config.json").read_text()) == json.loads(json.dumps(asdict(config)))
    except (OSError, ValueError):
        return None
    return summary if same and summary.get("iterations") == config.iterations else None


def _final_losses(run_dir: Path) -> dict:
    path = run_dir / "losses.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    return json.loads(lines[-1]) if lines else {}


def read_result(path: Path, strict: bool = True) -> dict | None:
    """A cell's record, or None if absent; a corrupt file is a user error (or None when not strict)."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        if not strict:
            return None
        raise UserError(f"results file {path} is not valid JSON; delete it or rerun with --force") from None


@contextlib.contextmanager
def claim(lock_path: Path):
    """An exclusive, non-blocking OS lock: yields True if this process holds it. The OS drops it
    when the process dies, so a killed run never leaves a stale claim."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
