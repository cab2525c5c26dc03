"""The tiny-cogvideox world's metrics on readings whose answers are known (no classifier needed)."""
import numpy as np
import pytest

from harness.metrics import video_world as vm
from harness.worlds.tiny_cogvideox import dataset
from harness.worlds.tiny_cogvideox import grammar as g


def _perfect(clips):
    return vm.labels_as_predictions(dataset.clip_labels(clips), dataset.FRAMES)


@pytest.fixture(scope="module")
def samples():
    return dataset.sample_clips(0, 200)


def test_a_perfect_reading_scores_one_everywhere(samples):
    pred = _perfect([s.clip for s in samples])
    specs = [g.parse_prompt(s.caption) for s in samples]
    assert vm.prompt_alignment(pred, specs) == 1.0
    assert vm.motion_accuracy(pred, specs) == 1.0
    assert vm.temporal_consistency(pred) == 1.0


def test_wrong_motions_cost_exactly_their_share(samples):
    """Clips whose two objects differ in shape or colour (else the greedy matching may pair an
    object with its twin's reading, whose wrong motion is its own)."""
    samples = [s for s in samples if len({(o.shape, o.colour) for o in s.clip.objects}) == len(s.clip.objects)]
    clips = [s.clip for s in samples]
    specs = [g.parse_prompt(s.caption) for s in samples]
    pred = _perfect(clips)
    pred["motion"] = (pred["motion"] + 1) % len(g.MOTIONS)  # every object moves the wrong way
    assert vm.motion_accuracy(pred, specs) == 0.0
    named = sum(2 + sum(2 + (o.motion is not None) + (o.position is not None) for o in s.objects) for s in specs)
    motions = [sum(o.motion is not None for o in s.objects) for s in specs]
    per_clip = [1 - m / (2 + sum(2 + (o.motion is not None) + (o.position is not None) for o in s.objects))
                for m, s in zip(motions, specs)]
    assert vm.prompt_alignment(pred, specs) == pytest.approx(np.mean(per_clip))
    assert named > 0 and vm.temporal_consistency(pred) == 1.0  # motion is no per-frame reading


def test_a_colour_that_flickers_in_one_frame_is_inconsistent():
    clip = g.Clip((g.ClipObject("circle", "red", "left", "top left"), g.ClipObject("square", "blue", "up",
                                                                                   "bottom right")), "grey")
    pred = _perfect([clip])
    pred["colour"][0, 4, 0] = g.COLOURS.index("green")  # frame 4 reads the circle as green
    assert vm.temporal_consistency(pred) == pytest.approx(2 / 3)  # background and square steady; circle not
    spec = g.parse_prompt("a red circle moving left and a blue square moving up on a grey background")
    assert vm.prompt_alignment(pred, [spec]) == 1.0  # the majority over frames is still red
    pred["background"][0, 0] = 0 if pred["background"][0, 1] else 1
    assert vm.temporal_consistency(pred) == pytest.approx(1 / 3)


def test_mode_coverage_counts_the_free_values_seen():
    spec = g.parse_prompt("a red circle on a grey background")  # motion and quadrant free
    rng = np.random.default_rng(0)
    clips = [dataset.clip_for_prompt(spec, rng) for _ in range(60)]
    assert vm.mode_coverage(_perfect(clips), [spec] * 60) == 1.0
    one = [g.Clip((g.ClipObject("circle", "red", "left", "top left"),), "grey")] * 10
    assert vm.mode_coverage(_perfect(one), [spec] * 10) == pytest.approx((1 / 5 + 1 / 4) / 2)
    wrong_colour = [g.Clip((g.ClipObject("circle", "blue", "left", "top left"),), "grey")] * 10
    assert vm.mode_coverage(_perfect(wrong_colour), [spec] * 10) == 0.0


def test_a_missing_object_loses_its_attributes():
    spec = g.parse_prompt("a red circle moving left at the top left and a blue square on a grey background")
    clip = g.Clip((g.ClipObject("circle", "red", "left", "top left"),), "grey")  # the square is missing
    pred = _perfect([clip])
    # named: background, count, circle (shape, colour, motion, quadrant), square (shape, colour) = 8
    assert vm.prompt_alignment(pred, [spec]) == pytest.approx(5 / 8)
    assert vm.motion_accuracy(pred, [spec]) == 1.0
    assert vm.motion_accuracy(_perfect([g.Clip((), "grey")]), [spec]) is None
