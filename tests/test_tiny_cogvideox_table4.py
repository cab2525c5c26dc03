"""Table 4 on the tiny-cogvideox world: where the world's build is found, its provider for training,
its presets, the teacher cells, and `python -m harness.reproduce table4` end to end at smoke scale on
the session's CPU build of a few steps (tests/conftest.py; its numbers mean nothing, the path is the
point). The world is pointed at that build through $TDM_TINY_COGVIDEOX_WORLD."""
import json
from pathlib import Path

import pytest

from harness import reproduce
from harness.evaluation import VIDEO_GUIDANCE, TinyCogVideoXEvaluator
from harness.report import long_rows, ranking_agreement
from harness.runner import WORLD_STAMP, _stamp
from harness.tables import TEACHER_STEPS, Cell, TeacherCell, get_table
from harness.worlds.tiny_cogvideox import grammar, location
from methods.common.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")
SMOKE = ["table4", "--world", "tiny-cogvideox", "--scale", "smoke", "--device", "cpu", "--no-progress"]
TEACHER_50, TDM_4, TEACHER_4 = "teacher-50step-ddim-seed0.json", "4step-4step-ddim-seed0.json", "teacher-4step-ddim-seed0.json"


def run(*argv) -> int:
    try:
        return reproduce.main(list(argv))
    except SystemExit as exit_:
        return exit_.code


@pytest.fixture(scope="module")
def world(tiny_cogvideox_world):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(location.ENV, str(tiny_cogvideox_world))
        yield tiny_cogvideox_world


@pytest.fixture(scope="module")
def table4(world, tmp_path_factory):
    """One smoke run of Table 4: three cells (the teacher at 50 and 4 steps, TDM-4step seed 0)."""
    results = tmp_path_factory.mktemp("results")
    assert run(*SMOKE, "--results-dir", str(results)) == 0
    return results


def cells(results: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted((results / "table4" / "tiny-cogvideox-smoke").glob("*.json"))}


# --- where the world is -------------------------------------------------------------------------------

def test_the_world_is_the_shipped_assets_unless_the_environment_names_another(monkeypatch, tmp_path):
    monkeypatch.delenv(location.ENV, raising=False)
    assert location.root() == location.ASSETS == Path(location.__file__).parent / "assets"
    monkeypatch.setenv(location.ENV, str(tmp_path))
    assert location.root() == tmp_path
    with pytest.raises(UserError) as err:
        location.require()
    message = str(err.value)
    assert str(tmp_path) in message and "python -m harness.worlds.tiny_cogvideox.build --out" in message
    assert "build.json" in message and "\n" not in message


def test_the_shipped_build_is_whole_and_found_by_name(monkeypatch):
    from methods.common.pipeline_io import check_pipeline_folder
    from methods.common.worlds import world as provider
    from methods.tdm.backbones_cogvideox import COMPONENTS

    monkeypatch.delenv(location.ENV, raising=False)
    assert location.missing() == [] and provider("tiny-cogvideox").PIPELINE == location.ASSETS / "pipeline"
    check_pipeline_folder(location.pipeline(), COMPONENTS)


