"""The teacher filmstrip: real rows drawn for each prompt, a PNG from a build, one-line errors."""
import numpy as np
import pytest

from harness.worlds.tiny_cogvideox import dataset, figures
from harness.worlds.tiny_cogvideox import grammar as g

pytestmark = pytest.mark.usefixtures("one_thread")


def test_real_rows_are_clips_of_their_prompts():
    clips = figures.real_clips(list(figures.FILMSTRIP_PROMPTS))
    assert clips.shape == (len(figures.FILMSTRIP_PROMPTS), dataset.FRAMES, dataset.RESOLUTION, dataset.RESOLUTION, 3)
    assert clips.dtype == np.uint8
    assert not np.array_equal(clips[0, 0], clips[0, -1])  # the circle moves
    for prompt in figures.FILMSTRIP_PROMPTS:  # every prompt names every motion, in the grammar
        assert all(o.motion for o in g.parse_prompt(prompt).objects)


def test_a_filmstrip_of_a_build_is_a_png(tiny_cogvideox_world, tmp_path):
    out = tmp_path / "film.png"
    assert figures.main(["--world", str(tiny_cogvideox_world), "--steps", "1", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args, words", [(["--steps", "0,4"], "--steps must be positive integers"),
                                         (["--world", "/nonexistent"], "is not a tiny-cogvideox build")])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, args, words):
    assert figures.main([*args, "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and not (tmp_path / "x.png").exists()
