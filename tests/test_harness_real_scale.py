"""Tables 1-2 on the "real" world: recipe cells sampled on the HPSv2 benchmark prompts and scored with
the paper's metrics (HPSv2.1 per style and averaged, AeS, CLIP score, FID-to-teacher), end to end on
tiny random models of the real classes in the real file layouts (tests/baseline_weights.py for the
checkpoints, tests/metric_weights.py for the metrics). Sizes are the tiny bases' (64 px), not 512."""
import json
import math
from pathlib import Path

import pytest

from baseline_weights import tiny, write_weights_folder
from baselines import get_recipe
from harness import real_scale
from harness.metrics import hps
from harness.reproduce import main
from harness.scales import get_scale
from metric_weights import SHARED_HEAD, tiny_hps_config, write_metric_weights

pytestmark = pytest.mark.usefixtures("one_thread")
STUDENT, TEACHER = "tcd-sd15@realistic-vision", "sd15-teacher-25@realistic-vision"
SMOKE = ["--world", "real", "--scale", "smoke", "--no-progress"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    root = write_weights_folder(tmp_path_factory.mktemp("weights") / "root", [get_recipe(STUDENT), get_recipe(TEACHER)])
    return write_metric_weights(root)


@pytest.fixture(scope="module")
def results(weights, tmp_path_factory):
    import huggingface_hub.constants

    results = tmp_path_factory.mktemp("results")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path_factory.mktemp("hf-cache")))
        patch.setattr(hps, "vit_h14_config", tiny_hps_config)  # the tiny checkpoint's architecture
        patch.setattr(real_scale.RealScaleEvaluator, "recipe_for_world", lambda self, recipe: tiny(recipe))
        if not SHARED_HEAD.is_file():  # the LAION head is a data file outside the repository
            patch.setitem(get_scale("smoke").eval["real"], "metrics", ("hps-v2.1", "clip"))
        assert main(["table2", *SMOKE, "--weights-root", str(weights), "--results-dir", str(results),
                     "--variants", f"{STUDENT},{TEACHER}"]) == 0
    return results


def _record(results: Path, name: str) -> dict:
    return json.loads((results / "table2" / "real-smoke" / f"{name}-seed0.json").read_text())


def test_a_recipe_cell_gets_the_papers_metrics_on_the_benchmark_prompts(results):
    record = _record(results, STUDENT)
    metrics = record["metrics"]
    expected = {"hps_animation", "hps_concept_art", "hps_painting", "hps_photo", "hps_average", "clip_score", "fid"}
    assert expected <= set(metrics) and all(math.isfinite(v) for v in metrics.values()), metrics
    assert ("aesthetic" in metrics) == SHARED_HEAD.is_file()
    assert record["metric_directions"]["fid"] == "lower" and record["metric_directions"]["hps_average"] == "higher"
    assert record["n_samples"] == 8 and record["partial"] is True  # 2 prompts per style, not 800
    styles = record["scores"]["hps-v2.1"]["benchmark"]["styles"]
    assert metrics["hps_average"] == pytest.approx(sum(s["mean"] for s in styles.values()) / 4)  # 2 images each
    assert metrics["hps_photo"] == styles["photo"]["mean"]
    assert record["scores"]["fid"]["paired_prompts_and_seeds"] and record["scores"]["fid"]["n"] == 8
    assert metrics["fid"] > 0
    manifest = json.loads((Path(record["samples"]) / "manifest.json").read_text())
    assert [r["seed"] for r in manifest[:3]] == [real_scale.image_seed(0, i, 0) for i in range(2)] + \
        [real_scale.image_seed(1, 0, 0)]
    assert record["metrics_note"] == "" and "HPSv2 benchmark prompts, 2 per style, a partial" in record["sampling_note"]


def test_the_teacher_has_no_fid_to_itself_and_its_samples_are_shared(results):
    teacher = _record(results, TEACHER)
    assert "fid" not in teacher["scores"] and "hps_average" in teacher["metrics"]
    samples = sorted(p.name for p in (results / "runs" / "cache" / "real" / "samples").iterdir())
    assert len(samples) == 2 and any(p.startswith(TEACHER) for p in samples)  # made once, used by both cells


def test_the_report_puts_the_published_numbers_of_the_same_metric_beside_ours(results):
    rows = (results / "paper_tables" / "table2.csv").read_text().splitlines()
    header = rows[0].split(",")
    mine = [dict(zip(header, r.split(","))) for r in rows[1:] if f",{STUDENT}," in r]
    by_metric = {r["metric"]: r for r in mine}
    assert by_metric["hps_average"]["paper_metric"] == "hps_average" and by_metric["hps_average"]["paper_value"] == "26.95"
    assert by_metric["clip_score"]["paper_metric"] == "clip_score"


def test_the_dry_run_lists_what_the_evaluation_itself_needs(tmp_path, capsys):
    assert main(["table2", *SMOKE, "--weights-root", str(tmp_path), "--results-dir", str(tmp_path / "r"),
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "missing for the evaluation: xswu/HPSv2 : HPS_v2.1_compressed.pt" in out
    assert "missing for the evaluation: zhwang/HPDv2 : benchmark/photo.json" in out
