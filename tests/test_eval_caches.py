"""The evaluation's on-disk caches (real features of the judge, the teacher's reference features)
give what a fresh computation gives, and a corrupt or mismatched cache file is recomputed, never
trusted; one classifier pass gives the same features and labels as two; a cell's evaluation
time is split into its parts."""
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.evaluation import TinySD15Evaluator
from harness.scales import Scale
from harness.worlds.tiny_sd15 import dataset
from harness.worlds.tiny_sd15 import grammar as g
from harness.worlds.tiny_sd15.judge import EvalConfig, Judge, cache_key, read_features, write_features

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL = EvalConfig(n_prompts=16, coverage_prompts=2, coverage_samples=2)
TINY_SCALE = Scale("test", eval={"tiny-sd15": dict(n_prompts=8, coverage_prompts=2, coverage_samples=2)})


def only_file(folder: Path, pattern: str) -> Path:
    (path,) = folder.glob(pattern)
    return path


@pytest.fixture(scope="module")
def fresh():
    return Judge.load(SMALL)


def test_cached_real_features_equal_fresh_ones(fresh, tmp_path):
    first = Judge.load(SMALL, tmp_path)
    assert first.real_features_from == "computed"
    second = Judge.load(SMALL, tmp_path)
    assert second.real_features_from == "disk cache"
    assert torch.equal(first.real_features, fresh.real_features)
    assert torch.equal(second.real_features, fresh.real_features)
    assert second.prompts == fresh.prompts and second.coverage_prompts == fresh.coverage_prompts


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other key", "wrong shape", "not finite", "bare tensor"])
def test_a_corrupt_or_mismatched_real_features_file_is_recomputed(fresh, tmp_path, damage):
    Judge.load(SMALL, tmp_path)
    path = only_file(tmp_path, "tiny-sd15-real-features-*.pt")
    features = fresh.real_features
    if damage == "garbage":
        path.write_bytes(b"not a torch file")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "other key":
        write_features(path, "0" * 64, features)
    elif damage == "wrong shape":
        write_features(path, cache_key(SMALL), features[:-1])
    elif damage == "not finite":
        write_features(path, cache_key(SMALL), torch.full_like(features, float("nan")))
    else:
        torch.save(features, path)
    judge = Judge.load(SMALL, tmp_path)
    assert judge.real_features_from == "computed"
    assert torch.equal(judge.real_features, features)
    assert torch.equal(read_features(path, cache_key(SMALL), tuple(features.shape)), features)  # repaired


def test_the_key_follows_the_config():
    assert cache_key(SMALL) == cache_key(EvalConfig(n_prompts=16, coverage_prompts=2, coverage_samples=2))
    assert cache_key(SMALL) != cache_key(replace(SMALL, seed=1))
    assert cache_key(SMALL) != cache_key(replace(SMALL, n_prompts=17))


def test_one_classifier_pass_gives_the_features_and_labels_of_two(fresh):
    images = dataset.render([s.scene for s in dataset.sample_scenes(3, 300)], seed=3)  # more than one chunk
    features, labels = fresh.read(images)
    assert torch.equal(features, fresh.features(images))
    expected = [fresh.classifier.predict(images[i:i + 256]) for i in range(0, len(images), 256)]
    for name, value in labels.items():
        assert torch.equal(value, torch.cat([e[name] for e in expected])), name


class RealImages:
    """A stand-in sampler: real renders of the prompts, so scoring needs no diffusion model."""

    def sample(self, prompts, seeds):
        rng = np.random.default_rng(seeds[0])
        return dataset.to_uint8(dataset.render([dataset.scene_for_prompt(g.parse_prompt(p), rng) for p in prompts],
                                               seed=seeds[0]))


def test_teacher_reference_cache_is_reused_and_a_damaged_one_recomputed(tmp_path):
    first = TinySD15Evaluator(TINY_SCALE, "cpu", tmp_path)
    reference = first.reference()
    parts = first.take_parts()
    assert parts["reference_from"] == "computed" and parts["reference_seconds"] > 0
    assert parts["judge_from"] == "computed"
    first.reference()
    assert first.take_parts()["reference_from"] == "memory"

    again = TinySD15Evaluator(TINY_SCALE, "cpu", tmp_path)
    assert torch.equal(again.reference(), reference)
    parts = again.take_parts()
    assert parts["reference_from"] == "disk cache" and parts["judge_from"] == "disk cache"

    path = only_file(tmp_path, "tiny-sd15-teacher-features-*.pt")
    for damage in (lambda: path.write_bytes(b"\0" * 10), lambda: write_features(path, "another key", reference)):
        damage()
        repaired = TinySD15Evaluator(TINY_SCALE, "cpu", tmp_path)
        assert torch.equal(repaired.reference(), reference)
        assert repaired.take_parts()["reference_from"] == "computed"


def test_a_score_reports_its_parts_and_the_same_metrics_as_the_judge(tmp_path):
    evaluator = TinySD15Evaluator(TINY_SCALE, "cpu", tmp_path)
    metrics = evaluator.score(RealImages())
    parts = evaluator.take_parts()
    for key in ("judge_seconds", "reference_seconds", "sampling_seconds", "scoring_seconds"):
        assert parts[key] >= 0, key
    expected, _ = Judge.load(evaluator.config).score(RealImages(), evaluator.reference())
    assert metrics == expected
    evaluator.score(RealImages())
    later = evaluator.take_parts()
    assert later["judge_from"] == later["reference_from"] == "memory" and later["reference_seconds"] == 0


def test_the_fingerprint_names_the_classifier_by_content_not_by_place(tmp_path):
    """A result made in one checkout is valid in another: moving the classifier's files leaves the
    evaluation's fingerprint config as it was; changing one byte of them does not."""
    import shutil

    from harness.worlds.tiny_sd15.judge import CLASSIFIER

    here = TinySD15Evaluator(TINY_SCALE, "cpu", tmp_path / "cache")
    moved = shutil.copytree(CLASSIFIER, tmp_path / "elsewhere" / "classifier")
    there = TinySD15Evaluator(TINY_SCALE, "cpu", tmp_path / "cache")
    there.config = replace(there.config, classifier=str(moved))
    assert there.config.classifier != here.config.classifier
    assert there.fingerprint_config() == here.fingerprint_config()
    config = moved / "config.json"
    config.write_text(config.read_text() + " ")
    changed = TinySD15Evaluator(TINY_SCALE, "cpu", tmp_path / "cache")
    changed.config = replace(changed.config, classifier=str(tmp_path / "elsewhere" / "classifier2"))
    shutil.copytree(moved, changed.config.classifier)
    assert changed.fingerprint_config() != here.fingerprint_config()
