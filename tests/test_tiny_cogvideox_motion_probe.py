"""The motion probe: wrong captions reverse every motion, and the gap is zero exactly when the
teacher's prediction does not depend on the words."""
import pytest
import torch

from harness.worlds.tiny_cogvideox import grammar as g
from harness.worlds.tiny_cogvideox import models
from harness.worlds.tiny_cogvideox.models import token_ids
from harness.worlds.tiny_cogvideox.motion_probe import LEVELS, MotionProbe, motion_gap, wrong_caption


def test_a_wrong_caption_reverses_each_motion_and_keeps_the_rest():
    clip = g.Clip((g.ClipObject("circle", "red", "left", "top left"), g.ClipObject("square", "blue", "still",
                                                                                    "bottom right")), "grey")
    wrong = g.parse_prompt(wrong_caption(clip))
    assert [o.motion for o in wrong.objects] == ["right", "left"]
    assert [(o.shape, o.colour, o.position) for o in wrong.objects] == \
        [("circle", "red", "top left"), ("square", "blue", "bottom right")] and wrong.background == "grey"


class _Teacher(torch.nn.Module):
    """v = -x_t scaled by a number read from the text (or not)."""

    def __init__(self, reads_text: bool):
        super().__init__()
        self.reads_text = reads_text

    def forward(self, hidden_states, encoder_hidden_states, timestep, return_dict=False):
        scale = encoder_hidden_states.mean(dim=(1, 2)).view(-1, 1, 1, 1, 1) if self.reads_text else 0.5
        return (-hidden_states * scale,)


def _probe():
    tokenizer = models.make_tokenizer()
    clips = [g.Clip((g.ClipObject("circle", "red", m, "top left"),), "grey") for m in ("left", "up")]
    g_ = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 3, models.LATENT_CHANNELS, 8, 8, generator=g_)
    return MotionProbe(latents, token_ids(tokenizer, [c.caption() for c in clips]),
                       token_ids(tokenizer, [wrong_caption(c) for c in clips]),
                       torch.randn(latents.shape, generator=g_))


@pytest.mark.parametrize("reads_text", [False, True])
def test_the_gap_is_zero_only_for_a_teacher_that_ignores_the_words(reads_text):
    torch.manual_seed(0)
    text_encoder = torch.nn.Embedding(64, 4)  # ids -> (n, L, 4); different words, different means
    alphas = models.make_scheduler().alphas_cumprod.float()
    gaps = motion_gap(_Teacher(reads_text), lambda ids: (text_encoder(ids),), _probe(), alphas)
    assert set(gaps) == {f"t{t}" for t in LEVELS}
    if reads_text:
        assert all(abs(v) > 1e-4 for v in gaps.values()), gaps
    else:
        assert all(v == 0.0 for v in gaps.values()), gaps


def test_the_plot_reads_a_builds_gaps_and_counts_the_steps_it_continued(tmp_path, capsys):
    import json

    from harness.worlds.tiny_cogvideox import motion_probe

    record = {"commit": "abc1234", "stages": {"teacher": {"steps_done": 10, "motion_gap": [
        {"step": 0, "t900": 0.01, "t500": 0.02}, {"step": 10, "t900": 0.3, "t500": 0.5}]}},
        "continued_from": {"stages": {"teacher": {"steps_done": 7}}, "continued_from": {
            "stages": {"teacher": {"steps_done": 5}}}}}
    (tmp_path / "build.json").write_text(json.dumps(record))
    assert motion_probe._earlier_teacher_steps(record["continued_from"]) == 12
    assert motion_probe.main([str(tmp_path / "build.json"), "--out", str(tmp_path / "gap.png")]) == 0
    assert (tmp_path / "gap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    del record["stages"]["teacher"]["motion_gap"]
    (tmp_path / "old.json").write_text(json.dumps(record))
    assert motion_probe.main([str(tmp_path / "old.json"), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "logged no motion gap" in err and err.count("\n") == 1 and not (tmp_path / "x.png").exists()
