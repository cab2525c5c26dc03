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
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    vision = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=224,
        patch_size=32, projection_dim=EMBEDDING_DIM))
    scorer = AestheticScorer(_head(real), vision)
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


@pytest.mark.parametrize("shape", [(333, 517), (517, 333), (300, 200), (224, 224), (225, 1000)])
def test_the_preprocessing_is_clip_loads(shape):
    """PIL bicubic on the short side to 224 (long side int(224 * long / short)), centre crop at
    int(round(excess / 2)) as torchvision's CenterCrop: here written out with PIL alone."""
    from PIL import Image

    from harness.metrics.aesthetic import openai_clip_pixels
    from harness.metrics.hps import OPENAI_MEAN, OPENAI_STD

    image = np.random.default_rng(3).integers(0, 256, (*shape, 3), dtype=np.uint8)
    h, w = shape
    size = (224, int(224 * h / w)) if w <= h else (int(224 * w / h), 224)  # PIL's (width, height)
    pil = Image.fromarray(image).resize(size, Image.BICUBIC) if size != (w, h) else Image.fromarray(image)
    left, top = int(round((size[0] - 224) / 2)), int(round((size[1] - 224) / 2))
    crop = np.asarray(pil, dtype=np.float32)[top:top + 224, left:left + 224] / 255
    expected = (crop - np.array(OPENAI_MEAN, dtype=np.float32)) / np.array(OPENAI_STD, dtype=np.float32)
    ours = openai_clip_pixels(image[None])[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-6)
