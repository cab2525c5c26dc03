"""Recipe cells: Tables 1 and 2 as grids of published checkpoints, sampled and scored without
training. The grids cover every published row (a recipe, or a row that needs training first);
`--dry-run` names the files each cell still needs; with a weights folder of random weights in the
real layouts (tests/baseline_weights.py) the cells run end to end on the tiny-sd15 world's
metrics, are cached by fingerprint, and the report puts the paper's numbers beside ours."""
import hashlib
import json
import math
from dataclasses import asdict
from pathlib import Path

import pytest

from baseline_weights import write_weights_folder
from baselines import get_recipe
from baselines.recipes import table2_recipes
from harness import cost
from harness.reproduce import DEFAULT_RESULTS, jobs_for, main
from harness.runner import Runner
from harness.scales import get_scale
from harness.tables import NEEDS_TRAINING, PIPELINE_OF, Cell, RecipeCell, get_table

pytestmark = pytest.mark.usefixtures("one_thread")
CELLS = ["tcd-sd15", "hyper-sd15-4step", "tcd-sd15@realistic-vision", "lcm-lora-sd15@realistic-vision"]
TINY_SMOKE = ["--world", "tiny-sd15", "--scale", "smoke", "--no-progress"]


@pytest.fixture(scope="module", autouse=True)
def empty_hf_cache(tmp_path_factory):
    """Weights are looked up in the Hugging Face cache too: make it empty, whatever this machine holds."""
    import huggingface_hub.constants

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path_factory.mktemp("hf-cache")))
        yield


def run(*argv) -> int:
    try:
        return main(list(argv))
    except SystemExit as exit_:
        return exit_.code


def _published_rows(table_id: str) -> set[tuple]:
    return {(r["method"], r["backbone"], r["variant"], int(r["steps"])) for r in get_table(table_id).published()}


def _rows(table_id: str) -> dict[tuple, object]:
    return {(row.method, row.backbone, row.variant, row.paper_steps): row for row in get_table(table_id).rows}


# ------------------------------------------------------------------------------------------- the grids
def test_every_published_row_of_tables_1_and_2_is_a_recipe_cell_or_needs_training():
    for table_id, n_recipes, n_pending in [("table1", 19, 7), ("table2", 11, 1)]:
        rows = _rows(table_id)
        assert set(rows) == _published_rows(table_id)  # no published row dropped, none invented
        table = get_table(table_id)
        assert (len(table.cells()), len(table.pending())) == (n_recipes, n_pending)
        assert all(not cell.trained for cell in table.cells())
        for (method, backbone, variant, steps), row in rows.items():
            if row.cell is None:
                assert (method, backbone, variant) in NEEDS_TRAINING, row
                continue
            recipe = get_recipe(row.cell.recipe)
            assert (recipe.pipeline, recipe.steps) == (PIPELINE_OF[backbone], steps), row


def test_the_rows_point_at_the_recipes_the_paper_names():
    t1, t2 = _rows("table1"), _rows("table2")
    assert t1[("PeRFlow", "SD-v1.5", "", 2)].cell == RecipeCell("perflow-sd15-2step")
    assert t1[("Hyper-SD", "SD-v1.5", "", 1)].cell == RecipeCell("hyper-sd15-1step")
    assert t1[("DMD2", "SD-v1.5", "", 4)].cell == RecipeCell("dmd2-sd15-4step")  # a project-trained base
    assert t1[("DMD2", "SDXL", "", 4)].cell == RecipeCell("dmd2-sdxl-4step")  # the UNet, not its LoRA twin
    assert t1[("SDXL-Lighting", "SDXL", "", 4)].cell == RecipeCell("sdxl-lightning-4step")  # the CSV's spelling
    assert t1[("Base Model", "SD-v1.5", "", 25)].cell == RecipeCell("sd15-teacher-25")
    assert t1[("Base Model-1024 (CFG=7.5)", "SDXL", "", 25)].cell == RecipeCell("sdxl-teacher-25")
    assert t1[("Base Model-1024 (CFG=3.5)", "PixArt-alpha", "", 25)].cell == RecipeCell("pixart-teacher-25")
    assert t2[("TDM", "SD-v1.5", "Dreamshaper", 4)].cell == RecipeCell("tdm-dreamshaper-lora")
    assert t2[("Realistic", "SD-v1.5", "Realistic", 25)].cell == RecipeCell("sd15-teacher-25@realistic-vision")
    loras = {row.cell.recipe for row in t2.values() if row.cell and row.method not in ("TDM", row.variant)}
    assert loras == {r.name for r in table2_recipes()}
    pending = {(row.label, row.backbone, row.paper_steps) for t in (t1, t2) for row in t.values() if row.cell is None}
    assert pending == {("Base Model + Fine-tuning", "SD-v1.5", 25), ("TDM-unify-GAN", "SD-v1.5", 1),
                       ("TDM-unify-GAN", "SD-v1.5", 4), ("TDM-unify-SFT", "SD-v1.5", 1),
                       ("TDM-unify-SFT", "SD-v1.5", 4), ("TDM", "SDXL", 4), ("TDM-1024", "PixArt-alpha", 4),
                       ("TDM", "SD-v1.5", 4)}  # the last: Table 2's Realistic row
    assert get_table("table1").published_value(t1[("TCD", "SDXL", "", 4)]) == 27.81  # the backbone counts


