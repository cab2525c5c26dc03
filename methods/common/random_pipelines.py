"""Random-initialised pipeline folders at the real architectures' sizes, for checking that
real-size training paths fit and run on a GPU without downloading any weights.

    python -m methods.common.random_pipelines sd15 OUT_FOLDER

The configs are SD-1.5's own (UNet 860 M, VAE 84 M, CLIP ViT-L/14 text encoder 123 M). The
tokenizer is the tiny-sd15 world's (its ids fit CLIP's vocabulary), stretched to 77 tokens.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, cross_attention_dim=768,
    block_out_channels=(320, 640, 1280, 1280), attention_head_dim=8, norm_num_groups=32,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"))
SD15_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, sample_size=512, layers_per_block=2, norm_num_groups=32,
    block_out_channels=(128, 256, 512, 512), scaling_factor=0.18215,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
SD15_TEXT = dict(
    vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
    max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768)


def random_sd15_pipeline(out: str | Path, seed: int = 0) -> Path:
    """Write a StableDiffusionPipeline folder with SD-1.5's architecture and random weights."""
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizerFast

    from harness.worlds.tiny_sd15.judge import PIPELINE
    from harness.worlds.tiny_sd15.models import make_scheduler

    torch.manual_seed(seed)
    tokenizer = CLIPTokenizerFast.from_pretrained(str(PIPELINE / "tokenizer"), model_max_length=77)
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL(**SD15_VAE), text_encoder=CLIPTextModel(CLIPTextConfig(**SD15_TEXT)),
        tokenizer=tokenizer, unet=UNet2DConditionModel(**SD15_UNET), scheduler=make_scheduler(),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(str(out))
    return Path(out)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "sd15":
        print("usage: python -m methods.common.random_pipelines sd15 OUT_FOLDER", file=sys.stderr)
        return 2
    print(random_sd15_pipeline(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
