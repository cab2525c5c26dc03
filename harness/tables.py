"""The paper's eight tables as declarative grids: which cells, which metrics, which published numbers.

A *cell* is one evaluated configuration, of one of three kinds (`kind`):
- `Cell`: a training variant (a key of `methods.tdm.presets.VARIANTS`, or of `METHOD_VARIANTS`
  for another method's, DMD2's), the step count it is sampled with, and the test solver; the
  runner trains it first;
- `RecipeCell`: a published checkpoint, named by its sampler recipe (baselines/recipes.py);
  nothing is trained, the recipe is sampled as it stands;
- `TeacherCell`: the world's own teacher at a step count (Table 4's teacher rows); nothing is
  trained, and the world's evaluator says how it is sampled (solver, CFG).
A *row* of the paper's layout points at one cell and at the published numbers it sits
beside. Several rows may share a cell (Table 5's "TDM-4Step" and "w/o unify training" at 4
steps are the same model), and several tables may share a training run. A row without a cell is
one of this paper's own models that needs a real-size training run: listed, never dropped.

Tables 1 and 2 are built from their published CSVs: each published row gets the recipe whose
paper label, backbone and step count match it (`_recipe_row`), or else is such a pending row.

    from harness.tables import TABLES, get_table
    get_table("table5").cells()   # the distinct cells to run
    get_table("table1").pending() # the rows that need training first
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import ClassVar

from baselines import RECIPES, get_recipe
from baselines.recipe import SamplerRecipe
from baselines.recipes import BASES, table2_recipes
from methods.common.errors import UserError, did_you_mean

PUBLISHED = Path(__file__).resolve().parent.parent / "paper_tables" / "published"


@dataclass(frozen=True)
class Cell:
    """A variant trained here. Its fields are hashed into every result's fingerprint: adding one
    would orphan the committed results, so the recipe kind is a class of its own."""
    variant: str          # training variant: a key of methods.tdm.presets.VARIANTS (or METHOD_VARIANTS)
    steps: int            # sampling steps at test time
    solver: str = "dpmpp"  # test solver; the paper's default for its TDM numbers (Table 6); DMD2's "lcm"
    trained: ClassVar[bool] = True
    kind: ClassVar[str] = "trained"

    @property
    def key(self) -> str:
        """File stem of the cell's result: <variant>-<steps>step-<solver>."""
        return f"{self.variant}-{self.steps}step-{self.solver}"


@dataclass(frozen=True)
class RecipeCell:
    """A published checkpoint, sampled as its recipe says; nothing is trained."""
    recipe: str           # a name get_recipe accepts: "tcd-sd15", "tcd-sd15@realistic-vision"
    trained: ClassVar[bool] = False
    kind: ClassVar[str] = "recipe"

    @property
    def key(self) -> str:
        """File stem of the cell's result: the recipe's name."""
        return self.recipe

    @property
    def variant(self) -> str:
        """What --variants selects and the CSV's variant column shows: the recipe's name."""
        return self.recipe

    @property
    def sampler_recipe(self) -> SamplerRecipe:
        return get_recipe(self.recipe)

    @property
    def steps(self) -> int:
        return self.sampler_recipe.steps

    @property
    def solver(self) -> str:
        return self.sampler_recipe.scheduler


@dataclass(frozen=True)
class TeacherCell:
    """The world's teacher sampled with `steps` steps of `solver`, with the CFG scale the world's
    evaluator samples its teacher with; nothing is trained, one result (seed RECIPE_SEED)."""
    steps: int
    solver: str = "ddim"
    trained: ClassVar[bool] = False
    kind: ClassVar[str] = "teacher"
    variant: ClassVar[str] = "teacher"  # what --variants selects: every teacher cell of the grid

    @property
    def key(self) -> str:
        """File stem of the cell's result: teacher-<steps>step-<solver>."""
        return f"teacher-{self.steps}step-{self.solver}"


@dataclass(frozen=True)
class Row:
    label: str            # the paper's row label, as printed
    cell: Cell | RecipeCell | TeacherCell | None  # None: this paper's own model, not runnable yet (see `needs`)
    method: str           # how the published CSV names the row: method and variant columns
    variant: str = ""
    backbone: str = ""    # the published CSV's backbone, where a table spans several (Tables 1-2)
    steps: int | None = None  # the published step count of a row without a cell
    needs: str = ""       # what a row without a cell needs before it can run
    printed_steps: str | None = None  # the published CSV's steps where they differ from the cell's:
                                      # "" for Table 4's teacher, whose step count the paper does not print

    @property
    def paper_steps(self) -> int:
        return self.cell.steps if self.cell is not None else self.steps