def test_trained_cells_keep_their_keys_and_fingerprints():
    """Cell's fields are hashed into every fingerprint, so the committed results stay valid only if
    the trained cells hash exactly as before recipe cells existed."""
    assert Cell("4step", 4).key == "4step-4step-dpmpp" and asdict(Cell("4step", 4, "ddim")) == \
        {"variant": "4step", "steps": 4, "solver": "ddim"}
    assert RecipeCell("tcd-sd15@realistic-vision").key == "tcd-sd15@realistic-vision"
    runner = Runner(DEFAULT_RESULTS, show_progress=False)
    for world, seeds in [("tiny-sd15", (0,)), ("gmm", (0,))]:
        job = next(j for j in jobs_for(get_table("table7"), world, get_scale("full"), seeds) if j.cell.variant == "4step")
        committed = json.loads(job.result_path(DEFAULT_RESULTS).read_text())
        assert runner.fingerprint(job) == committed["fingerprint"], f"{world}: committed results would be recomputed"


def test_table3_has_no_cost_row_for_a_recipe_cell():
    trained = {"world": "gmm", "scale": "smoke", "cell": {"variant": "4step", "steps": 4, "solver": "dpmpp"},
               "seed": 0, "device": "cpu", "training": {
                   "iterations": 10, "batch_size": 4, "seconds_per_iteration": 0.5, "flops_per_iteration": 1e9,
                   "flops_counted_at_K": 4}}
    recipe = {"world": "tiny-sd15", "scale": "smoke", "cell": {"recipe": "tcd-sd15"}, "seed": 0, "device": "cpu",
              "training": None}
    rows = cost.measured_rows([trained, recipe])
    assert {r["method"] for r in rows} == {"4step"}
    assert next(r for r in rows if r["metric"] == "device_hours")["value"] == pytest.approx(0.5 * 10 / 3600)


# ------------------------------------------------------------------------------------------- dry run
def test_dry_run_without_weights_lists_every_cell_with_its_missing_files(tmp_path, capsys):
    assert run("table1", "table2", "--dry-run", "--results-dir", str(tmp_path / "r")) == 0
    out = capsys.readouterr().out
    assert "table1 on tiny-sd15, scale reduced: 19 recipe cells, 7 rows that need training first" in out
    assert "scored with the tiny-sd15 world's metrics (plumbing" in out
    for table_id in ("table1", "table2"):
        for cell in get_table(table_id).cells():
            assert f"  {cell.recipe} " in out, cell
    assert "      tianweiy/DMD2 : dmd2_sdxl_4step_unet_fp16.bin" in out
    assert "      h1t/TCD-SD15-LoRA : pytorch_lora_weights.safetensors" in out
    assert "      SG161222/Realistic_Vision_V5.1_noVAE (the whole repository)" in out
    assert "      project/dmd2-sd15-4step (the whole repository)" in out
    line = next(line for line in out.splitlines() if " sd15-teacher-25 " in line)
    assert line.split() == ["Base", "Model", "SD-v1.5", "25", "sd15-teacher-25", "50", "missing:"]
    assert "TDM-unify-GAN" in out and "needs a real-size TDM run on SDXL" in out
    assert not (tmp_path / "r").exists()


def test_a_bad_recipe_name_is_one_line(capsys):
    assert run("table1", "--variants", "tcd-sd16", "--dry-run") == 2
    err = capsys.readouterr().err.strip()
    assert "--variants: tcd-sd16 not in the grid of table1" in err and len(err.splitlines()) == 1


# ------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return write_weights_folder(tmp_path_factory.mktemp("weights") / "root", [get_recipe(n) for n in CELLS])


