"""Table 4 at real size (harness/table4_real/), on CPU with tiny random pipelines of the real classes.

The weights folder holds a tiny CogVideoXPipeline at THUDM/CogVideoX-2b (9 frames of 16 x 16 pixels),
a random LoRA at Luo-Yihong/TDM_CogVideoX-2B_LoRA, and a student export (the pipeline with a
tdm_student.json card); a fake VBench checkout mirrors the real prompt layout with four lines (one
prompt listed twice, one temporal-flickering prompt); a fake VBench environment answers the driver's
queries and writes VBench-shaped result files; the mp4 writer is replaced by one that records frames.
"""
import json
import shutil
import stat
import sys

import numpy as np
import pytest
import torch

from harness import table4_real as t4
from test_metric_vbench import FAKE_VBENCH  # `vbench static_filter` that keeps every video
from tiny_models import TINY_COGVIDEOX, VIDEO_FRAMES as FRAMES
from harness import vbench as driver
from harness.metrics import vbench as vb
from methods.common.errors import UserError
from methods.common.random_pipelines import COGVIDEOX_SCHEDULER, small_t5_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 16
TINY = TINY_COGVIDEOX

# VBench's layout, four lines: line 3 repeats line 2's prompt with another augmented text (as
# all_dimension.txt lines 504 and 747 do), line 1 is a temporal-flickering prompt.
FULL_INFO = [
    {"prompt_en": "a red car", "dimension": ["subject_consistency", "motion_smoothness", "dynamic_degree"]},
    {"prompt_en": "In a still frame, a stop sign", "dimension": ["temporal_flickering"]},
    {"prompt_en": "The bund Shanghai, oil painting", "dimension": ["appearance_style"]},
    {"prompt_en": "The bund Shanghai, oil painting", "dimension": ["overall_consistency", "aesthetic_quality",
                                                                   "imaging_quality"]},
]
AUGMENTED = ["A shiny red car drives along a coastal road at sunset.",
             "In a still frame, a weathered stop sign stands at a quiet intersection.",
             "An oil painting of the Bund in Shanghai, warm hues.",
             "A mesmerizing oil painting of the Bund in Shanghai at dusk."]
SCORES = {"subject_consistency": 0.96, "background_consistency": 0.96, "temporal_flickering": 0.97,
          "motion_smoothness": 0.97, "dynamic_degree": 0.6, "aesthetic_quality": 0.6, "imaging_quality": 0.6,
          "object_class": 0.8, "multiple_objects": 0.6, "human_action": 0.9, "color": 0.8, "spatial_relationship": 0.6,
          "scene": 0.5, "appearance_style": 0.24, "temporal_style": 0.24, "overall_consistency": 0.26}

FAKE_PYTHON = """\
#!{python}
# A VBench environment's python: the version query, and `-m vbench.launch.evaluate` writing a result file.
import json, os, sys
args = sys.argv[1:]
if args[0] == "-c":
    print(json.dumps({{"python": "3.11.7", "packages": {{"vbench": "0.1.5", "torch": "2.1.2", "detectron2": "0.6"}},
                      "cuda": "12.1", "gpu": "fake"}}))
    sys.exit(0)
opts = dict(zip(args[2::2], args[3::2]))
dim, out = opts["--dimension"], opts["--output_path"]
videos = sorted(os.listdir(opts["--videos_path"]))
with open(os.path.join(out, "results_fake_eval_results.json"), "w") as f:
    json.dump({{dim: [{scores}[dim], [{{"video_path": v, "video_results": 1.0}} for v in videos]]}}, f)
"""