@dataclass(frozen=True)
class Table:
    id: str
    title: str
    rows: tuple[Row, ...] = ()
    worlds: tuple[str, ...] = ()       # small worlds it runs on now
    needs: str = ""                    # what it needs beyond the small worlds
    kind: str = "grid"                 # "grid": cells to train and evaluate; "cost": built from other tables' runs;
                                       # "published": only the paper's numbers for now
    cost_of: tuple[str, ...] = ()      # for kind "cost": the tables whose runs it reports
    plot: str = "bars"                 # "steps": metric against steps per variant (Table 5); "bars"
    paper_metric: str = "hps"          # the published metric printed beside ours
    paper_label: str = "HPSv2.1 on SD-v1.5"
    paper_column: str = "HPS"          # the published metric's short name in the reports' headers
    paper_plot_title: str = "HPS on SD-v1.5"  # ... and in the plot's panel of the paper's numbers
    across_steps: bool = False         # ranking agreement over pairs of rows at any step counts (Table 4
                                       # compares TDM at 4 steps with its teacher at 50), not only at equal ones

    def cells(self) -> list[Cell | RecipeCell | TeacherCell]:
        """The distinct cells of the grid, in row order."""
        seen: dict = {}
        for row in self.rows:
            if row.cell is not None:
                seen.setdefault(row.cell)
        return list(seen)

    def pending(self) -> list[Row]:
        """The rows that cannot run yet: this paper's own models, which need training first."""
        return [row for row in self.rows if row.cell is None]

    @property
    def has_recipes(self) -> bool:
        return any(cell.kind == "recipe" for cell in self.cells())

    def published(self) -> list[dict]:
        """The paper's numbers for this table (paper_tables/published/<id>.csv)."""
        return _published(self.id)

    def published_record(self, row: Row, metric: str | None = None) -> dict:
        """The published CSV's line for the row and metric ({} if none); the backbone counts only
        where the row names one (Tables 5-8 are all SD-v1.5)."""
        metric = metric or self.paper_metric
        steps = str(row.paper_steps) if row.printed_steps is None else row.printed_steps
        for rec in self.published():
            if (rec["method"], rec["variant"], rec["metric"], rec["steps"]) == (row.method, row.variant, metric, steps) \
                    and (not row.backbone or rec["backbone"] == row.backbone):
                return rec
        return {}

    def published_value(self, row: Row, metric: str | None = None) -> float | None:
        value = self.published_record(row, metric).get("value")
        return float(value) if value else None


@cache
def _published(table_id: str) -> list[dict]:
    with open(PUBLISHED / f"{table_id}.csv", newline="") as f:
        return list(csv.DictReader(f))


SMALL_WORLDS = ("tiny-sd15", "gmm")
VIDEO_WORLDS = ("tiny-cogvideox",)  # the small text-to-video world (Table 4)
REAL = "real"  # real checkpoints and the paper's metrics (harness/real_scale.py)
RECIPE_WORLDS = ("tiny-sd15", REAL)


def _table5() -> tuple[Row, ...]:
    rows = []
    for variant, method, label, paper_variant in [
        ("unify", "TDM-unify", "TDM-unify", ""),
        ("unify-no-step-cond", "TDM-unify", "w/o Conditioned on Sampling Steps", "w/o Conditioned on Sampling Steps"),
        ("unify-no-surrogate", "TDM-unify", "w/o Surrogate Training Objective", "w/o Surrogate Training Objective"),
        ("4step", "TDM-unify", "w/o unify training (TDM-4step)", "w/o unify training (TDM-4step)"),
    ]:
        rows += [Row(label, Cell(variant, steps), method, paper_variant) for steps in (1, 2, 4)]
    rows += [Row("TDM-4Step", Cell("4step", 4), "TDM-4Step"),
             Row("w/o Importance Sampling", Cell("4step-no-is", 4), "TDM-4Step", "w/o Importance Sampling"),
             # Not in the paper: the official demo script's recipe (presets.OFFICIAL_SCRIPT), beside the paper's.
             Row("official script's recipe (extra)", Cell("official-script", 4), "project")]
    return tuple(rows)


