"""CLIP score on a tiny random CLIPModel: 100 x the cosine of the projected embeddings, per pair,
batch-independent, and long prompts truncated so that the end-of-text token is the one pooled."""
import numpy as np
import pytest
import torch

from harness.metrics.clip_score import ClipScorer
from methods.common.errors import UserError


@pytest.fixture(scope="module")
def scorer():
    from transformers import (CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTextConfig,
                              CLIPTokenizerFast, CLIPVisionConfig)

    from methods.common.worlds import world

    tokenizer = CLIPTokenizerFast.from_pretrained(str(world("tiny-sd15").PIPELINE / "tokenizer"), model_max_length=77)
    torch.manual_seed(0)
    text = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                          num_attention_heads=2, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
                          eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                              image_size=64, patch_size=16)
    model = CLIPModel(CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=16))
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 64},
                                                                 crop_size={"height": 64, "width": 64}),
                              tokenizer=tokenizer)
    return ClipScorer(model, processor, name="tiny-random-clip")


IMAGES = np.random.default_rng(0).integers(0, 256, (4, 80, 64, 3), dtype=np.uint8)
PROMPTS = ["a red cube", "two blue spheres on a white background", "a green cone", "a small purple diamond"]


def test_the_score_is_100_times_the_cosine_per_pair(scorer):
    scores = scorer.score(IMAGES, PROMPTS, batch_size=3)
    img = torch.nn.functional.normalize(scorer.image_embeds(IMAGES), dim=-1)
    txt = torch.nn.functional.normalize(scorer.text_embeds(PROMPTS), dim=-1)
    assert scores == pytest.approx((100 * (img * txt).sum(-1)).numpy(), abs=1e-4)
    assert np.all(np.abs(scores) <= 100) and np.ptp(scores) > 0
    assert scorer.score(IMAGES[2:3], PROMPTS[2:3])[0] == pytest.approx(scores[2], abs=1e-4)  # batch-independent


def test_a_long_prompt_is_truncated_keeping_its_end_token(scorer):
    """torchmetrics slices the ids of a long prompt to 77 and loses the end-of-text token CLIP pools
    at; truncation keeps it, so the embedding is that of the prompt's first 76 tokens plus the end."""
    tokenizer = scorer.processor.tokenizer
    long = " ".join(["a red cube"] * 60)  # far over 77 tokens
    ids = tokenizer([long], truncation=True, max_length=77, return_tensors="pt")["input_ids"]
    assert ids.shape[1] == 77 and int(ids[0, -1]) == tokenizer.eos_token_id
    sliced = tokenizer([long], return_tensors="pt")["input_ids"][:, :77]  # torchmetrics' ids
    assert int(sliced[0, -1]) != tokenizer.eos_token_id
    ours = scorer.text_embeds([long])
    with torch.no_grad():
        kept = scorer.model.get_text_features(input_ids=ids)
        lost = scorer.model.get_text_features(input_ids=sliced)
    kept, lost = [x if isinstance(x, torch.Tensor) else x.pooler_output for x in (kept, lost)]
    assert torch.allclose(ours, kept, atol=1e-5)
    assert not torch.allclose(ours, lost, atol=1e-3)


def test_mismatched_counts_are_a_user_error(scorer):
    with pytest.raises(UserError, match="4 images but 3 prompts"):
        scorer.score(IMAGES, PROMPTS[:3])
