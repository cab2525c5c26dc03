"""Configurations of the tiny-cogvideox models: CogVideoX-2B's classes, only small; and how the teacher
sees its data (`token_ids`, as the pipeline tokenizes) and what it learns (`v_target`).

`CogVideoXPipeline` with a `CogVideoXTransformer3DModel` (3D sin-cos positions, as the 2B),
an `AutoencoderKLCogVideoX` (4 blocks: 8x spatial and 4x temporal compression, as the real one),
a T5 encoder with a Unigram tokenizer of the world's words, and CogVideoX-2b's own scheduler
config (v-prediction, zero terminal SNR, SNR shift 3). A clip of 9 frames of 64 x 64 pixels is a
latent of (F, C, H, W) = (3, 8, 8, 8); the transformer sees 2 x 2 patches, 48 video tokens
beside TEXT_LENGTH text tokens. Swapping the folder for CogVideoX-2B changes sizes, never code paths.
"""
from __future__ import annotations

import torch

from methods.common.random_pipelines import COGVIDEOX_SCHEDULER, COGVIDEOX_TRANSFORMER, COGVIDEOX_VAE, T5_XXL

from . import grammar as g
from .dataset import FRAMES, RESOLUTION

TEXT_LENGTH = 32   # tokens (CogVideoX-2B: 226); the grammar's longest caption is 25 words
TEXT_WIDTH = 64
LATENT_CHANNELS = 8  # CogVideoX-2B: 16

TRANSFORMER = dict(COGVIDEOX_TRANSFORMER, num_attention_heads=4, attention_head_dim=32, in_channels=LATENT_CHANNELS,
                   out_channels=LATENT_CHANNELS, time_embed_dim=128, text_embed_dim=TEXT_WIDTH, num_layers=6,
                   sample_width=RESOLUTION // 8, sample_height=RESOLUTION // 8, sample_frames=FRAMES,
                   max_text_seq_length=TEXT_LENGTH)
VAE = dict(COGVIDEOX_VAE, latent_channels=LATENT_CHANNELS, block_out_channels=(32, 64, 64, 128), layers_per_block=1,
           norm_num_groups=8, sample_height=RESOLUTION, sample_width=RESOLUTION, scaling_factor=1.0)
TEXT = dict(T5_XXL, d_model=TEXT_WIDTH, d_kv=16, d_ff=4 * TEXT_WIDTH, num_layers=2, num_heads=4,
            relative_attention_num_buckets=16, relative_attention_max_distance=32, dropout_rate=0.0)


def make_tokenizer():
    from methods.common.random_pipelines import small_t5_tokenizer

    return small_t5_tokenizer(g.vocabulary_words(), model_max_length=TEXT_LENGTH)


def token_ids(tokenizer, captions: list[str]) -> torch.Tensor:
    """Token ids as CogVideoXPipeline makes them (padded to max_sequence_length = TEXT_LENGTH, no mask)."""
    return tokenizer(captions, padding="max_length", max_length=TEXT_LENGTH, truncation=True,
                     add_special_tokens=True, return_tensors="pt").input_ids


def make_text_encoder(tokenizer):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(**dict(TEXT, vocab_size=len(tokenizer))))


def make_vae():
    from diffusers import AutoencoderKLCogVideoX

    return AutoencoderKLCogVideoX(**VAE)


def make_transformer():
    from diffusers import CogVideoXTransformer3DModel

    return CogVideoXTransformer3DModel(**TRANSFORMER)


def make_scheduler():
    from diffusers import CogVideoXDDIMScheduler

    return CogVideoXDDIMScheduler.from_config(COGVIDEOX_SCHEDULER)


def make_pipeline(tokenizer=None, text_encoder=None, vae=None, transformer=None):
    """A CogVideoXPipeline of the world's classes; the parts not given are freshly initialised."""
    from diffusers import CogVideoXPipeline

    tokenizer = tokenizer or make_tokenizer()
    return CogVideoXPipeline(tokenizer=tokenizer, text_encoder=text_encoder or make_text_encoder(tokenizer),
                             vae=vae or make_vae(), transformer=transformer or make_transformer(),
                             scheduler=make_scheduler())


def v_target(alphas_cumprod: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor):
    """(x_t, v) for x0 and noise at timesteps t: x_t = sqrt(a) x0 + sqrt(1 - a) eps,
    v = sqrt(a) eps - sqrt(1 - a) x0 (diffusers' get_velocity)."""
    a = alphas_cumprod[t].view(-1, *[1] * (x0.dim() - 1))
    return a.sqrt() * x0 + (1 - a).sqrt() * eps, a.sqrt() * eps - (1 - a).sqrt() * x0
