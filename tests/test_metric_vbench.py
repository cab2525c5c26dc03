"""VBench in the project: the aggregation against hand computations from VBench's constants
(typed here from `scripts/constant.py`, not read from the module), the weight-free temporal
flickering on synthetic frames, the reader of VBench's result files, and the driver end to end
with a fake VBench environment (a `bin/python` that writes VBench-shaped result files)."""
import json
import stat
import sys

import numpy as np
import pytest

from harness import vbench as driver
from harness.metrics import vbench as vb
from methods.common.errors import UserError

# name: (group, min, max, weight), as in constant.py's NORMALIZE_DIC and DIM_WEIGHT.
CONSTANTS = {
    "subject_consistency": ("quality", 0.1462, 1.0, 1), "background_consistency": ("quality", 0.2615, 1.0, 1),
    "temporal_flickering": ("quality", 0.6293, 1.0, 1), "motion_smoothness": ("quality", 0.706, 0.9975, 1),
    "dynamic_degree": ("quality", 0.0, 1.0, 0.5), "aesthetic_quality": ("quality", 0.0, 1.0, 1),
    "imaging_quality": ("quality", 0.0, 1.0, 1), "object_class": ("semantic", 0.0, 1.0, 1),
    "multiple_objects": ("semantic", 0.0, 1.0, 1), "human_action": ("semantic", 0.0, 1.0, 1),
    "color": ("semantic", 0.0, 1.0, 1), "spatial_relationship": ("semantic", 0.0, 1.0, 1),
    "scene": ("semantic", 0.0, 0.8222, 1), "appearance_style": ("semantic", 0.0009, 0.2855, 1),
    "temporal_style": ("semantic", 0.0, 0.364, 1), "overall_consistency": ("semantic", 0.0, 0.364, 1),
}
# A hand-picked run, roughly a CogVideoX-2B's profile.
PICKED = {
    "subject_consistency": 0.96, "background_consistency": 0.96, "temporal_flickering": 0.97,
    "motion_smoothness": 0.97, "dynamic_degree": 0.6, "aesthetic_quality": 0.6, "imaging_quality": 0.6,
    "object_class": 0.8, "multiple_objects": 0.6, "human_action": 0.9, "color": 0.8, "spatial_relationship": 0.6,
    "scene": 0.5, "appearance_style": 0.24, "temporal_style": 0.24, "overall_consistency": 0.26,
}
PICKED_QUALITY = ((0.96 - 0.1462) / 0.8538 + (0.96 - 0.2615) / 0.7385 + (0.97 - 0.6293) / 0.3707
                  + (0.97 - 0.706) / 0.2915 + 0.5 * 0.6 + 0.6 + 0.6) / 6.5
PICKED_SEMANTIC = (0.8 + 0.6 + 0.9 + 0.8 + 0.6 + 0.5 / 0.8222 + (0.24 - 0.0009) / 0.2846 + 0.24 / 0.364
                   + 0.26 / 0.364) / 9
PICKED_TOTAL = (4 * PICKED_QUALITY + PICKED_SEMANTIC) / 5


# ---- constants and aggregation --------------------------------------------------------------

def test_the_dimensions_are_vbench_constants():
    assert list(vb.DIMENSIONS) == list(CONSTANTS)
    for name, (group, low, high, weight) in CONSTANTS.items():
        d = vb.DIMENSIONS[name]
        assert (d.group, d.min, d.max, d.weight) == (group, low, high, weight)
    assert vb.dimension("temporal flickering").name == "temporal_flickering"  # constant.py's spelling


def test_every_dimension_at_its_max_scores_one_and_at_its_min_zero():
    top = vb.aggregate({n: c[2] for n, c in CONSTANTS.items()})
    assert top["quality"] == pytest.approx(1) and top["semantic"] == pytest.approx(1)
    assert top["total"] == pytest.approx(1) and top["percent"]["total"] == pytest.approx(100)
    assert not top["partial"] and top["missing"] == []
    bottom = vb.aggregate({n: c[1] for n, c in CONSTANTS.items()})
    assert (bottom["quality"], bottom["semantic"], bottom["total"]) == (0, 0, 0)


def test_a_hand_picked_run_against_a_hand_computation():
    result = vb.aggregate(PICKED)
    assert result["quality"] == pytest.approx(PICKED_QUALITY, abs=1e-12)
    assert result["semantic"] == pytest.approx(PICKED_SEMANTIC, abs=1e-12)
    assert result["total"] == pytest.approx(PICKED_TOTAL, abs=1e-12)
    # The same worked by hand to 5 digits: quality terms .95315 .94584 .91907 .90566 .3 .6 .6 sum to
    # 5.22372 (/6.5 = .80365); semantic 3.7 + .60812 + .84013 + .65934 + .71429 = 6.52188 (/9 = .72465).
    assert result["quality"] == pytest.approx(0.80365, abs=1e-5)
    assert result["semantic"] == pytest.approx(0.72465, abs=1e-5)
    assert result["total"] == pytest.approx((4 * 0.80365 + 0.72465) / 5, abs=1e-5)
    assert result["dimensions"]["scene"]["normalised"] == pytest.approx(0.5 / 0.8222)
    assert result["dimensions"]["scene"]["raw"] == 0.5