def _table6() -> tuple[Row, ...]:
    names = {"ddim": "DDIM", "dpmpp": "DPM-Solver"}
    return tuple(
        Row(f"train {names[train]} test {names[test]}", Cell("4step" if train == "ddim" else "4step-dpmpp", 4, test),
            "TDM", f"train {names[train]} test {names[test]}")
        for train in ("ddim", "dpmpp") for test in ("ddim", "dpmpp"))


# Table 4: the teacher at its many-step setting (the paper's CogVideoX-2B row: CogVideoXPipeline's default
# 50 steps with CFG; the paper prints no step count), TDM at 4 steps, and, not in the paper, the teacher at
# the student's 4 steps: the few-step baseline a distilled student has to beat. fd_teacher is measured
# against the 50-step teacher (harness.evaluation.TinyCogVideoXEvaluator), whose own row has none.
TEACHER_STEPS = 50


def _table4() -> tuple[Row, ...]:
    return (Row(f"CogVideoX-2B (the teacher, {TEACHER_STEPS} steps with CFG)", TeacherCell(TEACHER_STEPS),
                "CogVideoX-2B", printed_steps=""),
            Row("TDM (4 NFE)", Cell("4step", 4, "ddim"), "TDM"),
            Row("teacher at 4 steps with CFG (extra: the few-step baseline)", TeacherCell(4), "project"))


# Tables 1-2: which published rows are recipes, and what the others need.
PIPELINE_OF = {"SD-v1.5": "sd15", "SDXL": "sdxl", "PixArt-alpha": "pixart"}
SPELLING = {"SDXL-Lighting": "SDXL-Lightning"}  # the published CSV's spelling -> the recipe's label
TABLE2_BASES = {"Realistic": "realistic-vision", "Dreamshaper": "dreamshaper-7"}  # variant -> recipes.BASES
# This paper's own models, by (method, backbone, variant): no public checkpoint, so each needs a
# real-size training run before it can be a cell.
NEEDS_TRAINING = {
    ("Base Model + Fine-tuning", "SD-v1.5", ""): "SD-v1.5 fine-tuned on LAION-AeS-6.5+ (no fine-tuning trainer yet)",
    ("TDM-unify-GAN", "SD-v1.5", ""): "a real-size TDM-unify run on SD-v1.5 with a GAN loss (no GAN loss yet)",
    ("TDM-unify-SFT", "SD-v1.5", ""): "a real-size TDM-unify run on SD-v1.5 fine-tuned on LAION-AeS-6.5+",
    ("TDM", "SDXL", ""): "a real-size TDM run on SDXL",
    ("TDM-1024", "PixArt-alpha", ""): "a real-size TDM run on PixArt-alpha at 1024 px",
    ("TDM", "SD-v1.5", "Realistic"): "a real-size TDM-LoRA run on SD-v1.5 (the released LoRA is Dreamshaper-7's)",
}


def _published_rows(table_id: str) -> list[dict]:
    """The table's rows as the published CSV orders them: one per method, backbone, variant, steps."""
    seen: dict[tuple, dict] = {}
    for rec in _published(table_id):
        seen.setdefault((rec["method"], rec["backbone"], rec["variant"], rec["steps"]), rec)
    return list(seen.values())


def _candidates(table_id: str, variant: str) -> list[SamplerRecipe]:
    """The recipes a row may point at: Table 1's own, or Table 2's on the row's customised base
    (its LoRAs, the teacher, and the released TDM LoRA, whose base is Dreamshaper-7)."""
    if table_id == "table1":
        return list(RECIPES.values())
    base = TABLE2_BASES[variant]
    teacher = get_recipe(f"sd15-teacher-25@{base}")
    return [r for r in [*table2_recipes(), teacher, RECIPES["tdm-dreamshaper-lora"]] if r.base == BASES[base]]


def _recipe_row(table_id: str, rec: dict) -> Row:
    """A published row and its recipe: the first (the main release, not its LoRA twin) whose paper
    label, pipeline and step count match; Table 2's base rows ("Realistic" at 25 steps) are the
    teacher on that base."""
    method, variant, steps = rec["method"], rec["variant"], int(rec["steps"])
    label = "Base Model" if method == variant else SPELLING.get(method, method)
    for recipe in _candidates(table_id, variant):
        if (recipe.method, recipe.pipeline, recipe.steps) == (label, PIPELINE_OF[rec["backbone"]], steps):
            return Row(method, RecipeCell(recipe.name), method, variant, rec["backbone"])
    needs = NEEDS_TRAINING.get((method, rec["backbone"], variant), "a recipe in baselines/recipes.py")
    return Row(method, None, method, variant, rec["backbone"], steps, needs)


