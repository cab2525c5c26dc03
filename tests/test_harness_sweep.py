"""python -m harness.sweep: every combination of settings and seeds, trained and evaluated by the
tables' runner, summarised per setting (gmm at the smoke scale: seconds on a CPU)."""
import csv
import json

import pytest

from harness.curves import main as curves_main
from harness.sweep import main

GMM_SMOKE = ["--world", "gmm", "--scale", "smoke", "--no-progress"]


def test_a_sweep_trains_each_setting_and_seed_and_summarises_them(tmp_path, capsys):
    argv = ["alpha", "--variant", "4step-fisher", "--set", "fisher_alpha=0.0,1.2", "--seeds", "0,1", *GMM_SMOKE,
            "--results-dir", str(tmp_path)]
    assert main(argv) == 0
    cells = sorted(p.name for p in (tmp_path / "sweeps" / "alpha" / "gmm-smoke").glob("*.json"))
    assert cells == [f"4step-fisher-4step-dpmpp-fisher_alpha={a}-seed{s}.json" for a in ("0.0", "1.2") for s in (0, 1)]
    with open(tmp_path / "sweeps" / "alpha" / "gmm-smoke.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["fisher_alpha"] for r in rows] == ["0.0", "1.2"] and all(r["seeds"] == "0 1" for r in rows)
    means = [float(r["sliced_wasserstein mean"]) for r in rows]
    assert all(0 < m < 10 for m in means) and means[0] != means[1]  # the setting reached the trainer
    assert "fisher_alpha" in (tmp_path / "sweeps" / "alpha" / "gmm-smoke.md").read_text()
    assert (tmp_path / "sweeps" / "alpha" / "gmm-smoke.png").stat().st_size > 1000  # a numeric setting: a curve
    capsys.readouterr()
    assert main(argv) == 0  # finished cells are reused: nothing retrained
    assert "wrote" in capsys.readouterr().out


def test_a_curves_budgets_share_one_run_that_continues(tmp_path):
    """iterations=6,3: sorted, one run per seed; the 6-iteration cell resumes from step 3 and ends
    where a fresh 6-iteration run ends (the same final losses)."""
    argv = ["curve", "--set", "iterations=6,3", "--seeds", "0", *GMM_SMOKE, "--results-dir", str(tmp_path / "a")]
    assert main(argv) == 0
    runs = sorted(p.name for p in (tmp_path / "a" / "runs" / "gmm-smoke").iterdir())
    assert runs == ["4step-seed0"]
    record = json.loads((tmp_path / "a" / "sweeps" / "curve" / "gmm-smoke" / "4step-4step-dpmpp-iterations=6-seed0.json")
                        .read_text())
    assert record["training"]["resumed_from"] == 3
    fresh = ["fresh", "--set", "iterations=6", "--seeds", "0", *GMM_SMOKE, "--results-dir", str(tmp_path / "b")]
    assert main(fresh) == 0
    record_fresh = json.loads((tmp_path / "b" / "sweeps" / "fresh" / "gmm-smoke" / "4step-4step-dpmpp-iterations=6-seed0"
                               ".json").read_text())
    assert record_fresh["training"]["resumed_from"] == 0
    assert record["training"]["final_losses"] == record_fresh["training"]["final_losses"]
    assert record["metrics"] == record_fresh["metrics"]


def test_a_dmd2_curve_is_sampled_as_dmd2_trains(tmp_path):
    """Another method's variant on the same runner: its cells are sampled with its solver ("lcm"), and
    a generator turn between the budgets moves the student's numbers."""
    argv = ["dmd2", "--variant", "dmd2-4step", "--set", "iterations=1,4", "--set", "generator_every=2",
            "--seeds", "0", "--world", "tiny-sd15", "--scale", "smoke", "--no-progress", "--results-dir", str(tmp_path)]
    assert main(argv) == 0
    folder = tmp_path / "sweeps" / "dmd2" / "tiny-sd15-smoke"
    cells = sorted(p.name for p in folder.glob("*.json"))
    assert cells == [f"dmd2-4step-4step-lcm-iterations={n}-generator_every=2-seed0.json" for n in (1, 4)]
    records = [json.loads((folder / name).read_text()) for name in cells]
    assert records[0]["training"]["config"]["algorithm"] == "dmd2"
    assert records[0]["metrics"] != records[1]["metrics"]  # no generator turn in 1 iteration; two in 4

    # The curves beside each other count the student's updates, not the loop's iterations.
    out = tmp_path / "curves" / "dmd2"
    assert curves_main(["dmd2", "--world", "tiny-sd15-smoke", "--results-dir", str(tmp_path), "--out", str(out)]) == 0
    with open(out.with_suffix(".csv")) as f:
        rows = list(csv.DictReader(f))
    assert [(r["method"], r["generator_updates"], r["iterations"]) for r in rows] == [
        ("DMD2 (dmd2-4step)", "0", "1"), ("DMD2 (dmd2-4step)", "2", "4")]
    assert float(rows[0]["fd_teacher mean"]) == records[0]["metrics"]["fd_teacher"]
    assert out.with_suffix(".png").stat().st_size > 1000 and "cpu" in out.with_suffix(".md").read_text()
    assert curves_main(["nope", "--world", "tiny-sd15-smoke", "--results-dir", str(tmp_path)]) == 2


@pytest.mark.parametrize("argv, words", [
    (["x", "--set", "foo=1"], ["--set", "'foo=1'"]),
    (["x", "--set", "seed=1,2"], ["--set", "seed"]),
    (["x", "--set", "lr_fake=-1"], ["lr_fake", "positive"]),
    (["x", "--set", "lr_fake=1e-3", "--set", "lr_fake=1e-2"], ["each key once"]),
    (["x", "--variant", "4stp", "--set", "lr_fake=1e-3"], ["--variant", "4step"]),
    (["x/y", "--set", "lr_fake=1e-3"], ["NAME"]),
    (["x", "--set", "lr_fake=1e-3", "--steps", "0"], ["--steps"]),
    (["x", "--set", "iterations=4,8", "--set", "lr_schedule=cosine_with_restarts"], ["lr_horizon"]),
    (["x", "--variant", "dmd2-4step", "--set", "lr_fake=1e-3"], ["--variant", "on gmm"]),  # tiny-sd15 only
])
def test_bad_sweeps_are_one_line_and_write_nothing(argv, words, tmp_path, capsys):
    assert main([*argv, *GMM_SMOKE, "--results-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err
    assert not (tmp_path / "r").exists()