def tiny_cogvideox(out):
    """random_cogvideox_pipeline's folder with the TINY configs, its T5 tokenizer over this file's words
    (the default vocabulary loads the tiny-sd15 world, which takes seconds)."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline, CogVideoXTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    words = sorted({w.strip(".,").lower() for text in [e["prompt_en"] for e in FULL_INFO] + AUGMENTED
                    for w in text.split()})
    scheduler = {k: v for k, v in COGVIDEOX_SCHEDULER.items() if k != "_class_name"}
    pipe = CogVideoXPipeline(
        tokenizer=small_t5_tokenizer(words), text_encoder=T5EncoderModel(T5Config(**TINY["text"])),
        vae=AutoencoderKLCogVideoX(**TINY["vae"]), transformer=CogVideoXTransformer3DModel(**TINY["transformer"]),
        scheduler=CogVideoXDDIMScheduler(**scheduler))
    pipe.save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """weights/ (teacher, LoRA), run/student-K4, VBench/ (checkout layout) and env/ (VBench's environment)."""
    from diffusers import CogVideoXPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    root = tmp_path_factory.mktemp("table4")
    teacher = tiny_cogvideox(root / "weights" / "THUDM" / "CogVideoX-2b")
    pipe = CogVideoXPipeline.from_pretrained(str(teacher), local_files_only=True)
    torch.manual_seed(1)
    pipe.transformer.add_adapter(LoraConfig(r=2, lora_alpha=2, init_lora_weights=False,
                                            target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    CogVideoXPipeline.save_lora_weights(str(root / "weights" / "Luo-Yihong" / "TDM_CogVideoX-2B_LoRA"),
                                        transformer_lora_layers=get_peft_model_state_dict(pipe.transformer))
    student = root / "run" / "student-K4"
    shutil.copytree(teacher, student)
    (student / "tdm_student.json").write_text(json.dumps({
        "method": "TDM", "steps": 4, "timesteps": [999, 856, 665, 399], "guidance_scale": 1.0, "lora": None,
        "frames": FRAMES, "height": SIZE, "width": SIZE, "config": {"method": {"steps": [4]}}}))

    checkout = root / "VBench"
    (checkout / "vbench").mkdir(parents=True)
    (checkout / "vbench" / "VBench_full_info.json").write_text(json.dumps(FULL_INFO))
    (checkout / "prompts" / "augmented_prompts" / "gpt_enhanced_prompts").mkdir(parents=True)
    (checkout / "prompts" / "all_dimension.txt").write_text("\n".join(e["prompt_en"] for e in FULL_INFO) + "\n")
    (checkout / t4.AUGMENTED).write_text("\n".join(AUGMENTED))  # no final newline, as VBench's file

    env = root / "env"
    site = env / "lib" / "python3.11" / "site-packages"
    (site / "vbench").mkdir(parents=True)
    (site / "detectron2").mkdir()
    (site / "vbench" / "VBench_full_info.json").write_text(json.dumps(FULL_INFO))
    (env / "bin").mkdir()
    for name, text in (("python", FAKE_PYTHON.format(python=sys.executable, scores=repr(SCORES))),
                       ("vbench", FAKE_VBENCH.format(python=sys.executable))):
        (env / "bin" / name).write_text(text)
        (env / "bin" / name).chmod((env / "bin" / name).stat().st_mode | stat.S_IXUSR)
    return root


@pytest.fixture
def fake_mp4(monkeypatch, tmp_path):
    """The mp4 writer replaced: each 'video' is the frames' shape, and every call is recorded."""
    written = []

    def write(frames, path, fps):
        assert frames.dtype == np.uint8 and path.parent.name == "tmp" and fps == 8
        path.write_text(json.dumps(list(frames.shape)))
        written.append((path.name, frames.shape))

    monkeypatch.setattr(t4.running, "write_mp4", write)
    monkeypatch.setattr(t4.running, "video_backend", lambda: "fake")
    monkeypatch.setattr(t4.running, "provenance", lambda device: {"commit": "test"})
    monkeypatch.setattr(driver, "provenance", lambda device: {"commit": "test"})
    monkeypatch.setenv("VBENCH_CACHE_DIR", str(tmp_path / "vbench-cache"))
    return written


def config(world, tmp_path, **changes):
    settings = dict(out=tmp_path / "out", weights_root=world / "weights", vbench_root=world / "VBench",
                    vbench_env=world / "env", student=world / "run", samples=2, flicker_samples=3,
                    clip=(FRAMES, SIZE, SIZE))
    return t4.Table4Config(**{**settings, **changes})


def argv(world, tmp_path, *extra):
    return ["--out", str(tmp_path / "out"), "--weights-root", str(world / "weights"), "--vbench-root",
            str(world / "VBench"), "--vbench-env", str(world / "env"), "--student", str(world / "run"),
            "--samples", "2", "--flicker-samples", "3", "--clip", f"{FRAMES},{SIZE},{SIZE}", *extra]


# ---- plan ------------------------------------------------------------------------------------------


def test_the_plan_with_nothing_names_every_missing_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VBENCH_CACHE_DIR", str(tmp_path / "cache"))
    c = t4.Table4Config(out=tmp_path / "out", vbench_env=tmp_path / "no-env", student=tmp_path / "no-run")
    p = t4.plan(c)
    teacher, lora, project = p.cells
    assert [cell.key for cell in p.cells] == list(t4.CELLS)
    assert teacher.status == lora.status == "missing weights" and project.status == "needs training"
    assert teacher.missing == tuple(f"THUDM/CogVideoX-2b : {f}" for f in t4.TEACHER_FILES)
    assert lora.missing[-1].startswith("Luo-Yihong/TDM_CogVideoX-2B_LoRA : pytorch_lora_weights.safetensors")
    assert "student-K4/tdm_student.json" in project.missing[0] and "--preset cogvideox-2b" in project.how
    assert (teacher.steps, teacher.nfe, teacher.guidance, lora.nfe, lora.timesteps) == (50, 100, 6.0, 4,
                                                                                      (999, 856, 665, 399))
    assert (teacher.frames, teacher.height, teacher.width) == (49, 480, 720)
    # The protocol's counts without the files: 944 names x 5 + 75 flickering prompts x 20 more.
    assert p.videos_per_cell == teacher.videos == 944 * 5 + 75 * 20 == 6220
    assert teacher.cost.seconds_per_video == pytest.approx(100 * 0.315 + 2.12 + 0.026, abs=0.01)
    assert lora.cost.gpu_hours == pytest.approx(6220 * (4 * 0.315 + 2.12 + 0.026) / 3600, abs=0.1)
    assert len(p.prompts.missing) == 2 and not p.prompts.rows
    assert any(t4.AUGMENTED in line and "--vbench-root" in line for line in p.prompts.missing)
    assert p.vbench.missing and "scripts/vbench_env.sh" in p.vbench.missing[0]
    assert len(p.vbench.missing_weights) == len(t4.VBENCH_WEIGHTS)

    assert t4.main(["plan", "--out", str(tmp_path / "out"), "--vbench-env", str(tmp_path / "no-env"),
                    "--student", str(tmp_path / "no-run")]) == 0
    text = capsys.readouterr().out
    for expected in ("6,220 videos", "THUDM/CogVideoX-2b : transformer/diffusion_pytorch_model.safetensors",
                     "and the 14 files of THUDM/CogVideoX-2b listed above", "needs training", "CFG 6",
                     "[999, 856, 665, 399]", "58.1 GPU-hours", "cogvideox-2b-sampling-h200.json", "all_dimension_longer.txt"):
        assert expected in text
    assert not (tmp_path / "out").exists()  # a plan writes nothing


def test_the_plan_reads_vbench_layout_and_names_videos_by_the_original_prompt(world, tmp_path):
    p = t4.plan(config(world, tmp_path))
    assert all(cell.status == "ready" for cell in p.cells), [(c.key, c.missing) for c in p.cells]
    rows = p.prompts.rows
    assert [r.file for r in rows] == [
        "a red car-0.mp4", "a red car-1.mp4",
        "In a still frame, a stop sign-0.mp4", "In a still frame, a stop sign-1.mp4",
        "In a still frame, a stop sign-2.mp4",  # flicker_samples for temporal flickering's prompts
        "The bund Shanghai, oil painting-0.mp4", "The bund Shanghai, oil painting-1.mp4"]
    bund = rows[-1]
    assert bund.sampled_prompt == AUGMENTED[3] and bund.line == 3  # the later line's text, as VBench's loop ends up
    assert bund.seed == t4.video_seed(3, 1, 0) == 301 and rows[0].seed == 0
    assert p.prompts.duplicates == (("The bund Shanghai, oil painting", (3, 4)),)
    assert (p.prompts.n_lines, p.prompts.n_names, p.prompts.flicker_prompts) == (4, 3, 1)
    assert p.prompts.per_dimension["imaging_quality"] == 1 and p.prompts.per_dimension["scene"] == 0
    assert [f.count for f in p.prompts.files] == [4, 4, 4]
    assert str(world / "env") in str(p.prompts.files[0].path)  # the evaluating vbench's list names the files
    project = p.cells[2]
    assert project.recipe.base == "student-K4" and project.sampler_root == world / "run"
    assert "ready" in t4.format_plan(p)

    # Original prompts from the environment's wheel alone; the augmented ones need a checkout.
    alone = t4.plan(config(world, tmp_path, vbench_root=None, prompts="original", seed=2, limit=1))
    assert [(r.file, r.sampled_prompt, r.seed) for r in alone.prompts.rows] == [
        ("a red car-0.mp4", "a red car", 2_000_000), ("a red car-1.mp4", "a red car", 2_000_001)]
    missing = t4.plan(config(world, tmp_path, vbench_root=None)).prompts.missing
    assert len(missing) == 1 and t4.AUGMENTED in missing[0] and "github.com/Vchitect/VBench" in missing[0]


def test_the_lora_file_is_the_default_name_or_the_folders_only_safetensors(tmp_path):
    (tmp_path / "Luo-Yihong" / "TDM_CogVideoX-2B_LoRA").mkdir(parents=True)
    assert t4.lora_file(tmp_path) == (None, None)
    other = tmp_path / "Luo-Yihong" / "TDM_CogVideoX-2B_LoRA" / "tdm_lora.safetensors"
    other.write_bytes(b"")
    assert t4.lora_file(tmp_path) == ("tdm_lora.safetensors", other)


# ---- run --------------------------------------------------------------------------------------------


def test_run_samples_every_cell_names_the_files_for_vbench_and_writes_the_results(world, tmp_path, fake_mp4, capsys):
    c = config(world, tmp_path)
    assert t4.main(["run", "--device", "cpu", "--batch-size", "2", "--no-progress", *argv(world, tmp_path)]) == 0
    expected = {r.file for r in t4.plan(c).prompts.rows}
    want = vb.aggregate(SCORES)
    for key in t4.CELLS:
        folder = tmp_path / "out" / key
        assert {p.name for p in (folder / "videos").iterdir()} == expected and not (folder / "tmp").exists()
        manifest = json.loads((folder / "manifest.json").read_text())
        assert {r["file"] for r in manifest["rows"]} == expected
        bund = next(r for r in manifest["rows"] if r["file"] == "The bund Shanghai, oil painting-0.mp4")
        assert bund["sampled_prompt"] == AUGMENTED[3] and bund["seed"] == 300
        record = json.loads((tmp_path / "out" / f"{key}.json").read_text())
        assert record["metrics"]["vbench_total"] == pytest.approx(100 * want["total"])
        assert record["metrics"]["vbench_quality"] == pytest.approx(100 * want["quality"])
        assert record["metrics"]["vbench_semantic"] == pytest.approx(100 * want["semantic"])
        assert record["partial"] is True and record["protocol"] is False  # 2 samples of 16 px: not the benchmark
        assert record["missing_dimensions"] == [] and record["vbench_returncode"] == 0
        assert record["videos"]["n"] == len(expected) and record["provenance"] == {"commit": "test"}
        report = json.loads((folder / "vbench" / "vbench.json").read_text())
        assert report["n_videos"] == len(expected) and report["temporal_flickering"]["static_filtered"]
    teacher = json.loads((tmp_path / "out" / "cogvideox-2b-teacher.json").read_text())
    lora = json.loads((tmp_path / "out" / "tdm-cogvideox-2b-lora.json").read_text())
    project = json.loads((tmp_path / "out" / "tdm-cogvideox-2b-project.json").read_text())
    assert teacher["sampling"]["nfe_per_video"] == 100 and teacher["paper"]["vbench_total"] == 80.91
    assert lora["sampling"]["nfe_per_video"] == project["sampling"]["nfe_per_video"] == 4
    assert lora["sampler"]["resolved_timesteps"] == [999, 856, 665, 399] == project["sampler"]["resolved_timesteps"]
    assert lora["sampler"]["attached"][0]["path_in_repo"] == "pytorch_lora_weights.safetensors"
    assert teacher["sampler"]["scheduler_class"] == "CogVideoXDDIMScheduler"
    assert all(shape == (FRAMES, SIZE, SIZE, 3) for _, shape in fake_mp4) and len(fake_mp4) == 3 * len(expected)
    out = capsys.readouterr().out
    assert "cogvideox-2b-teacher" in out and "80.91/82.18/75.83" in out

    # Again: nothing is sampled or scored again; a lost video is sampled alone, then rescored with --force.
    fake_mp4.clear()
    assert t4.main(["run", "--device", "cpu", "--no-progress", *argv(world, tmp_path)]) == 0
    assert fake_mp4 == [] and "done" in capsys.readouterr().err
    (tmp_path / "out" / "tdm-cogvideox-2b-lora" / "videos" / "a red car-1.mp4").unlink()
    records = t4.run(replace_cells(c, "tdm-cogvideox-2b-lora", results_dir=tmp_path / "results"), "cpu", force=True,
                     show_progress=False)
    assert [name for name, _ in fake_mp4] == ["a red car-1.mp4"] and records[0]["sampling"]["sampled_now"] == 1
    assert json.loads((tmp_path / "results" / "tdm-cogvideox-2b-lora.json").read_text())["videos"]["n"] == 7
    # Another prompt list in the same folder is refused before anything is sampled.
    with pytest.raises(UserError, match="another recipe, prompt list"):
        t4.run(replace_cells(c, "tdm-cogvideox-2b-lora", prompts="original"), "cpu", show_progress=False)


def replace_cells(c, *cells, **changes):
    from dataclasses import replace

    return replace(c, cells=cells, **changes)


def test_no_vbench_only_samples(world, tmp_path, fake_mp4):
    c = config(world, tmp_path, cells=("tdm-cogvideox-2b-lora",), vbench_env=tmp_path / "absent", limit=1)
    records = t4.run(c, "cpu", evaluate=False, show_progress=False)
    assert records[0]["sampling"]["videos"] == 2 and len(fake_mp4) == 2
    assert not (tmp_path / "out" / "tdm-cogvideox-2b-lora.json").exists()


@pytest.mark.parametrize("what", ["lora", "augmented prompts", "vbench env", "mp4 writer", "student", "detectron2"])
def test_what_is_missing_is_one_line_exit_2_and_nothing_is_written(what, world, tmp_path, fake_mp4, monkeypatch,
                                                                  capsys):
    extra = []
    if what == "lora":
        weights = tmp_path / "weights"
        shutil.copytree(world / "weights" / "THUDM", weights / "THUDM")
        extra = ["--weights-root", str(weights), "--cells", "tdm-cogvideox-2b-lora"]
    elif what == "augmented prompts":
        checkout = tmp_path / "VBench"
        shutil.copytree(world / "VBench", checkout)
        (checkout / t4.AUGMENTED).unlink()
        extra = ["--vbench-root", str(checkout)]
    elif what == "vbench env":
        extra = ["--vbench-env", str(tmp_path / "no-env")]
    elif what == "mp4 writer":
        monkeypatch.setattr(t4.running, "video_backend", lambda: None)
    elif what == "student":
        extra = ["--student", str(tmp_path / "no-run")]
    elif what == "detectron2":
        env = tmp_path / "env"
        shutil.copytree(world / "env", env)
        (env / "bin" / "python").write_text((env / "bin" / "python").read_text().replace('"detectron2": "0.6"', ""))
        extra = ["--vbench-env", str(env), "--cells", "tdm-cogvideox-2b-lora"]
    assert t4.main(["run", "--device", "cpu", *argv(world, tmp_path), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    needle = {"lora": "Luo-Yihong/TDM_CogVideoX-2B_LoRA : pytorch_lora_weights.safetensors",
              "augmented prompts": "all_dimension_longer.txt", "vbench env": "scripts/vbench_env.sh",
              "mp4 writer": "imageio-ffmpeg", "student": "needs training", "detectron2": "detectron2"}[what]
    assert needle in err
    assert not (tmp_path / "out").exists() and fake_mp4 == []


def test_bad_options_are_one_line_exit_2(tmp_path, capsys):
    for bad in (["--clip", "9,16"], ["--cells", "teacher"], ["--samples", "6", "--flicker-samples", "5"]):
        assert t4.main(["plan", "--out", str(tmp_path / "out"), *bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1


def test_reproduce_table4_on_real_prints_the_plan_without_weights(capsys, tmp_path):
    from harness import reproduce

    code = reproduce.main(["table4", "--world", "real", "--dry-run", "--vbench-env", str(tmp_path / "env"),
                           "--results-dir", str(tmp_path / "results")])
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("table4 on real:")
    assert "THUDM/CogVideoX-2b : transformer/diffusion_pytorch_model.safetensors" in out
    assert "6,220 videos each" in out and not (tmp_path / "results").exists()


def test_reproduce_table4_on_real_runs_alone(capsys):
    from harness import reproduce

    assert reproduce.main(["table4", "table5", "--world", "real", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "table4 --world real runs alone" in err and err.count("\n") == 1
