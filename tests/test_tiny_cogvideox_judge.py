"""The tiny-cogvideox judge and the teacher-by-steps command, on a world built for a few steps on
CPU (the path: its numbers mean nothing until a real build is trained on a GPU)."""
import json

import numpy as np
import pytest

from baselines.base import SamplerSpec
from baselines.teacher import VideoTeacherSampler, trailing_timesteps
from harness.worlds.tiny_cogvideox import dataset, evaluate, judge as j
from harness.worlds.tiny_cogvideox.classifier import ClipClassifier

pytestmark = pytest.mark.usefixtures("one_thread")



@pytest.fixture(scope="module")
def world(tiny_cogvideox_world):
    return tiny_cogvideox_world


def test_the_video_teacher_samples_clips_per_seed_whatever_the_batch(world):
    spec = SamplerSpec("teacher-ddim-2", "tiny-cogvideox", str(world / "pipeline"), "ddim", 2, 3.0)
    sampler = VideoTeacherSampler(spec)
    prompts = ["a red circle moving left on a grey background", "a blue square standing still on a white background"]
    both = sampler.sample(prompts, [0, 1])
    assert both.shape == (2, dataset.FRAMES, dataset.RESOLUTION, dataset.RESOLUTION, 3) and both.dtype == np.uint8
    alone = sampler.sample(prompts[1:], [1])
    assert np.abs(both[1:].astype(int) - alone).max() <= 1  # batch shapes round differently on a CPU, by one level
    assert not np.array_equal(both[0], sampler.sample(prompts[:1], [2])[0])
    assert sampler.describe()["resolved_timesteps"] == [999, 499] == trailing_timesteps(2)
    with pytest.raises(ValueError, match="2 prompts but 1 seeds"):
        sampler.sample(prompts, [0])


def test_clips_survive_the_uint8_round_trip():
    clips = dataset.render([s.clip for s in dataset.sample_clips(0, 2)], seed=0)
    assert (j.from_uint8(j.to_uint8(clips)) - clips).abs().max() <= 1 / 127.5 + 1e-6


def test_the_judge_refuses_clips_that_do_not_match_its_prompts(world):
    judge = j.Judge(ClipClassifier.load(world / "classifier"), j.EvalConfig(n_prompts=4, coverage_prompts=2,
                                                                             coverage_samples=2))
    assert len(judge.prompts) == 4 and len(judge.coverage_prompts) == 4
    assert all(len(judge.coverage_specs[i].objects) == 1 and judge.coverage_specs[i].free_attributes for i in range(4))
    real = j.to_uint8(dataset.render([s.clip for s in dataset.sample_clips(0, 4)], seed=0))
    with pytest.raises(ValueError, match="3 clips for 4 prompts"):
        judge.score_clips(real[:3], real)
    metrics, features = judge.score_clips(real, real)
    assert features.shape == (4, judge.classifier.feature_dim) and metrics["fd_teacher"] is None
    assert all(0 <= metrics[k] <= 1 for k in ("alignment", "temporal_consistency", "mode_coverage"))


def test_the_teacher_by_steps_command_writes_its_table(world, tmp_path, capsys):
    out = tmp_path / "teacher.json"
    assert evaluate.main(["--world", str(world), "--steps", "1,2", "--prompts", "4", "--coverage", "2x2",
                          "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert [r["steps"] for r in record["rows"]] == [1, 2] and [r["nfe"] for r in record["rows"]] == [2, 4]
    assert record["rows"][1]["fd_teacher"] is None and record["rows"][0]["fd_teacher"] >= 0  # 2 steps: the reference
    assert set(record["floors"]) == {"fd_data", "alignment", "motion_accuracy", "temporal_consistency",
                                     "mode_coverage"}
    assert record["commit"] and record["eval"]["n_prompts"] == 4
    assert set(record["vae_floors"]) == set(record["floors"]) and record["vae_floors"] != record["floors"]
    out_text = capsys.readouterr().out
    assert "| 2 | 4 |" in out_text and "| real clips through the VAE | - |" in out_text


def test_the_floors_alone(world, tmp_path):
    """--steps none: no teacher rows, the real clips' floors and their floors through the VAE."""
    out = tmp_path / "floors.json"
    assert evaluate.main(["--world", str(world), "--steps", "none", "--prompts", "4", "--coverage", "2x2",
                          "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["rows"] == [] and set(record["vae_floors"]) == set(record["floors"])
    assert 0 <= record["vae_floors"]["alignment"] <= 1 and record["vae_floors"]["fd_data"] > 0


@pytest.mark.parametrize("args, words", [
    (["--world", "nowhere"], ["not a tiny-cogvideox build", "build.json"]),
    (["--steps", "0,2"], ["distinct positive integers"]),
    (["--guidance", "0.5"], ["--guidance must be 1"]),
])
def test_bad_input_is_one_line_exit_2(world, tmp_path, capsys, args, words):
    settings = {"--world": str(world), "--out": str(tmp_path / "x.json")}
    for flag, value in zip(args[::2], args[1::2]):
        settings[flag] = value
    code = evaluate.main([item for pair in settings.items() for item in pair])
    err = capsys.readouterr().err
    assert code == 2 and all(w in err for w in words) and err.count("\n") == 1
    assert not (tmp_path / "x.json").exists()
