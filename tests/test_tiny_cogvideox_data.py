"""The tiny-cogvideox world's procedural clips and their grammar (CPU, seconds)."""
import numpy as np
import pytest
import torch

from harness.worlds.tiny_cogvideox import dataset
from harness.worlds.tiny_cogvideox import grammar as g
from harness.worlds.tiny_sd15.dataset import _RGB


def test_clips_and_frames_are_deterministic_per_seed():
    a, b, c = dataset.sample_clips(3, 32), dataset.sample_clips(3, 32), dataset.sample_clips(4, 32)
    assert a == b and a != c
    clips = [s.clip for s in a]
    frames = dataset.render(clips, seed=1)
    assert frames.shape == (32, dataset.FRAMES, 3, dataset.RESOLUTION, dataset.RESOLUTION)
    assert frames.min() >= -1 and frames.max() <= 1
    assert torch.equal(frames, dataset.render(clips, seed=1))
    assert not torch.equal(frames, dataset.render(clips, seed=2))


def test_world_has_the_promised_variety():
    samples = dataset.sample_clips(0, 2000)
    objects = [o for s in samples for o in s.clip.objects]
    assert {o.shape for o in objects} == set(g.SHAPES)
    assert {o.colour for o in objects} == set(g.COLOURS)
    assert {o.motion for o in objects} == set(g.MOTIONS) == {"left", "right", "up", "down", "still"}
    assert {o.position for o in objects} == set(g.POSITIONS)
    assert {s.clip.background for s in samples} == set(g.BACKGROUNDS)
    assert {len(s.clip.objects) for s in samples} == {1, 2}
    free = [g.parse_prompt(s.caption).free_attributes for s in samples]
    assert 0.3 < np.mean([bool(f) for f in free]) < 0.8  # some prompts have several modes
    assert 0.1 < np.mean(["motion" in f for f in free]) < 0.5


def test_held_out_split_is_disjoint_from_training_captions():
    train = {s.caption for s in dataset.sample_clips(0, 3000)}
    held_out = {s.caption for s in dataset.sample_clips(0, 300, split="held_out")}
    assert not train & held_out and all(g.is_held_out(c) for c in held_out)
    with pytest.raises(ValueError, match="unknown split"):
        dataset.sample_clips(0, 1, split="test")


def test_captions_parse_back_to_their_clips():
    for s in dataset.sample_clips(1, 500):
        spec = g.parse_prompt(s.caption)
        assert spec.background == s.clip.background
        for named, o in zip(spec.objects, s.clip.objects):
            assert (named.shape, named.colour) == (o.shape, o.colour)
            assert named.motion in (None, o.motion) and named.position in (None, o.position)
    assert g.parse_prompt("a red circle standing still on a grey background").objects[0].motion == "still"
    assert g.format_prompt(g.parse_prompt(" A red  circle moving up AT THE top left on a grey background ")) == \
        "a red circle moving up at the top left on a grey background"


@pytest.mark.parametrize("prompt, words", [
    ("a red circle moving sideways on a grey background", ["cannot parse the object"]),
    ("a red circle on a pink background", ["not in the tiny-cogvideox grammar", "backgrounds"]),
    ("a red circle at the top left and a blue square at the top left on a grey background", ["same position"]),
    ("a red circle and a blue square and a green diamond on a grey background", ["3 objects"]),
])
def test_bad_prompts_name_what_is_wrong(prompt, words):
    with pytest.raises(g.GrammarError) as error:
        g.parse_prompt(prompt)
    assert all(w in str(error.value) for w in words) and "\n" not in str(error.value)


def _colour_centroids(frames: torch.Tensor, rgb) -> torch.Tensor:
    """Per frame, the centroid (x, y) of pixels within 0.12 of a colour, (FRAMES, 2)."""
    target = torch.tensor(rgb)[:, None, None] * 2 - 1
    mask = ((frames - target[None]).abs().amax(dim=1) < 0.24).float()  # (F, H, W)
    axis = torch.arange(dataset.RESOLUTION, dtype=torch.float32) + 0.5
    total = mask.sum(dim=(1, 2))
    assert (total > 40).all(), "the object is visible in every frame"
    return torch.stack([(mask.sum(1) * axis).sum(1) / total, (mask.sum(2) * axis).sum(1) / total], dim=1)


@pytest.mark.parametrize("motion", g.MOTIONS)
def test_objects_move_as_their_captions_say(motion):
    """The object's pixels move TRAVEL pixels in the named direction from the first frame to the
    last, by equal steps, and stay inside their quadrant; the background does not move."""
    clip = g.Clip((g.ClipObject("circle", "red", motion, "top right"),), "grey")
    frames = dataset.render([clip], seed=0)[0]
    centroid = _colour_centroids(frames, _RGB["red"])
    expected = torch.tensor(dataset._DIRECTION[motion], dtype=torch.float32) * dataset.TRAVEL
    torch.testing.assert_close(centroid[-1] - centroid[0], expected, atol=0.6, rtol=0)
    steps = (centroid[1:] - centroid[:-1]).norm(dim=1)
    assert (steps - steps.mean()).abs().max() < 0.4  # constant speed
    assert centroid[:, 0].min() > 32 + 6 and centroid[:, 1].max() < 32 - 6  # inside the top-right quadrant
    corner = frames[:, :, 56:, :8]  # the bottom-left corner holds only background: the same in every frame
    assert torch.equal(corner, corner[:1].expand_as(corner))


def test_paths_keep_objects_in_their_quadrants():
    """Every object's disc of radius stays within its 32-pixel quadrant in every frame, so two
    objects never meet."""
    clips = [s.clip for s in dataset.sample_clips(2, 400)]
    centres = dataset.paths(clips, seed=3)  # (n, F, 4, 2)
    quadrant = torch.tensor([dataset._QUADRANT_CENTRES[p] for p in g.POSITIONS], dtype=torch.float32)
    offset = (centres - quadrant).abs().amax(dim=(0, 1, 3))
    assert (offset + dataset.RADIUS * 1.08 <= 16).all(), offset


def test_vocabulary_covers_every_caption():
    vocabulary = set(g.vocabulary_words())
    for s in dataset.sample_clips(5, 300):
        assert set(s.caption.split()) <= vocabulary


def test_clips_for_a_prompt_fill_what_it_leaves_free():
    spec = g.parse_prompt("a red circle at the top left and a blue square on a grey background")
    rng = np.random.default_rng(0)
    clips = [dataset.clip_for_prompt(spec, rng) for _ in range(200)]
    assert all(c.objects[0].position == "top left" and c.objects[0].colour == "red" for c in clips)
    assert {c.objects[1].position for c in clips} == {"top right", "bottom left", "bottom right"}
    assert {o.motion for c in clips for o in c.objects} == set(g.MOTIONS)
    labels = dataset.clip_labels(clips[:1])
    assert labels["motion"][0, g.POSITIONS.index("top left")] == g.MOTIONS.index(clips[0].objects[0].motion)
