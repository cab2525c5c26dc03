"""The shipped teacher is good at 25 steps and clearly worse at 1 and 2 steps (held-out prompts).

Reduced protocol (64 prompts, 4 x 8 coverage samples) so it runs in about a minute on 2 cores;
`python -m harness.world evaluate` runs the full one.
"""
import pytest

from baselines.base import SamplerSpec
from baselines.teacher import TeacherSampler
from harness.worlds.tiny_sd15.judge import PIPELINE, EvalConfig, Judge


@pytest.fixture(scope="module")
def scores(shipped_pipeline, classifier):
    judge = Judge(classifier, EvalConfig(n_prompts=64, coverage_prompts=4, coverage_samples=8))
    out = {}
    for steps in (1, 2, 25):
        spec = SamplerSpec(f"teacher-dpmpp-{steps}", "tiny-sd15", str(PIPELINE), "dpmpp", steps, 3.5)
        out[steps], _ = judge.score(TeacherSampler(spec, pipe=shipped_pipeline))
    out["floor"] = judge.floors()
    return out


def test_teacher_aligns_with_held_out_prompts_at_25_steps(scores):
    assert scores[25]["alignment"] >= 0.90
    assert scores["floor"]["alignment"] >= 0.97


def test_few_steps_are_clearly_worse(scores):
    # fd above its floor (real vs real), since 64 samples leave a large floor of their own
    excess = {k: scores[k]["fd_data"] - scores["floor"]["fd_data"] for k in (1, 2, 25)}
    for steps in (1, 2):
        assert scores[steps]["alignment"] < scores[25]["alignment"] - 0.1
        assert excess[steps] > 2 * excess[25], excess