def test_dynamic_degree_weighs_one_half():
    scores = {n: c[2] for n, c in CONSTANTS.items()} | {"dynamic_degree": 0.0}
    result = vb.aggregate(scores)
    assert result["quality"] == pytest.approx(6 / 6.5)  # weight 1 would give 6 / 7
    assert result["total"] == pytest.approx((4 * 6 / 6.5 + 1) / 5)


def test_the_total_is_four_parts_quality_one_part_semantic():
    # Table 4's CogVideoX-2B teacher: Quality 82.18, Semantic 75.83, Total 80.91.
    assert 100 * vb.total_score(0.8218, 0.7583) == pytest.approx(80.91, abs=0.005)


def test_a_partial_run_has_no_total():
    quality_only = {n: PICKED[n] for n, c in CONSTANTS.items() if c[0] == "quality"}
    result = vb.aggregate(quality_only | {"scene": 0.5})
    assert result["partial"] is True
    assert result["total"] is None and result["percent"]["total"] is None and result["semantic"] is None
    assert result["quality"] == pytest.approx(PICKED_QUALITY)  # a complete group keeps its score
    assert result["missing"] == [n for n, c in CONSTANTS.items() if c[0] == "semantic" and n != "scene"]
    assert result["groups"]["semantic"] == {"complete": False, "present": ["scene"],
                                            "mean_of_present": pytest.approx(0.5 / 0.8222)}


def test_aggregate_refuses_bad_input():
    with pytest.raises(UserError, match="did you mean 'temporal_flickering'"):
        vb.aggregate({"temporal_flicker": 0.9})
    with pytest.raises(UserError, match="percentages"):
        vb.aggregate({"color": 80.2})
    with pytest.raises(UserError, match="twice"):
        vb.aggregate({"color": 0.8, "color ": 0.8})
    with pytest.raises(UserError):
        vb.aggregate({})


# ---- temporal flickering --------------------------------------------------------------------

def test_a_static_video_scores_one_and_a_black_white_flicker_zero():
    still = np.full((6, 8, 10, 3), 117, dtype=np.uint8)
    assert vb.temporal_flickering(still) == 1.0
    flicker = np.zeros((5, 8, 10, 3), dtype=np.uint8)
    flicker[1::2] = 255
    assert vb.temporal_flickering(flicker) == 0.0


def test_a_small_case_by_hand():
    frames = np.zeros((3, 2, 2, 3), dtype=np.uint8)
    frames[1:, 0, 0, 0] = 255  # one value of 12 changes between frames 0 and 1, none between 1 and 2
    # pair MAEs 255/12 and 0, mean 10.625: (255 - 10.625) / 255 = 1 - 1/24
    assert vb.temporal_flickering(frames) == pytest.approx(1 - 1 / 24, abs=1e-12)
    ramp = np.stack([np.full((1, 1, 3), v, dtype=np.uint8) for v in (0, 51, 102)])
    assert vb.temporal_flickering(ramp) == pytest.approx(0.8)  # pair MAE 51 throughout
    assert vb.temporal_flickering_score([frames, ramp]) == pytest.approx((1 - 1 / 24 + 0.8) / 2)


def test_flickering_refuses_what_vbench_cannot_score():
    with pytest.raises(UserError, match="2 frames"):
        vb.temporal_flickering(np.zeros((1, 4, 4, 3), dtype=np.uint8))
    with pytest.raises(UserError, match="uint8"):
        vb.temporal_flickering(np.zeros((3, 4, 4, 3), dtype=np.float32))


# ---- VBench's result files ------------------------------------------------------------------

def write_results(folder, scores, name="results_2025-01-16-20:09:52", n_videos=2):
    """A VBench output folder: <name>_eval_results.json and its <name>_full_info.json."""
    folder.mkdir(parents=True, exist_ok=True)
    results = {dim: [score, [{"video_path": f"/videos/p-{i}.mp4", "video_results": score} for i in range(n_videos)]]
               for dim, score in scores.items()}
    (folder / f"{name}_eval_results.json").write_text(json.dumps(results, indent=4))
    (folder / f"{name}_full_info.json").write_text(json.dumps([{"prompt_en": "p", "dimension": list(scores)}]))


