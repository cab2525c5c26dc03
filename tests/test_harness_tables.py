"""The table registry: every grid row names a trainable variant, a recipe or what it still needs,
and finds its published number."""
import pytest

from baselines import get_recipe
from harness.report import long_rows, ranking_agreement
from harness.tables import TABLES, check_world, get_table
from methods.common.errors import UserError
from methods.tdm.presets import VARIANTS


def test_all_eight_tables_are_registered():
    assert list(TABLES) == [f"table{i}" for i in range(1, 9)]


@pytest.mark.parametrize("table", [t for t in TABLES.values() if t.kind == "grid"], ids=lambda t: t.id)
def test_every_grid_row_has_a_variant_and_a_published_value(table):
    for row in table.rows:
        if row.cell is None:  # one of this paper's own models: says what it needs
            assert row.needs and row.paper_steps, row.label
        elif row.cell.trained:
            assert row.cell.variant in VARIANTS
        elif row.cell.kind == "teacher":  # the world's own teacher at a step count (Table 4)
            assert row.cell.steps >= 1 and row.cell.solver == "ddim"
        else:
            assert get_recipe(row.cell.recipe).steps == row.paper_steps, row.label
        if row.method != "project":  # the project's extra rows, which the paper does not have
            # Tables 1-2 print some values the OCR could not read: the row is there, its value may be empty.
            assert table.published_record(row), row.label
            if not table.has_recipes:
                assert table.published_value(row) is not None, row.label


def test_table5_is_the_papers_grid():
    table = get_table("table5")
    # TDM-4Step at 4 steps appears twice; the last row is the official script's recipe, not the paper's
    assert len(table.rows) == 15 and len(table.cells()) == 14
    assert table.rows[-1].cell.variant == "official-script" and table.published_value(table.rows[-1]) is None
    values = {(r.label, r.cell.steps): table.published_value(r) for r in table.rows}
    assert values[("TDM-unify", 1)] == 28.90
    assert values[("w/o unify training (TDM-4step)", 1)] == 20.81
    assert values[("w/o Importance Sampling", 4)] == 29.27


def test_unknown_names_are_user_errors():
    with pytest.raises(UserError, match="did you mean 'table5'"):
        get_table("tabel5")
    with pytest.raises(UserError, match="unknown world"):
        check_world(get_table("table5"), "mnist")
    with pytest.raises(UserError, match="cannot run on world"):
        check_world(get_table("table1"), "gmm")


def _record(variant, steps, seed, value, solver="dpmpp"):
    return {"world": "gmm", "scale": "smoke", "cell_key": f"{variant}-{steps}step-{solver}", "seed": seed,
            "metrics": {"sliced_wasserstein": value}, "metric_directions": {"sliced_wasserstein": "lower"},
            "training": {"iterations": 10, "batch_size": 4}, "n_samples": 100}


def test_long_rows_average_seeds_and_ranking_orients_lower_is_better():
    table = get_table("table7")
    records = [_record("4step", 4, 0, 0.10), _record("4step", 4, 1, 0.20), _record("4step-clean", 4, 0, 0.50)]
    rows = long_rows(table, records)
    noisy = next(r for r in rows if r["variant"] == "4step")
    assert noisy["ours_mean"] == pytest.approx(0.15) and noisy["n_seeds"] == 2
    assert noisy["ours_std"] == pytest.approx(0.0707, abs=1e-4) and noisy["paper_value"] == 31.35
    # Paper: noisy (31.35) beats clean (24.63); ours: noisy has the lower distance, so we agree.
    (agreement,) = ranking_agreement(rows)
    assert agreement["kendall_tau"] == 1.0 and agreement["discordant"] == 0
    flipped = long_rows(table, [_record("4step", 4, 0, 0.9), _record("4step-clean", 4, 0, 0.1)])
    assert ranking_agreement(flipped)[0]["kendall_tau"] == -1.0


def test_ranking_only_compares_cells_with_equal_steps():
    table = get_table("table5")
    records = [_record("unify", 1, 0, 0.9), _record("unify", 4, 0, 0.1), _record("4step", 1, 0, 0.95),
               _record("4step", 4, 0, 0.2)]
    (agreement,) = ranking_agreement(long_rows(table, records))
    # 1 step: unify (28.90) > 4step (20.81), ours 0.9 < 0.95 agree; 4 steps: 31.31 < 31.35, ours 0.1 < 0.2 disagree
    assert (agreement["concordant"], agreement["discordant"]) == (1, 1)
