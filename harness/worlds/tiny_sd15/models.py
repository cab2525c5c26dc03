"""Configurations of the tiny-sd15 models: SD-1.5's classes and block types, only small.

Swapping the pipeline folder for real SD-1.5 changes sizes, never code paths.
"""
from __future__ import annotations

from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from .dataset import RESOLUTION
from .tokenizer import MAX_LENGTH

# SD-1.5's scheduler config (runwayml/stable-diffusion-v1-5, scheduler/scheduler_config.json).
SD15_SCHEDULER_CONFIG = dict(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    num_train_timesteps=1000,
    prediction_type="epsilon",
    set_alpha_to_one=False,
    skip_prk_steps=True,
    steps_offset=1,
    clip_sample=False,
    trained_betas=None,
)

TEXT_WIDTH = 128


def make_scheduler() -> PNDMScheduler:
    return PNDMScheduler.from_config(SD15_SCHEDULER_CONFIG)


def make_text_encoder(vocab_size: int, bos_token_id: int, eos_token_id: int) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=TEXT_WIDTH,
        intermediate_size=4 * TEXT_WIDTH,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=MAX_LENGTH,
        projection_dim=TEXT_WIDTH,
        hidden_act="quick_gelu",  # as SD-1.5's CLIP ViT-L/14 text tower
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=eos_token_id,
    )
    return CLIPTextModel(config)


def make_vae() -> AutoencoderKL:
    # Two downsamplings: 64x64x3 pixels <-> 16x16x4 latents (SD-1.5: 512x512 <-> 64x64x4).
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=16,
        sample_size=RESOLUTION,
    )


def make_unet() -> UNet2DConditionModel:
    # SD-1.5's block layout (cross-attention down/up blocks around a plain lowest level, a
    # cross-attention mid block), with fewer levels and channels for a 16x16 latent.
    return UNet2DConditionModel(
        sample_size=RESOLUTION // 4,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 64, 128),
        layers_per_block=1,
        attention_head_dim=8,
        cross_attention_dim=TEXT_WIDTH,
        norm_num_groups=16,
    )
