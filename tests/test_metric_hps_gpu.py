"""HPSv2.1 through transformers equals open_clip ViT-H-14, at full size with random weights.

open_clip's own ViT-H-14 (random, seeded) is saved in the real file layout
(<root>/xswu/HPSv2/HPS_v2.1_compressed.pt, {"state_dict": open_clip keys}) and loaded by
`harness.metrics.hps.load`; features and scores are compared with open_clip's `encode_image` /
`encode_text` on the same pixels (hps.preprocess, hpsv2's transform) and open_clip's own tokens.
The tokenizer folder is written from open_clip's BPE file in openai's vocab.json / merges.txt
format, so no download is needed. Needs a CUDA GPU and open_clip_torch (with torchvision).
"""
import copy
import gzip
import json

import numpy as np
import pytest
import torch

from harness.metrics import hps

pytestmark = pytest.mark.gpu

open_clip = None  # imported by the `models` fixture, so that collecting this file elsewhere skips nothing


def _open_clip():
    global open_clip
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    try:  # open_clip imports torchvision, which fails in more ways than ImportError without a matching torch
        import open_clip as module
    except Exception as error:  # noqa: BLE001
        pytest.skip(f"open_clip is not importable: {type(error).__name__}: {error}")
    open_clip = module

FEATURE_TOLERANCE = 1e-4  # L2 distance of unit features in float32 (about 1e-4 relative)
SCORE_TOLERANCE = 1e-3    # 100 x cosine, float32
AMP_TOLERANCE = 0.25      # 100 x cosine, both sides under float16 autocast (kernels differ)
# 100 x cosine, precision "fp16" / "bf16" (weights converted, no autocast) against "amp": sanity bounds, not
# measured (bfloat16 keeps 8 significant bits, float16 11); hps_bench records the measured difference.
HALF_TOLERANCE = {"fp16": 0.5, "bf16": 2.0}

PROMPTS = [
    "A cat with two horns on its head",
    "it's a \u201cquoted\u201d Painting &amp; more,   2 dogs!",
    " ".join(["an intricate oil painting of a lighthouse on a cliff at dusk, dramatic clouds"] * 8),  # > 77 tokens
]
IMAGES = np.random.default_rng(0).integers(0, 256, (3, 300, 512, 3), dtype=np.uint8)


def _write_clip_tokenizer(folder):
    """openai/clip-vit-large-patch14's vocab.json and merges.txt, rebuilt from open_clip's BPE file:
    byte symbols, the same with '</w>', the 48894 merges, then start- and end-of-text (49406, 49407)."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    merges = gzip.open(default_bpe()).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 49408
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    _open_clip()
    cudnn_tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # the patch convolution in true float32 on both sides
    torch.manual_seed(0)
    reference = open_clip.create_model("ViT-H-14", pretrained=None)
    with torch.no_grad():  # layer norms and attention biases start at 1 / 0: perturb them so a swap shows
        for p in reference.parameters():
            if p.ndim <= 1:
                p.add_(0.02 * torch.randn_like(p))
    root = tmp_path_factory.mktemp("weights")
    path = root / hps.HPS_REPO / hps.HPS_FILE
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": reference.state_dict()}, path)
    folder = _write_clip_tokenizer(tmp_path_factory.mktemp("tok") / "clip")
    scorer = hps.load(root, "cuda", tokenizer=str(folder), precision="fp32")
    yield reference.cuda().eval(), scorer
    torch.backends.cudnn.allow_tf32 = cudnn_tf32


def _reference_features(reference, pixels, tokens, amp=False):
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16, enabled=amp):
        img = reference.encode_image(pixels.cuda(), normalize=True)
        txt = reference.encode_text(tokens.cuda(), normalize=True)
    return img.float(), txt.float()


def test_tokens_equal_open_clips(models):
    _, scorer = models
    theirs = open_clip.get_tokenizer("ViT-H-14")(PROMPTS)
    ours = scorer.tokenize(PROMPTS)
    for row_ours, row_theirs in zip(ours, theirs):  # open_clip pads with 0, transformers with end-of-text
        end = int(row_theirs.argmax())  # open_clip's pooled position: its end-of-text token
        assert row_theirs[end] == 49407 and torch.equal(row_ours[:end + 1], row_theirs[:end + 1])
    assert theirs[2, -1] == 49407 and ours[2, -1] == 49407  # the long prompt: truncated, EOT kept


def test_features_and_scores_equal_open_clips_in_float32(models):
    reference, scorer = models
    pixels = hps.preprocess(IMAGES)
    tokens = open_clip.get_tokenizer("ViT-H-14")(PROMPTS)
    img, txt = _reference_features(reference, pixels, tokens)
    ours_img, ours_txt = scorer.image_features(pixels), scorer.text_features(scorer.tokenize(PROMPTS))
    assert (ours_img - img).norm(dim=-1).max().item() < FEATURE_TOLERANCE
    assert (ours_txt - txt).norm(dim=-1).max().item() < FEATURE_TOLERANCE
    expected = (100 * (img * txt).sum(-1)).double().cpu().numpy()
    np.testing.assert_allclose(scorer.score(IMAGES, PROMPTS, batch_size=2), expected, atol=SCORE_TOLERANCE, rtol=0)


def test_amp_scores_are_close_to_open_clip_under_autocast(models):
    reference, scorer = models
    amp = hps.HpsScorer(scorer.model, scorer.tokenizer, "cuda", precision="amp")
    assert "float16" in amp.precision
    img, txt = _reference_features(reference, hps.preprocess(IMAGES), open_clip.get_tokenizer("ViT-H-14")(PROMPTS),
                                   amp=True)
    expected = (100 * (img * txt).sum(-1)).double().cpu().numpy()
    np.testing.assert_allclose(amp.score(IMAGES, PROMPTS), expected, atol=AMP_TOLERANCE, rtol=0)


@pytest.mark.parametrize("precision, dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_half_precision_weights_score_near_amp(models, precision, dtype):
    _, scorer = models
    expected = hps.HpsScorer(scorer.model, scorer.tokenizer, "cuda", precision="amp").score(IMAGES, PROMPTS)
    half = hps.HpsScorer(copy.deepcopy(scorer.model), scorer.tokenizer, "cuda", precision=precision)
    assert {p.dtype for p in half.model.parameters()} == {dtype} and not half.amp
    assert half.attention == {"vision": "sdpa", "text": "sdpa"}
    scores = half.score(IMAGES, PROMPTS)
    np.testing.assert_allclose(scores, expected, atol=HALF_TOLERANCE[precision], rtol=0)
    on_gpu = half.score(torch.from_numpy(IMAGES).cuda(), PROMPTS)  # preprocessed on the GPU
    np.testing.assert_allclose(on_gpu, scores, atol=HALF_TOLERANCE[precision], rtol=0)
    del half
    torch.cuda.empty_cache()