def test_the_reader_reads_vbench_result_files(tmp_path):
    write_results(tmp_path / "a", {"temporal_flickering": 0.97, "subject_consistency": 0.96}, n_videos=3)
    write_results(tmp_path / "b" / "deeper", {"scene": 0.5})
    assert vb.read_results(tmp_path) == {"temporal_flickering": 0.97, "subject_consistency": 0.96, "scene": 0.5}
    entries = vb.read_result_files(tmp_path)
    assert entries["temporal_flickering"]["n_videos"] == 3
    assert entries["scene"]["file"].endswith("_eval_results.json")


def test_the_reader_refuses_conflicts_and_empty_folders(tmp_path):
    write_results(tmp_path / "a", {"color": 0.8})
    write_results(tmp_path / "b", {"color": 0.7}, name="results_later")
    with pytest.raises(UserError, match="two different scores"):
        vb.read_results(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no VBench result file"):
        vb.read_results(tmp_path / "empty")


# ---- the driver -----------------------------------------------------------------------------

FAKE_PYTHON = """\
#!{python}
# A stand-in for a VBench environment's python: answers the driver's version query, and
# `-m vbench.launch.evaluate` writes a VBench-shaped result file with a fixed score.
import json, os, sys, time
SCORES = {scores}
args = sys.argv[1:]
if args[0] == "-c":
    print(json.dumps({{"python": "3.11.7", "packages": {{"vbench": "0.1.5", "torch": "2.1.2"}}, "cuda": "12.1",
                      "gpu": "fake"}}))
    sys.exit(0)
opts = dict(zip(args[2::2], args[3::2]))
dim, out = opts["--dimension"], opts["--output_path"]
videos = sorted(os.listdir(opts["--videos_path"]))
if dim not in SCORES:
    sys.exit(dim + ": no score in this fake")
name = "results_" + time.strftime("%Y-%m-%d-%H:%M:%S")
with open(os.path.join(out, name + "_eval_results.json"), "w") as f:
    json.dump({{dim: [SCORES[dim], [{{"video_path": v, "video_results": SCORES[dim]}} for v in videos]]}}, f)
print("evaluated", dim, "on", len(videos), "videos")
"""
FAKE_VBENCH = """\
#!{python}
# `vbench static_filter`: keeps every video, as a static filter would keep static ones.
import os, shutil, sys
opts = dict(zip(sys.argv[2::2], sys.argv[3::2]))
target = os.path.join(opts["--result_path"], "filtered_videos")
os.makedirs(target, exist_ok=True)
for name in os.listdir(opts["--videos_path"]):
    shutil.copy(os.path.join(opts["--videos_path"], name), target)
"""


def fake_env(root, scores):
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True)
    for name, text in (("python", FAKE_PYTHON.format(python=sys.executable, scores=repr(scores))),
                       ("vbench", FAKE_VBENCH.format(python=sys.executable))):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod((bin_dir / name).stat().st_mode | stat.S_IXUSR)
    return root


