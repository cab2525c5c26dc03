"""Tiny random-initialised models of the real diffusers classes, shared by the tests."""
import torch
from diffusers import UNet2DConditionModel

TEXT_WIDTH = 16  # cross-attention width of tiny_unet


def tiny_unet(**extra) -> UNet2DConditionModel:
    """A two-level SD-style UNet (8x8 latents, 4 channels), seeded, in eval mode."""
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(16, 32), attention_head_dim=4, cross_attention_dim=TEXT_WIDTH, norm_num_groups=8,
        **extra).eval()
