"""The procedural dataset and its grammar."""
import numpy as np
import pytest
import torch

from harness.worlds.tiny_sd15 import dataset
from harness.worlds.tiny_sd15 import grammar as g


def test_scenes_and_pixels_are_deterministic_per_seed():
    a, b, c = dataset.sample_scenes(3, 64), dataset.sample_scenes(3, 64), dataset.sample_scenes(4, 64)
    assert a == b
    assert a != c
    scenes = [s.scene for s in a]
    assert torch.equal(dataset.render(scenes, seed=1), dataset.render(scenes, seed=1))
    assert not torch.equal(dataset.render(scenes, seed=1), dataset.render(scenes, seed=2))


def test_world_has_the_promised_variety():
    samples = dataset.sample_scenes(0, 2000)
    objects = [o for s in samples for o in s.scene.objects]
    assert {o.shape for o in objects} == set(g.SHAPES) and len(g.SHAPES) >= 4
    assert {o.colour for o in objects} == set(g.COLOURS) and len(g.COLOURS) >= 6
    assert {o.position for o in objects} == set(g.POSITIONS) and len(g.POSITIONS) >= 4
    assert {o.size for o in objects} == set(g.SIZES) and len(g.SIZES) >= 2
    assert {s.scene.background for s in samples} == set(g.BACKGROUNDS)
    assert {len(s.scene.objects) for s in samples} == {1, 2}
    free = [g.parse_prompt(s.caption).free_attributes for s in samples]
    assert 0.2 < np.mean([bool(f) for f in free]) < 0.7  # some prompts have several modes


def test_held_out_split_is_disjoint_from_training_captions():
    train = {s.caption for s in dataset.sample_scenes(0, 3000)}
    held_out = {s.caption for s in dataset.sample_scenes(0, 300, split="held_out")}
    assert not train & held_out
    assert all(g.is_held_out(c) for c in held_out)


def test_captions_parse_back_to_their_scenes():
    for s in dataset.sample_scenes(1, 500):
        spec = g.parse_prompt(s.caption)
        assert g.format_prompt(spec) == s.caption
        assert spec.background == s.scene.background
        for named, drawn in zip(spec.objects, s.scene.objects):
            assert (named.shape, named.colour) == (drawn.shape, drawn.colour)
            assert named.size in (None, drawn.size) and named.position in (None, drawn.position)


@pytest.mark.parametrize("prompt", [
    "a pink elephant",
    "a red circle on a purple background",
    "a red circle at the middle on a grey background",
    "a red circle at the top left and a blue square at the top left on a grey background",
    "a red circle and a red circle and a red circle on a grey background",
])
def test_prompts_outside_the_grammar_are_rejected(prompt):
    with pytest.raises(g.GrammarError):
        g.parse_prompt(prompt)


def test_scene_for_prompt_keeps_named_attributes_and_fills_free_ones():
    spec = g.parse_prompt("a red circle and a large blue square at the top right on a grey background")
    rng = np.random.default_rng(0)
    scenes = [dataset.scene_for_prompt(spec, rng) for _ in range(200)]
    blue = [o for s in scenes for o in s.objects if o.colour == "blue"]
    red = [o for s in scenes for o in s.objects if o.colour == "red"]
    assert {(o.position, o.size) for o in blue} == {("top right", "large")}
    assert {o.position for o in red} == {"top left", "bottom left", "bottom right"}
    assert {o.size for o in red} == {"small", "large"}


def test_uint8_round_trip():
    images = dataset.render([s.scene for s in dataset.sample_scenes(0, 4)], seed=0)
    u8 = dataset.to_uint8(images)
    assert u8.dtype == np.uint8 and u8.shape == (4, 64, 64, 3)
    assert (dataset.from_uint8(u8) - images).abs().max() < 1 / 127
