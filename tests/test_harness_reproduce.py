"""python -m harness.reproduce end to end on the gmm world at smoke scale (seconds): the files
it writes, that finished cells are never recomputed, that a grid killed mid-training finishes
on restart with the same numbers, and one-line errors that leave nothing half-written."""
import json
from pathlib import Path

import pytest

from harness.reproduce import main
from methods.tdm.method import TDM

pytestmark = pytest.mark.usefixtures("one_thread")
GMM_SMOKE = ["--world", "gmm", "--scale", "smoke", "--no-progress"]


def run(*argv) -> int:
    try:
        return main(list(argv))
    except SystemExit as exit_:
        return exit_.code


def cells(results: Path, table="table7") -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted((results / table / "gmm-smoke").glob("*.json"))}


@pytest.fixture(scope="module")
def table7(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    assert run("table7", *GMM_SMOKE, "--results-dir", str(results)) == 0
    return results


def test_a_grid_writes_cells_with_provenance_and_the_four_views(table7):
    records = cells(table7)
    assert sorted(records) == ["4step-4step-dpmpp-seed0.json", "4step-clean-4step-dpmpp-seed0.json"]
    rec = records["4step-4step-dpmpp-seed0.json"]
    for key in ("metrics", "n_samples", "commit", "date", "versions", "device", "eval_seconds", "fingerprint"):
        assert key in rec
    assert rec["training"]["config"]["method"]["match"] == "noisy" and rec["training"]["iterations"] == 60
    assert rec["training"]["flops_per_iteration"] > 0
    assert 0 < rec["metrics"]["sliced_wasserstein"] < 2
    assert records["4step-clean-4step-dpmpp-seed0.json"]["training"]["config"]["method"]["match"] == "clean"
    for suffix in (".csv", ".md", ".tex", ".png", "-ranking.json"):
        assert (table7 / "paper_tables" / f"table7{suffix}").stat().st_size > 0
    csv = (table7 / "paper_tables" / "table7.csv").read_text()
    assert "31.35" in csv and "24.63" in csv and "smoke" in csv


def test_finished_cells_are_not_recomputed(table7, capsys):
    before = {p: p.stat().st_mtime_ns for p in (table7 / "table7").rglob("*.json")}
    assert run("table7", *GMM_SMOKE, "--results-dir", str(table7)) == 0
    assert {p: p.stat().st_mtime_ns for p in (table7 / "table7").rglob("*.json")} == before
    # Table 8 shares the TDM-4step cell: it is copied, not evaluated again.
    assert run("table8", *GMM_SMOKE, "--results-dir", str(table7)) == 0
    shared = json.loads((table7 / "table8" / "gmm-smoke" / "4step-4step-dpmpp-seed0.json").read_text())
    assert shared["copied_from"] == "table7/gmm-smoke/4step-4step-dpmpp-seed0.json"
    assert shared["metrics"] == cells(table7)["4step-4step-dpmpp-seed0.json"]["metrics"]


def test_a_record_made_under_another_configuration_is_shown_stale_and_report_only_computes_nothing(table7, tmp_path):
    import csv
    import shutil

    results = tmp_path / "r"
    shutil.copytree(table7 / "table7", results / "table7")
    stale = results / "table7" / "gmm-smoke" / "4step-clean-4step-dpmpp-seed0.json"
    stale.write_text(json.dumps({**json.loads(stale.read_text()), "fingerprint": "made-on-another-teacher"}))
    (results / "table7" / "gmm-smoke" / "4step-4step-dpmpp-seed0.json").unlink()
    assert run("table7", *GMM_SMOKE, "--results-dir", str(results), "--report-only") == 0
    assert sorted(p.name for p in (results / "table7" / "gmm-smoke").iterdir()) == [stale.name]  # nothing computed
    assert not (results / "runs").exists()
    rows = list(csv.DictReader((results / "paper_tables" / "table7.csv").open()))
    assert rows and {r["stale_seeds"] for r in rows} == {"1"}
    md = (results / "paper_tables" / "table7.md").read_text()
    assert "(stale) [dpmpp]" in md or "(stale) |" in md
    assert "The 1 row marked (stale) was made under another configuration" in md
    assert "python -m harness.reproduce table7 --world gmm --scale smoke` re-makes it" in md
    # The table's current records are not marked.
    assert run("table7", *GMM_SMOKE, "--results-dir", str(table7), "--report-only") == 0
    assert "(stale)" not in (table7 / "paper_tables" / "table7.md").read_text()


class Killed(Exception):
    """Stands for SIGKILL partway through a training run."""


def test_a_grid_killed_mid_training_resumes_and_ends_with_the_same_numbers(table7, tmp_path, monkeypatch):
    real, calls = TDM.train_step, []

    def dies_in_second_run(*args, **kwargs):  # 60 iterations per run, checkpoints every 20
        if len(calls) == 60 + 30:
            raise Killed
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(TDM, "train_step", dies_in_second_run)
    with pytest.raises(Killed):
        run("table7", *GMM_SMOKE, "--results-dir", str(tmp_path))
    first = tmp_path / "table7" / "gmm-smoke" / "4step-4step-dpmpp-seed0.json"
    assert first.is_file() and not (tmp_path / "table7" / "gmm-smoke" / "4step-clean-4step-dpmpp-seed0.json").exists()
    stamp = first.stat().st_mtime_ns
    monkeypatch.undo()
    assert run("table7", *GMM_SMOKE, "--results-dir", str(tmp_path)) == 0
    assert first.stat().st_mtime_ns == stamp  # the finished cell was kept
    resumed = cells(tmp_path)["4step-clean-4step-dpmpp-seed0.json"]
    assert resumed["training"]["resumed_from"] == 20
    for name, clean in cells(table7).items():  # bit-identical to the uninterrupted grid
        assert cells(tmp_path)[name]["metrics"] == clean["metrics"], name


def test_force_recomputes(table7, tmp_path):
    results = tmp_path / "r"
    assert run("table8", *GMM_SMOKE, "--results-dir", str(results)) == 0
    path = results / "table8" / "gmm-smoke" / "4step-fisher-4step-dpmpp-seed0.json"
    stamp = path.stat().st_mtime_ns
    assert run("table8", *GMM_SMOKE, "--results-dir", str(results), "--force") == 0
    assert path.stat().st_mtime_ns != stamp


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    cases = [
        (["table9"], "unknown table 'table9'"),
        (["table5", "--world", "mnist"], "unknown world 'mnist'"),
        (["table4", "--world", "tiny-sd15"], "table4 cannot run on world 'tiny-sd15': it runs on tiny-cogvideox"),
        (["table1", "--world", "gmm"], "table1 cannot run on world 'gmm'"),
        (["table1", "--results-dir", str(tmp_path / "r")], "no cell of table1 can run"),
        (["table1", "--weights-root", str(tmp_path / "nowhere")], "is not a folder"),
        (["table5", "--device", "cuda"], "sees no CUDA GPU"),
        (["table3", "--results-dir", str(tmp_path / "empty")], "run those tables first"),
    ]
    for argv, message in cases:
        assert run(*argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err


def test_a_corrupt_results_file_is_named_and_left_alone(tmp_path, capsys):
    bad = tmp_path / "table7" / "gmm-smoke" / "4step-4step-dpmpp-seed0.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    assert run("table7", *GMM_SMOKE, "--results-dir", str(tmp_path)) == 2
    assert "is not valid JSON" in capsys.readouterr().err
    assert bad.read_text() == "{not json" and not (tmp_path / "paper_tables").exists()


def test_a_corrupt_results_file_stops_the_grid_before_any_training(tmp_path, capsys):
    bad = tmp_path / "table7" / "gmm-smoke" / "4step-clean-4step-dpmpp-seed0.json"  # the grid's second cell
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    assert run("table7", *GMM_SMOKE, "--results-dir", str(tmp_path)) == 2
    assert "is not valid JSON" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # the first cell was not trained


def test_an_unwritable_results_dir_is_refused_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "a-file"  # a results folder inside a file cannot be made, even by root
    blocker.write_text("")
    assert run("table7", *GMM_SMOKE, "--results-dir", str(blocker / "results")) == 2
    assert "cannot write results" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_dry_run_lists_runs_and_writes_nothing(tmp_path, capsys):
    assert run("table5", "--dry-run", "--results-dir", str(tmp_path / "r")) == 0
    out = capsys.readouterr().out
    assert "scale reduced: 14 cells from 6 training runs" in out and "4step-no-is-seed0" in out
    assert "official-script-seed0" in out  # the extra row: the official script's recipe
    assert not (tmp_path / "r").exists()


def test_table3_reports_the_cost_of_the_runs_beside_the_paper(table7):
    assert run("table3", "--results-dir", str(table7), "--no-progress") == 0
    csv = (table7 / "paper_tables" / "table3.csv").read_text()
    assert "ours,gmm,smoke,4step-clean" in csv and "paper,,,TDM,SDXL" in csv
    for suffix in (".md", ".tex", ".png"):
        assert (table7 / "paper_tables" / f"table3{suffix}").stat().st_size > 0