@pytest.mark.parametrize("argv", [SMOKE, [*SMOKE, "--dry-run"], ["table4"]])
def test_a_missing_build_is_one_line_exit_2(argv, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(location.ENV, str(tmp_path / "no-build"))
    assert run(*argv, "--results-dir", str(tmp_path / "r")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "the tiny-cogvideox world is not built" in err
    assert str(tmp_path / "no-build") in err and "python -m harness.worlds.tiny_cogvideox.build" in err
    assert not (tmp_path / "r").exists()


def test_training_on_a_missing_build_is_one_line_exit_2(monkeypatch, tmp_path, capsys):
    from methods.tdm.train import main

    monkeypatch.setenv(location.ENV, str(tmp_path / "no-build"))
    assert main(["--preset", "tiny-cogvideox-4step", f"output_dir={tmp_path / 'run'}", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "tiny_cogvideox.build" in err


# --- training: the provider and the presets -------------------------------------------------------------

def test_training_finds_the_world_by_name(world):
    from methods.common.worlds import provides, world as provider
    from methods.tdm.pipeline_backbone import resolve_teacher
    from methods.tdm.backbones_cogvideox import COMPONENTS

    found = provider("tiny-cogvideox")
    assert found.PIPELINE == world / "pipeline" and resolve_teacher("tiny-cogvideox", COMPONENTS) == world / "pipeline"
    prompts = found.training_prompts(3, 5)
    assert prompts == found.training_prompts(3, 5) and prompts != found.training_prompts(4, 5)
    assert all(grammar.parse_prompt(p) and not grammar.is_held_out(p) for p in prompts)
    assert provides("tiny-cogvideox", "training_prompts") and not provides("gmm", "PIPELINE")
    assert found.scheduler().config.prediction_type == "v_prediction"


def test_the_world_presets_distil_the_teacher_as_table4_samples_it():
    from methods.common.solvers import trailing_timesteps
    from methods.tdm.objective import student_timesteps
    from methods.tdm.presets import PRESETS, resolve

    config = resolve("tiny-cogvideox-4step")
    m = config.method
    assert (config.backbone, config.teacher, config.prompts, config.lora_rank) == \
        ("cogvideox", "tiny-cogvideox", "tiny-cogvideox", 0)
    assert m.lr_fake == pytest.approx(10 * m.lr_student)  # the paper's ratio (App. D)
    assert m.guidance == VIDEO_GUIDANCE and m.steps == (4,) and m.solver == "ddim"
    # the student's timesteps are those of the 4-step teacher row (trailing DDIM)
    assert student_timesteps(4, m.num_train_timesteps, m.timesteps) == trailing_timesteps(4, 1000)
    assert "tiny-cogvideox-unify" not in PRESETS and "tiny-cogvideox-unify-no-step-cond" in PRESETS


# --- the table -------------------------------------------------------------------------------------------

def test_table4_is_the_teacher_and_tdm_beside_the_papers_vbench_total():
    table = get_table("table4")
    assert table.kind == "grid" and table.worlds == ("tiny-cogvideox", "real") and table.paper_metric == "vbench_total"
    assert table.cells() == [TeacherCell(TEACHER_STEPS), Cell("4step", 4, "ddim"), TeacherCell(4)]
    assert [table.published_value(row) for row in table.rows] == [80.91, 81.65, None]
    assert not table.has_recipes and TeacherCell(50).key == "teacher-50step-ddim"
    assert reproduce.default_world([table]) == "tiny-cogvideox"
    assert reproduce.default_world([get_table("table5")]) == "tiny-sd15"
    assert reproduce.default_world([table, get_table("table5")]) == "tiny-sd15"  # then table4 says where it runs


def test_list_shows_table4_on_the_video_world(capsys):
    assert run("list") == 0
    out = capsys.readouterr().out
    line = out[out.index("table4"):].splitlines()[1]
    assert "3 cells" in line and "runs on tiny-cogvideox" in line


def test_ranking_compares_tdm_at_4_steps_with_the_teacher_at_50():
    table = get_table("table4")

    def record(cell, fd):
        return {"world": "tiny-cogvideox", "scale": "smoke", "cell_key": cell.key, "seed": 0, "n_samples": 6,
                "metrics": {"fd_data": fd, "motion_accuracy": None}, "training": None,
                "metric_directions": {"fd_data": "lower", "motion_accuracy": "higher"}}

    rows = long_rows(table, [record(TeacherCell(50), 2.0), record(Cell("4step", 4, "ddim"), 1.0),
                             record(TeacherCell(4), 9.0)])
    assert [r["metric"] for r in rows] == ["fd_data"] * 3  # a metric measured nowhere is left out
    (agreement,) = ranking_agreement(rows, across_steps=table.across_steps)
    assert agreement["concordant"] == 1 and agreement["kendall_tau"] == 1.0  # TDM beats the 50-step teacher
    assert ranking_agreement(rows)[0]["kendall_tau"] is None  # at equal steps only: no pair with both numbers


def test_a_run_made_on_another_build_is_trained_afresh(tmp_path):
    class Evaluator:
        def __init__(self, teacher):
            self.teacher = teacher

        def training_stamp(self):
            return {"world": "tiny-cogvideox", "teacher": self.teacher}

    run_dir = tmp_path / "4step-seed0"
    assert _stamp(Evaluator("a"), run_dir) == {"world": "tiny-cogvideox", "teacher": "a"}
    (run_dir / "summary.json").write_text("{}")
    _stamp(Evaluator("a"), run_dir)
    assert (run_dir / "summary.json").is_file()  # same build: kept
    _stamp(Evaluator("b"), run_dir)
    assert not (run_dir / "summary.json").exists()
    assert json.loads((run_dir / WORLD_STAMP).read_text())["teacher"] == "b"
    assert _stamp(object(), tmp_path / "other") is None and not (tmp_path / "other").exists()  # tiny-sd15, gmm


# --- end to end -------------------------------------------------------------------------------------------

def test_dry_run_lists_the_teacher_cells_and_the_training_runs(world, tmp_path, capsys):
    assert run(*SMOKE, "--dry-run", "--seeds", "0,1", "--results-dir", str(tmp_path / "r")) == 0
    out = capsys.readouterr().out
    assert "scale smoke: 2 cells from 2 training runs (2 to compute)" in out
    assert "4step-seed0: 2 iterations, batch 2, steps [4]" in out and "4step-4step-ddim-seed1 [table4: to compute]" in out
    assert "2 teacher cells" in out and "teacher-50step-ddim-seed0 [table4: to compute]: 50 DDIM steps, CFG 3 (100 NFE)" in out
    assert "teacher-4step-ddim-seed0" in out and not (tmp_path / "r").exists()


def test_smoke_writes_the_three_cells_and_the_table_beside_the_paper(table4):
    records = cells(table4)
    assert sorted(records) == sorted([TEACHER_50, TDM_4, TEACHER_4])
    teacher, tdm, few = records[TEACHER_50], records[TDM_4], records[TEACHER_4]
    assert "fd_teacher" not in teacher["metrics"] and teacher["reference_from"] == "this cell"
    assert tdm["metrics"]["fd_teacher"] >= 0 and few["metrics"]["fd_teacher"] >= 0
    assert set(tdm["metrics"]) == set(TinyCogVideoXEvaluator.metrics) and tdm["n_samples"] == 6
    assert teacher["training"] is None and teacher["sampler"]["steps"] == 50 and teacher["sampler"]["guidance"] == 3.0
    assert few["sampler"]["resolved_timesteps"] == tdm["sampler"]["resolved_timesteps"] == [999, 749, 499, 249]
    assert tdm["sampler"]["guidance"] == 1.0 and tdm["training"]["iterations"] == 2
    assert tdm["training"]["config"]["teacher"] == "tiny-cogvideox" and tdm["training"]["world_stamp"]["teacher"]
    assert len({r["fingerprint"] for r in records.values()}) == 3
    md = (table4 / "paper_tables" / "table4.md").read_text()
    for text in ("| CogVideoX-2B (the teacher, 50 steps with CFG) | 50 | ddim | 80.91 |", "| TDM (4 NFE) | 4 | ddim | 81.65 |",
                 "| teacher at 4 steps with CFG (extra: the few-step baseline) | 4 | ddim | - |", "paper VBench total",
                 "not VBench", "fd_teacher (↓)"):
        assert text in md, text
    csv = (table4 / "paper_tables" / "table4.csv").read_text()
    assert "vbench_total" in csv and "80.91" in csv and "81.65" in csv
    for suffix in (".tex", ".png", "-ranking.json"):
        assert (table4 / "paper_tables" / f"table4{suffix}").stat().st_size > 0


def test_finished_cells_are_kept_and_the_student_samples_on_its_trained_timesteps(table4, world):
    from baselines.tdm_student import VideoStudentSampler

    before = {p: p.stat().st_mtime_ns for p in (table4 / "table4").rglob("*.json")}
    assert run(*SMOKE, "--results-dir", str(table4)) == 0
    assert {p: p.stat().st_mtime_ns for p in (table4 / "table4").rglob("*.json")} == before
    run_dir = table4 / "runs" / "tiny-cogvideox-smoke" / "4step-seed0"
    sampler = VideoStudentSampler.from_run(run_dir, 4)
    assert sampler.timesteps == [999, 749, 499, 249] and sampler.spec.guidance == 1.0
    assert VideoStudentSampler.from_run(run_dir, 2).timesteps == [999, 499]  # other counts: trailing
    with pytest.raises(UserError, match="DDIM only"):
        VideoStudentSampler.from_run(run_dir, 4, "dpmpp")


def test_a_sweep_on_the_video_world_samples_with_ddim_and_skips_unmeasured_metrics():
    from harness.scales import get_scale
    from harness.sweep import summarise, sweep_jobs

    jobs = sweep_jobs("budget", "tiny-cogvideox", "4step", 4, [("iterations", ["500", "250"])], get_scale("full"), (0,))
    assert [dict(job.settings)["iterations"] for job in jobs] == ["250", "500"]
    assert jobs[0].cell == Cell("4step", 4, "ddim") and jobs[0].train_config(Path("r")).backbone == "cogvideox"
    records = [{"seed": 0, "metrics": {"fd_teacher": 1.0, "motion_accuracy": None}},
               {"seed": 0, "metrics": {"fd_teacher": 2.0, "motion_accuracy": 0.5}}]
    header, rows = summarise(jobs, records)
    assert rows[0][header.index("motion_accuracy mean")] is None and rows[1][header.index("fd_teacher mean")] == 2.0
