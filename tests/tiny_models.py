"""Tiny random-initialised models of the real diffusers classes, shared by the tests."""
import torch
from diffusers import UNet2DConditionModel

from methods.common.random_pipelines import COGVIDEOX_TRANSFORMER, COGVIDEOX_VAE, T5_XXL

TEXT_WIDTH = 16  # cross-attention width of tiny_unet


def tiny_unet(**extra) -> UNet2DConditionModel:
    """A two-level SD-style UNet (8x8 latents, 4 channels), seeded, in eval mode."""
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(16, 32), attention_head_dim=4, cross_attention_dim=TEXT_WIDTH, norm_num_groups=8,
        **extra).eval()


# Tiny versions of the real-size pipeline configs in methods.common.random_pipelines (same classes,
# same block types and conditioning, a few thousand weights), for CPU training tests.
TINY_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, sample_size=16, layers_per_block=1, norm_num_groups=4,
    block_out_channels=(8, 8), down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
TINY_CLIP_TEXT = dict(vocab_size=1000, hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                      max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=8)
TINY_SDXL = dict(  # keyword arguments of random_sdxl_pipeline
    unet=dict(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=4, transformer_layers_per_block=1, cross_attention_dim=16, use_linear_projection=True,
        norm_num_groups=8, addition_embed_type="text_time", addition_time_embed_dim=4,
        projection_class_embeddings_input_dim=8 + 6 * 4),  # pooled width of text_2 + 6 time ids x 4
    vae=dict(TINY_VAE, scaling_factor=0.13025),
    text=TINY_CLIP_TEXT,                                   # 8 + 8 = the UNet's cross-attention width
    text_2=dict(TINY_CLIP_TEXT, hidden_act="gelu"))
TINY_PIXART = dict(  # keyword arguments of random_pixart_pipeline
    transformer=dict(
        num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8, num_layers=1,
        cross_attention_dim=16, attention_bias=True, sample_size=8, patch_size=2, activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000, norm_type="ada_norm_single", norm_elementwise_affine=False, norm_eps=1e-6,
        caption_channels=8),
    vae=TINY_VAE,
    text=dict(vocab_size=400, d_model=8, d_kv=4, d_ff=16, num_layers=1, num_heads=2, feed_forward_proj="gated-gelu",
              relative_attention_num_buckets=8, relative_attention_max_distance=16, dropout_rate=0.0,
              pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, tie_word_embeddings=False),
    text_dtype=torch.float32)

VIDEO_FRAMES = 9  # frames of TINY_COGVIDEOX's clips (3 latent frames)
TINY_COGVIDEOX = dict(  # keyword arguments of random_cogvideox_pipeline
    transformer=dict(COGVIDEOX_TRANSFORMER, num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4,
                     time_embed_dim=8, text_embed_dim=8, num_layers=1, sample_width=4, sample_height=4,
                     sample_frames=VIDEO_FRAMES),
    vae=dict(COGVIDEOX_VAE, latent_channels=4, layers_per_block=1, norm_num_groups=2, block_out_channels=(8, 8, 8),
             down_block_types=("CogVideoXDownBlock3D",) * 3, up_block_types=("CogVideoXUpBlock3D",) * 3),
    text=dict(T5_XXL, vocab_size=400, d_model=8, d_kv=4, d_ff=16, num_layers=1, num_heads=2,
              relative_attention_num_buckets=8, relative_attention_max_distance=16, dropout_rate=0.0),
    text_dtype=torch.float32)