def _recipe_table(table_id: str) -> tuple[Row, ...]:
    return tuple(_recipe_row(table_id, rec) for rec in _published_rows(table_id))


RECIPE_PAPER_LABEL = "HPSv2.1 (average of the four categories) on each row's backbone"
RECIPE_NEEDS = "real metrics (HPSv2.1, aesthetic, CLIP score), the checkpoints' weights, real-size training " \
               "runs for this paper's rows, and a GPU"

TABLES: dict[str, Table] = {t.id: t for t in [
    # Tables 1-2: on "real" with the paper's metrics and the checkpoints' weights; on tiny-sd15 with
    # the world's metrics, which tests the plumbing and says nothing about the checkpoints.
    Table("table1", "SD-v1.5 / SDXL / PixArt-alpha: HPSv2.1, aesthetic, CLIP score against the baselines",
          _recipe_table("table1"), RECIPE_WORLDS, needs=RECIPE_NEEDS, paper_metric="hps_average",
          paper_label=RECIPE_PAPER_LABEL),
    Table("table2", "HPSv2.1 of distilled community models (Realistic, DreamShaper, ...)",
          _recipe_table("table2"), RECIPE_WORLDS, needs=RECIPE_NEEDS, paper_metric="hps_average",
          paper_label=RECIPE_PAPER_LABEL),
    Table("table3", "Training cost", kind="cost", cost_of=("table5", "table6", "table7", "table8"),
          worlds=SMALL_WORLDS, needs="real-size runs for the paper's rows (SDXL, PixArt-alpha)"),
    # Table 4 on the small video world, scored with its own metrics (harness/metrics/video_world.py), never
    # called VBench; the paper's VBench total is printed beside them.
    Table("table4", "Text-to-video: the teacher at 50 steps against TDM at 4 (paper: CogVideoX-2B on VBench)",
          _table4(), (*VIDEO_WORLDS, REAL), needs="CogVideoX-2B weights, VBench and a GPU for the paper's own numbers",
          paper_metric="vbench_total", paper_label="VBench total score, CogVideoX-2B (not our metrics: the world "
          "scores clips with its own classifier)", paper_column="VBench total",
          paper_plot_title="VBench total, CogVideoX-2B", across_steps=True),
    Table("table5", "TDM-unify and its ablations at 1, 2 and 4 steps", _table5(), SMALL_WORLDS,
          needs="SD-v1.5 weights and HPSv2.1 for the paper's own numbers", plot="steps"),
    Table("table6", "Train with DDIM or DPM-Solver x test with DDIM or DPM-Solver (4 steps)", _table6(),
          SMALL_WORLDS, needs="SD-v1.5 weights and HPSv2.1 for the paper's own numbers"),
    Table("table7", "Matching noisy trajectory samples versus clean samples (4 steps)",
          (Row("TDM (Matching noisy samples x_{t_i})", Cell("4step", 4), "TDM", "noisy"),
           Row("Matching clean samples x^_{t_i}", Cell("4step-clean", 4), "TDM", "clean")),
          SMALL_WORLDS, needs="SD-v1.5 weights and HPSv2.1 for the paper's own numbers"),
    Table("table8", "Reverse KL versus Fisher divergence (4 steps)",
          (Row("reverse KL", Cell("4step", 4), "TDM", "reverse KL"),
           Row("Fisher divergence", Cell("4step-fisher", 4), "TDM", "Fisher")),
          SMALL_WORLDS, needs="SD-v1.5 weights and HPSv2.1 for the paper's own numbers"),
]}


def get_table(name: str) -> Table:
    if name not in TABLES:
        raise UserError(f"unknown table {name!r}{did_you_mean(name, TABLES)} Known: {', '.join(TABLES)}")
    return TABLES[name]


def check_world(table: Table, world: str) -> None:
    known = (*SMALL_WORLDS, *VIDEO_WORLDS, REAL)
    if world not in known:
        raise UserError(f"unknown world {world!r}{did_you_mean(world, known)} Known worlds: {', '.join(known)}")
    if world not in table.worlds:
        where = f"it runs on {', '.join(table.worlds)}" if table.worlds else f"it needs {table.needs}"
        raise UserError(f"{table.id} cannot run on world {world!r}: {where}")