@pytest.fixture(scope="module")
def results(weights, tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("results")
    assert run("table1", "table2", *TINY_SMOKE, "--weights-root", str(weights), "--results-dir", str(results),
               "--variants", ",".join(CELLS)) == 0
    return results


def _records(results: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for t in ("table1", "table2")
            for p in sorted((results / t / "tiny-sd15-smoke").glob("*.json"))}


def test_recipe_cells_are_sampled_and_scored_without_training(results, weights):
    records = _records(results)
    assert sorted(records) == sorted(f"{name}-seed0" for name in CELLS)
    for name in CELLS:
        rec = records[f"{name}-seed0"]
        assert rec["training"] is None and rec["cell"] == {"recipe": name} and rec["seed"] == 0
        assert set(rec["metrics"]) == {"fd_teacher", "fd_data", "alignment", "mode_coverage"}
        assert all(math.isfinite(v) for v in rec["metrics"].values()), rec["metrics"]
        assert rec["resized_for_world"] == 64 and rec["recipe_size"] == [512, 512]
        assert rec["sampler"]["name"] == name and rec["sampler"]["height"] == 64
        assert rec["measured_nfe"] == get_recipe(name).nfe and "world's metrics (plumbing" in rec["metrics_note"]
        (attached,) = rec["sampler"]["attached"]
        assert attached["sha256"] == hashlib.sha256(Path(attached["local_path"]).read_bytes()).hexdigest()
        assert Path(attached["local_path"]).is_relative_to(weights)
    # The same LoRA on a base with the same (random) weights: the same images, so the same numbers.
    assert records["tcd-sd15-seed0"]["metrics"] == records["tcd-sd15@realistic-vision-seed0"]["metrics"]
    assert records["tcd-sd15-seed0"]["metrics"] != records["hyper-sd15-4step-seed0"]["metrics"]


def test_a_second_run_recomputes_nothing_and_the_dry_run_says_so(results, weights, capsys):
    before = {p: (p.stat().st_mtime_ns, json.loads(p.read_text())["fingerprint"])
              for p in (results / "table1").rglob("*.json")}
    assert run("table1", "table2", *TINY_SMOKE, "--weights-root", str(weights), "--results-dir", str(results),
               "--variants", ",".join(CELLS)) == 0
    assert {p: (p.stat().st_mtime_ns, json.loads(p.read_text())["fingerprint"])
            for p in (results / "table1").rglob("*.json")} == before
    capsys.readouterr()
    assert run("table1", *TINY_SMOKE, "--weights-root", str(weights), "--results-dir", str(results), "--dry-run") == 0
    lines = capsys.readouterr().out.splitlines()
    assert next(line for line in lines if " tcd-sd15 " in line).endswith("finished")
    assert next(line for line in lines if " tcd-sdxl " in line).endswith("missing:")


def test_cells_without_weights_are_skipped_and_listed(results, weights, capsys):
    assert run("table2", *TINY_SMOKE, "--weights-root", str(weights), "--results-dir", str(results),
               "--variants", "tcd-sd15@realistic-vision,tcd-sd15@dreamshaper-7") == 0
    err = capsys.readouterr().err
    assert "skipped table2 tcd-sd15@dreamshaper-7: missing Lykon/dreamshaper-7 (the whole repository)" in err
    assert "skipped 1 recipe cell whose weights are missing" in err
    assert sorted(p.stem for p in (results / "table2" / "tiny-sd15-smoke").glob("*.json")) == \
        ["lcm-lora-sd15@realistic-vision-seed0", "tcd-sd15@realistic-vision-seed0"]


def test_the_report_puts_the_published_numbers_beside_ours(results):
    tables = results / "paper_tables"
    for suffix in (".csv", ".md", ".tex", ".png", "-ranking.json"):
        assert (tables / f"table1{suffix}").stat().st_size > 0 and (tables / f"table2{suffix}").stat().st_size > 0
    csv = (tables / "table1.csv").read_text().splitlines()
    assert csv[0].endswith(",paper_metric,paper_value,paper_value_certain,stale_seeds,backbone,recipe,nfe,"
                          "resized_for_world")
    assert "table1,tiny-sd15,smoke,TCD,tcd-sd15,4,TCDScheduler,fd_teacher,lower," in "\n".join(csv)
    assert any(line.endswith(",hps_average,22.24,True,0,SD-v1.5,tcd-sd15,4,64") for line in csv)
    assert any(line.endswith(",hps_average,26.95,True,0,SD-v1.5 (Realistic),tcd-sd15@realistic-vision,4,64")
               for line in (tables / "table2.csv").read_text().splitlines())
    md = (tables / "table1.md").read_text()
    assert "| row | backbone | steps | sampler | NFE | paper HPSv2.1 | fd_teacher (↓) |" in md
    assert "| Hyper-SD | SD-v1.5 | 4 | hyper-sd15-4step | 4 | 30.24 |" in md
    assert "Scored with the tiny-sd15 world's metrics (plumbing, not a measure of the checkpoints" in md
    assert "No result yet for 17 recipe cells" in md and "dmd2-sdxl-4step" in md
    assert "- TDM (SDXL, 4 steps; paper 34.88): needs a real-size TDM run on SDXL" in md
    assert "- TDM-unify-SFT (SD-v1.5, 1 step; paper 28.90)" in md
