"""A weights root with every metric's files in their real layout, filled with tiny random models of
the real classes, so that scoring runs end to end without the weights:

    <root>/openai/clip-vit-large-patch14/     a tiny CLIPModel with ViT-L/14's 768-d projection, its
                                             processor and the tiny-sd15 world's CLIP tokenizer
    <root>/xswu/HPSv2/HPS_v2.1_compressed.pt  {"state_dict": open_clip keys} of a tiny CLIPModel; load
                                             it with TINY_HPS_CONFIG (the real file is ViT-H-14)
    <root>/christophschuhmann/improved-aesthetic-predictor/<head>   the real LAION head, when the
                                             shared copy is there (it is a data file, never committed)
    <root>/clean-fid/inception-2015-12-05.pt a TorchScript stand-in with Inception's call and 2048 features
    <root>/zhwang/HPDv2/benchmark/<style>.json   a few prompts per HPSv2 benchmark style
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from harness.metrics import hps
from harness.metrics.stand_in import write_inception
from harness.metrics.aesthetic import HEAD_FILE

SHARED_HEAD = Path(__file__).resolve().parents[2] / "shared" / "weights" / "laion-aesthetic" / HEAD_FILE
CLIP_REPO = "openai/clip-vit-large-patch14"
HEAD_REPO = "christophschuhmann/improved-aesthetic-predictor"
_VIT_H14_CONFIG = hps.vit_h14_config  # kept: tests patch hps.vit_h14_config with tiny_hps_config
BENCHMARK_PROMPTS = ["a red cube on a table", "two blue spheres", "a green cone in the snow", "a purple diamond",
                     "a cat in a garden", "an old lighthouse at dusk"]


def _tokenizer():
    from transformers import CLIPTokenizerFast

    from methods.common.worlds import world

    return CLIPTokenizerFast.from_pretrained(str(world("tiny-sd15").PIPELINE / "tokenizer"), model_max_length=77)


def tiny_hps_config():
    """The HPS checkpoint's architecture in tests: hps.load(config=...), or patch hps.vit_h14_config."""
    tokenizer = _tokenizer()
    return _VIT_H14_CONFIG(
        vision=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, patch_size=32),
        text=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                  vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                  eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id),
        projection_dim=16)


def write_clip(root: Path) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTextConfig, CLIPVisionConfig

    tokenizer = _tokenizer()
    torch.manual_seed(0)
    text = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                          num_attention_heads=2, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
                          eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, projection_dim=768)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                              image_size=32, patch_size=16, projection_dim=768)  # as in the real repository's config
    model = CLIPModel(CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=768))
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                                 crop_size={"height": 32, "width": 32}),
                              tokenizer=tokenizer)
    folder = root / CLIP_REPO
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def write_metric_weights(root: Path, prompts_per_style: int = 3) -> Path:
    from transformers import CLIPModel

    write_clip(root)
    torch.manual_seed(1)
    hps_file = root / hps.HPS_REPO / hps.HPS_FILE
    hps_file.parent.mkdir(parents=True)
    torch.save({"state_dict": hps.transformers_to_openclip(CLIPModel(tiny_hps_config()).state_dict())}, hps_file)
    if SHARED_HEAD.is_file():
        (root / HEAD_REPO).mkdir(parents=True)
        shutil.copy(SHARED_HEAD, root / HEAD_REPO / HEAD_FILE)
    write_inception(root)
    benchmark = root / "zhwang" / "HPDv2" / "benchmark"
    benchmark.mkdir(parents=True)
    for s, style in enumerate(hps.STYLES):
        prompts = [f"{p}, {style}" for p in BENCHMARK_PROMPTS]
        (benchmark / f"{style}.json").write_text(json.dumps(prompts[s:] + prompts[:s]))
    return root
