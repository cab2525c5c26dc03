"""World metrics: Frechet distance, prompt alignment, mode coverage, and the classifier behind them."""
import numpy as np
import pytest
import torch

from harness.metrics import world as wm
from harness.worlds.tiny_sd15 import dataset
from harness.worlds.tiny_sd15 import grammar as g


def test_frechet_distance_of_a_set_with_itself_is_zero_and_of_a_shift_is_its_square():
    x = torch.randn(2000, 16, generator=torch.Generator().manual_seed(0))
    assert abs(wm.frechet_distance(x, x)) < 1e-6
    shift = torch.full((16,), 0.5)
    assert wm.frechet_distance(x, x + shift) == pytest.approx(16 * 0.25, rel=1e-6)
    # Same mean, covariance scaled by 4: Tr(S + 4S - 2*2S) = Tr(S)
    assert wm.frechet_distance(x, 2 * (x - x.mean(0)) + x.mean(0)) == pytest.approx(float(torch.cov(x.T).trace()), rel=1e-6)


def test_alignment_counts_named_attributes():
    spec = g.parse_prompt("a small red circle at the top left and a blue square on a grey background")
    perfect = {"top left": ("circle", "red", "small"), "bottom right": ("square", "blue", "large")}
    assert wm.alignment(spec, perfect, "grey") == 1.0
    # named: background, count, circle(shape, colour, size, position), square(shape, colour) = 8
    wrong_colour = {"top left": ("circle", "green", "small"), "bottom right": ("square", "blue", "large")}
    assert wm.alignment(spec, wrong_colour, "grey") == pytest.approx(7 / 8)
    missing_square = {"top left": ("circle", "red", "small")}
    assert wm.alignment(spec, missing_square, "white") == pytest.approx(4 / 8)
    assert wm.alignment(spec, {}, "grey") == pytest.approx(1 / 8)


def test_real_images_align_with_their_prompts_and_not_with_shuffled_ones(classifier):
    samples = dataset.sample_scenes(5, 300, split="held_out")
    images = dataset.render([s.scene for s in samples], seed=9)
    specs = [g.parse_prompt(s.caption) for s in samples]
    pred = classifier.predict(images)
    assert wm.prompt_alignment(pred, specs) > 0.97
    assert wm.prompt_alignment(pred, specs[1:] + specs[:1]) < 0.5


def test_mode_coverage_is_high_for_real_images_and_low_for_a_collapsed_sampler(classifier):
    spec = g.parse_prompt("a red circle on a grey background")
    rng = np.random.default_rng(0)
    real = dataset.render([dataset.scene_for_prompt(spec, rng) for _ in range(32)], seed=0)
    assert wm.mode_coverage(classifier.predict(real), [spec] * 32) > 0.95
    collapsed = real[:1].repeat(32, 1, 1, 1)
    # one position of four and one size of two: (1/4 + 1/2) / 2
    assert wm.mode_coverage(classifier.predict(collapsed), [spec] * 32) == pytest.approx(0.375)


def test_features_separate_a_shifted_distribution(classifier):
    samples = dataset.sample_scenes(0, 900)
    real = dataset.render([s.scene for s in samples], seed=0)
    with torch.no_grad():
        fa, fb = classifier.features(real[:300]), classifier.features(real[300:600])
        # Same scenes with every object made a circle: one attribute's distribution collapses.
        circles = [g.Scene(tuple(g.SceneObject("circle", o.colour, o.size, o.position) for o in s.scene.objects),
                           s.scene.background) for s in samples[600:]]
        fc = classifier.features(dataset.render(circles, seed=1))
    assert wm.frechet_distance(fa, fc) > 1.5 * wm.frechet_distance(fa, fb)
