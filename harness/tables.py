"""The paper's eight tables as declarative grids: which cells, which metrics, which published numbers.

A *cell* is one evaluated configuration: a training variant (a key of
`methods.tdm.presets.VARIANTS`), the step count it is sampled with, and the test solver.
A *row* of the paper's layout points at one cell and at the published numbers it sits
beside. Several rows may share a cell (Table 5's "TDM-4Step" and "w/o unify training" at 4
steps are the same model), and several tables may share a training run.

    from harness.tables import TABLES, get_table
    get_table("table5").cells()   # the distinct cells to run
"""
from __future__ import annotations

import csv
import difflib
from dataclasses import dataclass
from pathlib import Path

from methods.common.errors import UserError

PUBLISHED = Path(__file__).resolve().parent.parent / "paper_tables" / "published"


@dataclass(frozen=True)
class Cell:
    variant: str          # training variant: a key of methods.tdm.presets.VARIANTS
    steps: int            # sampling steps at test time
    solver: str = "dpmpp"  # test solver; the paper's default for its TDM numbers (Table 6)

    @property
    def key(self) -> str:
        """File stem of the cell's result: <variant>-<steps>step-<solver>."""
        return f"{self.variant}-{self.steps}step-{self.solver}"


@dataclass(frozen=True)
class Row:
    label: str            # the paper's row label, as printed
    cell: Cell
    method: str           # how the published CSV names the row: method and variant columns
    variant: str = ""


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

    def cells(self) -> list[Cell]:
        """The distinct cells of the grid, in row order."""
        seen: dict[Cell, None] = {}
        for row in self.rows:
            seen.setdefault(row.cell)
        return list(seen)

    def published(self) -> list[dict]:
        """The paper's numbers for this table (paper_tables/published/<id>.csv)."""
        with open(PUBLISHED / f"{self.id}.csv", newline="") as f:
            return list(csv.DictReader(f))

    def published_value(self, row: Row, metric: str = "hps") -> float | None:
        for rec in self.published():
            if (rec["method"], rec["variant"], rec["metric"]) == (row.method, row.variant, metric) \
                    and rec["steps"] == str(row.cell.steps) and rec["value"]:
                return float(rec["value"])
        return None


SMALL_WORLDS = ("tiny-sd15", "gmm")


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


TABLES: dict[str, Table] = {t.id: t for t in [
    Table("table1", "SD-v1.5 / SDXL / PixArt-alpha: HPSv2.1, aesthetic, CLIP score against the baselines",
          kind="published", needs="real teacher weights, the baselines' weights, HPSv2.1 and a GPU"),
    Table("table2", "HPSv2.1 of distilled community models (Realistic, DreamShaper, ...)",
          kind="published", needs="the community checkpoints, HPSv2.1 and a GPU"),
    Table("table3", "Training cost", kind="cost", cost_of=("table5", "table6", "table7", "table8"),
          worlds=SMALL_WORLDS, needs="real-size runs for the paper's rows (SDXL, PixArt-alpha)"),
    Table("table4", "CogVideoX-2B on VBench", kind="published",
          needs="CogVideoX-2B weights, a video trainer, VBench and a GPU"),
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
        close = difflib.get_close_matches(name, TABLES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UserError(f"unknown table {name!r}{hint} Known: {', '.join(TABLES)}")
    return TABLES[name]


def check_world(table: Table, world: str) -> None:
    if world not in SMALL_WORLDS:
        close = difflib.get_close_matches(world, SMALL_WORLDS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UserError(f"unknown world {world!r}{hint} Known worlds: {', '.join(SMALL_WORLDS)}")
    if world not in table.worlds:
        where = f"it runs on {', '.join(table.worlds)}" if table.worlds else f"it needs {table.needs}"
        raise UserError(f"{table.id} cannot run on world {world!r}: {where}")