@pytest.fixture
def videos(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    for i in range(3):
        (folder / f"a red car.-{i}.mp4").write_bytes(b"not decoded here")
    return folder


@pytest.fixture
def fast_provenance(monkeypatch):
    monkeypatch.setattr(driver, "provenance", lambda device: {"commit": "test"})


def test_the_driver_runs_a_fake_vbench_end_to_end(tmp_path, videos, fast_provenance, capsys):
    env = fake_env(tmp_path / "env", {n: v for n, v in PICKED.items() if n != "color"})
    out = tmp_path / "out"
    assert driver.main(["run", str(videos), "--env", str(env), "--out", str(out),
                        "--dimensions", ",".join(n for n in PICKED if n != "color")]) == 0
    report = json.loads((out / "vbench.json").read_text())
    assert report["partial"] is True and report["missing"] == ["color"] and report["total"] is None
    assert report["quality"] == pytest.approx(PICKED_QUALITY)
    assert report["n_videos"] == 3 and report["dimensions"]["scene"]["n_videos"] == 3
    assert report["vbench_env"]["packages"]["vbench"] == "0.1.5" and report["provenance"] == {"commit": "test"}
    flicker = next(s for s in report["steps"] if s["step"] == "temporal_flickering")
    assert "-m vbench.launch.evaluate" in flicker["command"] and "static_filter/filtered_videos" in flicker["command"]
    assert report["steps"][0]["step"] == "static_filter" and report["temporal_flickering"]["static_filtered"]
    assert report["temporal_flickering"]["n_videos"] == 3
    assert "vbench.launch.evaluate" in capsys.readouterr().err  # the commands are printed as they run

    # The dimension this fake has no score for fails: the rest is kept, the report stays partial, exit 1.
    assert driver.main(["run", str(videos), "--env", str(env), "--out", str(out), "--dimensions", "all"]) == 1
    report = json.loads((out / "vbench.json").read_text())
    assert report["failed"] == ["color"] and report["total"] is None
    assert {s["status"] for s in report["steps"] if s["step"] != "color"} == {"kept"}
    assert "error: VBench failed on color" in capsys.readouterr().err


def test_the_driver_aggregates_a_complete_fake_run(tmp_path, videos, fast_provenance):
    env = fake_env(tmp_path / "env", PICKED)
    out = tmp_path / "out"
    assert driver.main(["run", str(videos), "--env", str(env), "--out", str(out), "--no-static-filter"]) == 0
    report = json.loads((out / "vbench.json").read_text())
    assert report["partial"] is False and report["total"] == pytest.approx(PICKED_TOTAL)
    assert report["percent"]["total"] == pytest.approx(100 * PICKED_TOTAL)
    assert report["temporal_flickering"]["static_filtered"] is False
    assert all(s["status"] == "ok" for s in report["steps"])


def test_no_static_filter_no_flickering(tmp_path, videos, fast_provenance, capsys):
    env = fake_env(tmp_path / "env", PICKED)
    (env / "bin" / "vbench").unlink()  # the static filter cannot start
    out = tmp_path / "out"
    assert driver.main(["run", str(videos), "--env", str(env), "--out", str(out),
                        "--dimensions", "temporal_flickering,scene"]) == 1
    report = json.loads((out / "vbench.json").read_text())
    assert [s["status"] for s in report["steps"]] == ["failed", "skipped", "ok"]
    assert report["failed"] == ["static_filter", "temporal_flickering"] and list(report["dimensions"]) == ["scene"]
    assert "cannot start" in (out / "logs" / "static_filter.log").read_text()
    assert "error: VBench failed on static_filter, temporal_flickering" in capsys.readouterr().err


def test_a_dry_run_prints_the_commands_and_writes_nothing(tmp_path, videos, capsys):
    out = tmp_path / "out"
    assert driver.main(["run", str(videos), "--env", str(tmp_path / "none"), "--out", str(out),
                        "--dimensions", "temporal_flickering,scene", "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and "static_filter" in lines[0]
    assert "--dimension scene" in lines[2] and "--mode vbench_standard" in lines[2]
    assert not out.exists()


def test_a_missing_env_is_one_line_and_exit_2(tmp_path, videos, capsys):
    code = driver.main(["run", str(videos), "--env", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "scripts/vbench_env.sh" in err and "nowhere" in err


def test_the_driver_refuses_what_vbench_would_mishandle(tmp_path, videos, capsys):
    (videos / "manifest.json").write_text("{}")  # standard mode would take ".json" as every video's suffix
    assert driver.main(["run", str(videos), "--out", str(tmp_path / "o"), "--dry-run"]) == 2
    assert "non-video" in capsys.readouterr().err
    assert driver.main(["run", str(videos), "--out", str(tmp_path / "o"), "--dry-run", "--mode", "custom_input",
                        "--dimensions", "scene"]) == 2
    assert "custom_input" in capsys.readouterr().err


def test_aggregate_command(tmp_path, fast_provenance, capsys):
    write_results(tmp_path / "res", PICKED)
    assert driver.main(["aggregate", str(tmp_path / "res"), "--out", str(tmp_path / "agg.json")]) == 0
    report = json.loads((tmp_path / "agg.json").read_text())
    assert report["total"] == pytest.approx(PICKED_TOTAL) and report["constants"].startswith("Vchitect/VBench")
    assert f"{100 * PICKED_TOTAL:.2f}%" in capsys.readouterr().out


def test_flicker_command_on_arrays_and_frame_folders(tmp_path, fast_provenance, capsys):
    from PIL import Image

    folder = tmp_path / "frames"
    folder.mkdir()
    still = np.full((4, 6, 8, 3), 90, dtype=np.uint8)
    np.save(folder / "still.npy", still)
    flicker = folder / "flicker"
    flicker.mkdir()
    for i in range(11):  # frame10 must follow frame9 (natural order), else the pairs change
        Image.fromarray(np.full((6, 8, 3), 255 * (i % 2), dtype=np.uint8)).save(flicker / f"frame{i}.png")
    assert driver.main(["flicker", str(folder), "--out", str(tmp_path / "f.json")]) == 0
    report = json.loads((tmp_path / "f.json").read_text())
    assert report["per_video"] == {"flicker": 0.0, "still.npy": 1.0} and report["score"] == 0.5
    (folder / "clip-0.mp4").write_bytes(b"")
    assert driver.main(["flicker", str(folder)]) == 2
    assert "VBench's environment" in capsys.readouterr().err
