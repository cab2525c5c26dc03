"""The aesthetic score's head against its published golden values (the real LAION head, read
from the shared weights folder and never committed), and the scorer end to end on a tiny random
CLIP vision tower with ViT-L/14's 768-d projection."""
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.metrics.aesthetic import EMBEDDING_DIM, HEAD_FILE, AestheticHead, AestheticScorer
from methods.common.errors import UserError

SHARED_HEAD = Path(__file__).resolve().parents[2] / "shared" / "weights" / "laion-aesthetic" / HEAD_FILE
needs_head = pytest.mark.skipif(not SHARED_HEAD.is_file(), reason=f"needs the real head at {SHARED_HEAD}")


@needs_head
def test_the_real_head_gives_its_golden_values():
    head = AestheticHead.load(SHARED_HEAD).double()
    zero = torch.zeros(1, EMBEDDING_DIM, dtype=torch.float64)
    ones = torch.ones(1, EMBEDDING_DIM, dtype=torch.float64)
    assert float(head(zero)) == pytest.approx(5.236646, abs=1e-6)  # the bias b = f(0)
    assert float(head(ones)) == pytest.approx(4.883285, abs=1e-6)  # normalised inside: the scale is irrelevant
    assert float(head(7 * ones)) == pytest.approx(4.883285, abs=1e-6)


@needs_head
def test_the_head_is_checked_by_its_sha256(tmp_path):
    bad = tmp_path / HEAD_FILE
    data = bytearray(SHARED_HEAD.read_bytes())
    data[-1] ^= 1  # one bit of the file changed
    bad.write_bytes(bytes(data))
    with pytest.raises(UserError, match="sha256"):
        AestheticHead.load(bad)
    with pytest.raises(UserError, match="improved-aesthetic-predictor"):
        AestheticHead.load(tmp_path / "nowhere.pth")


def _head(real: bool) -> AestheticHead:
    """The real head, or a random one of its architecture where the shared copy is absent: the
    scorer's path is tested either way; the bound below holds for any head (|w| taken from it)."""
    if real:
        return AestheticHead.load(SHARED_HEAD)
    torch.manual_seed(1)
    return AestheticHead().eval()


@pytest.mark.parametrize("real", [pytest.param(True, marks=needs_head), False])
def test_the_scorer_runs_end_to_end_on_a_tiny_random_clip(real):
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    vision = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=224,
        patch_size=32, projection_dim=EMBEDDING_DIM))
    scorer = AestheticScorer(_head(real), vision, CLIPImageProcessor())
    images = np.random.default_rng(0).integers(0, 256, (5, 96, 128, 3), dtype=np.uint8)
    scores = scorer.score(images, batch_size=2)
    assert scores.shape == (5,) and np.isfinite(scores).all()
    with torch.no_grad():  # in eval mode the head is one affine map w.e + b: |score - b| <= |w| on unit e
        eye = torch.eye(EMBEDDING_DIM)
        bias = float(scorer.head.layers(torch.zeros(1, EMBEDDING_DIM)))
        w_norm = float((scorer.head.layers(eye).squeeze(-1) - bias).norm())
    assert w_norm == pytest.approx(17.996, abs=1e-3) if real else w_norm > 0
    assert np.all(np.abs(scores - bias) <= w_norm + 1e-4)
    assert np.ptp(scores) > 0  # different images, different scores
    assert scorer.score(images[3:4])[0] == pytest.approx(scores[3], abs=1e-5)  # batch-independent
    embedding = scorer.embed(images[:1])
    expected = scorer.head.layers(embedding / embedding.norm())  # the head sees the unit embedding
    assert scores[0] == pytest.approx(float(expected), abs=1e-5)
