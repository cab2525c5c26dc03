"""Random-initialised pipeline folders at the real architectures' sizes, for checking that
real-size training paths fit and run on a GPU without downloading any weights.

    python -m methods.common.random_pipelines {sd15,sdxl,pixart,cogvideox-2b} OUT_FOLDER

The configs are the published ones of each model (diffusers' config.json files):

- sd15: SD-1.5 (UNet 860 M, VAE 84 M, CLIP ViT-L/14 text encoder 123 M);
- sdxl: stable-diffusion-xl-base-1.0 (UNet 2.6 B with the text_time added embedding, VAE 84 M
  with SDXL's scaling factor, CLIP ViT-L/14 123 M and OpenCLIP ViT-bigG/14 with projection 695 M);
- pixart: PixArt-XL-2-512x512 (PixArtTransformer2DModel 611 M with learned sigma, sd-vae-ft-ema
  84 M, T5-v1.1-XXL encoder 4.8 B, written in bfloat16 to halve its 19 GB);
- cogvideox-2b: THUDM/CogVideoX-2b (CogVideoXTransformer3DModel 1.69 B with 3D sin-cos position
  embeddings, AutoencoderKLCogVideoX 216 M, the same T5-v1.1-XXL in bfloat16, CogVideoXDDIMScheduler
  with v-prediction, zero terminal SNR and SNR shift 3).

No real tokenizer can be had offline. The CLIP tokenizers are the tiny-sd15 world's (its ids
fit CLIP's vocabulary), stretched to 77 tokens; the T5 tokenizer is a small Unigram one
built here from that world's words and single characters, whose ids fit T5's vocabulary.
Every builder takes config overrides, which the tests use to build tiny versions.
"""
from __future__ import annotations

import string
import sys
from pathlib import Path

import torch

from .worlds import world

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

# stabilityai/stable-diffusion-xl-base-1.0: unet/, vae/, text_encoder/, text_encoder_2/, scheduler/.
SDXL_UNET = dict(
    sample_size=128, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=(5, 10, 20), transformer_layers_per_block=(1, 2, 10), cross_attention_dim=2048,
    use_linear_projection=True, norm_num_groups=32, addition_embed_type="text_time", addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816)  # 1280 pooled + 6 time ids x 256
SDXL_VAE = dict(SD15_VAE, sample_size=1024, scaling_factor=0.13025, force_upcast=True)
SDXL_TEXT = dict(SD15_TEXT)  # CLIP ViT-L/14, as SD-1.5's
SDXL_TEXT_2 = dict(  # OpenCLIP ViT-bigG/14 text tower, with its projection
    vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
    max_position_embeddings=77, hidden_act="gelu", projection_dim=1280)
SDXL_SCHEDULER = dict(
    _class_name="EulerDiscreteScheduler", beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    num_train_timesteps=1000, prediction_type="epsilon", steps_offset=1, timestep_spacing="leading",
    interpolation_type="linear", use_karras_sigmas=False)

# PixArt-alpha/PixArt-XL-2-512x512: transformer/, vae/ (sd-vae-ft-ema), text_encoder/ (T5-v1.1-XXL), scheduler/.
PIXART_TRANSFORMER = dict(
    num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=8, num_layers=28,
    cross_attention_dim=1152, attention_bias=True, sample_size=64, patch_size=2, activation_fn="gelu-approximate",
    num_embeds_ada_norm=1000, norm_type="ada_norm_single", norm_elementwise_affine=False, norm_eps=1e-6,
    caption_channels=4096)
PIXART_VAE = dict(SD15_VAE)
T5_XXL = dict(  # google/t5-v1_1-xxl, encoder only
    vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64, feed_forward_proj="gated-gelu",
    relative_attention_num_buckets=32, relative_attention_max_distance=128, layer_norm_epsilon=1e-6,
    dropout_rate=0.1, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, tie_word_embeddings=False)
PIXART_SCHEDULER = dict(
    _class_name="DPMSolverMultistepScheduler", beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
    num_train_timesteps=1000, prediction_type="epsilon", algorithm_type="dpmsolver++", solver_order=2,
    solver_type="midpoint", lower_order_final=True, timestep_spacing="linspace", steps_offset=0)
T5_MAX_LENGTH = 120  # PixArt-alpha's prompt length (Sec. 3.1 of its paper)

# THUDM/CogVideoX-2b: transformer/, vae/, text_encoder/ (T5-v1.1-XXL), tokenizer/, scheduler/. The
# transformer's sample_frames counts pixel frames: 49 frames are 13 latent frames at 4x temporal compression.
COGVIDEOX_TRANSFORMER = dict(
    num_attention_heads=30, attention_head_dim=64, in_channels=16, out_channels=16, flip_sin_to_cos=True,
    freq_shift=0, time_embed_dim=512, text_embed_dim=4096, num_layers=30, dropout=0.0, attention_bias=True,
    sample_width=90, sample_height=60, sample_frames=49, patch_size=2, temporal_compression_ratio=4,
    max_text_seq_length=226, activation_fn="gelu-approximate", timestep_activation_fn="silu",
    norm_elementwise_affine=True, norm_eps=1e-5, spatial_interpolation_scale=1.875, temporal_interpolation_scale=1.0,
    use_rotary_positional_embeddings=False)  # the 5B and 1.5 models use RoPE; the 2B does not
COGVIDEOX_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(128, 256, 256, 512), layers_per_block=3,
    down_block_types=("CogVideoXDownBlock3D",) * 4, up_block_types=("CogVideoXUpBlock3D",) * 4, act_fn="silu",
    norm_eps=1e-6, norm_num_groups=32, temporal_compression_ratio=4, sample_height=480, sample_width=720,
    scaling_factor=1.15258426, force_upcast=True, use_quant_conv=False, use_post_quant_conv=False)
COGVIDEOX_SCHEDULER = dict(
    _class_name="CogVideoXDDIMScheduler", beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    num_train_timesteps=1000, prediction_type="v_prediction", rescale_betas_zero_snr=True, snr_shift_scale=3.0,
    timestep_spacing="trailing", set_alpha_to_one=True, clip_sample=False, steps_offset=0)


def _scheduler(config: dict):
    import diffusers

    return getattr(diffusers, config["_class_name"]).from_config(config)


def _clip_tokenizer(**changes):
    """The tiny-sd15 world's CLIP tokenizer, stretched to CLIP's 77 tokens."""
    from transformers import CLIPTokenizerFast

    return CLIPTokenizerFast.from_pretrained(str(world("tiny-sd15").PIPELINE / "tokenizer"), model_max_length=77,
                                             **changes)


def _clip_text(config: dict, tokenizer, projection: bool = False):
    """A CLIP text tower whose pooling finds this tokenizer's end-of-text id."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    model = CLIPTextModelWithProjection if projection else CLIPTextModel
    return model(CLIPTextConfig(**{**config, **ids}))


def small_t5_tokenizer(words=None, model_max_length: int = 512):
    """A T5 (Unigram) tokenizer built offline: T5's special ids (pad 0, eos 1, unk 2), `words` (default:
    the tiny-sd15 world's) as whole pieces, every printable ASCII character as a fallback, and T5's
    100 sentinels."""
    from transformers import T5Tokenizer

    pieces = {"<pad>": 0.0, "</s>": 0.0, "<unk>": 0.0, "\u2581": -2.0}
    for word in world("tiny-sd15").vocabulary() if words is None else words:
        pieces.setdefault("\u2581" + word, -1.0)
    for char in string.ascii_letters + string.digits + string.punctuation:
        pieces.setdefault("\u2581" + char, -5.0)
        pieces.setdefault(char, -6.0)
    return T5Tokenizer(vocab=list(pieces.items()), extra_ids=100, model_max_length=model_max_length)


def random_sd15_pipeline(out: str | Path, seed: int = 0) -> Path:
    """Write a StableDiffusionPipeline folder with SD-1.5's architecture and random weights."""
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    with _build_device():
        pipe = StableDiffusionPipeline(
            vae=AutoencoderKL(**SD15_VAE), text_encoder=CLIPTextModel(CLIPTextConfig(**SD15_TEXT)),
            tokenizer=_clip_tokenizer(), unet=UNet2DConditionModel(**SD15_UNET), scheduler=world("tiny-sd15").scheduler(),
            safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(str(out))
    return Path(out)


def random_sdxl_pipeline(out: str | Path, seed: int = 0, unet: dict = SDXL_UNET, vae: dict = SDXL_VAE,
                         text: dict = SDXL_TEXT, text_2: dict = SDXL_TEXT_2) -> Path:
    """Write a StableDiffusionXLPipeline folder with SDXL-base-1.0's architecture (or the given
    configs) and random weights."""
    from diffusers import AutoencoderKL, StableDiffusionXLPipeline, UNet2DConditionModel

    torch.manual_seed(seed)
    tokenizer, tokenizer_2 = _clip_tokenizer(), _clip_tokenizer(pad_token="!")  # SDXL's second pads with "!"
    with _build_device():
        pipe = StableDiffusionXLPipeline(
            vae=AutoencoderKL(**vae), text_encoder=_clip_text(text, tokenizer),
            text_encoder_2=_clip_text(text_2, tokenizer_2, projection=True), tokenizer=tokenizer,
            tokenizer_2=tokenizer_2, unet=UNet2DConditionModel(**unet), scheduler=_scheduler(SDXL_SCHEDULER),
            force_zeros_for_empty_prompt=True, add_watermarker=False)
    pipe.save_pretrained(str(out))
    return Path(out)


def random_pixart_pipeline(out: str | Path, seed: int = 0, transformer: dict = PIXART_TRANSFORMER,
                           vae: dict = PIXART_VAE, text: dict = T5_XXL,
                           text_dtype: torch.dtype = torch.bfloat16) -> Path:
    """Write a PixArtAlphaPipeline folder with PixArt-XL-2-512x512's architecture (or the given
    configs) and random weights; the T5 encoder is stored in `text_dtype`."""
    from diffusers import AutoencoderKL, PixArtAlphaPipeline, PixArtTransformer2DModel

    torch.manual_seed(seed)
    tokenizer = small_t5_tokenizer()
    text_encoder = _t5_encoder(text, tokenizer, text_dtype)
    with _build_device():
        pipe = PixArtAlphaPipeline(
            tokenizer=tokenizer, text_encoder=text_encoder,
            vae=AutoencoderKL(**vae), transformer=PixArtTransformer2DModel(**transformer),
            scheduler=_scheduler(PIXART_SCHEDULER))
    pipe.save_pretrained(str(out))
    return Path(out)


def random_cogvideox_pipeline(out: str | Path, seed: int = 0, transformer: dict = COGVIDEOX_TRANSFORMER,
                              vae: dict = COGVIDEOX_VAE, text: dict = T5_XXL, scheduler: dict = COGVIDEOX_SCHEDULER,
                              text_dtype: torch.dtype = torch.bfloat16) -> Path:
    """Write a CogVideoXPipeline folder with CogVideoX-2b's architecture (or the given configs) and
    random weights; the T5 encoder is stored in `text_dtype`."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXPipeline, CogVideoXTransformer3DModel

    torch.manual_seed(seed)
    tokenizer = small_t5_tokenizer()
    text_encoder = _t5_encoder(text, tokenizer, text_dtype)
    with _build_device():
        pipe = CogVideoXPipeline(
            tokenizer=tokenizer, text_encoder=text_encoder, vae=AutoencoderKLCogVideoX(**vae),
            transformer=CogVideoXTransformer3DModel(**transformer), scheduler=_scheduler(scheduler))
    pipe.save_pretrained(str(out))
    return Path(out)


def _t5_encoder(config: dict, tokenizer, dtype: torch.dtype):
    """A random T5 encoder built in `dtype` (T5-XXL in float32 alone is 19 GB) whose vocabulary covers the tokenizer."""
    from transformers import T5Config, T5EncoderModel

    if len(tokenizer) > config["vocab_size"]:
        raise ValueError(f"the T5 config's vocab_size {config['vocab_size']} is below the tokenizer's {len(tokenizer)}")
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with _build_device():
            return T5EncoderModel(T5Config(**config))
    finally:
        torch.set_default_dtype(default)


def _build_device() -> torch.device:
    """Where to initialise the random networks: a GPU when there is one (PixArt's folder, with
    T5-XXL's 4.8 B weights, took six minutes to build on an H100 machine's CPU cores), else the CPU.
    The weights differ between the two; they are for speed and memory only."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# Keys are also the bench's --backbone choices and the presets it runs (methods/tdm/bench.py).
BUILDERS = {"sd15": random_sd15_pipeline, "sdxl": random_sdxl_pipeline, "pixart": random_pixart_pipeline,
            "cogvideox-2b": random_cogvideox_pipeline}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in BUILDERS:
        print(f"usage: python -m methods.common.random_pipelines {{{','.join(BUILDERS)}}} OUT_FOLDER", file=sys.stderr)
        return 2
    print(BUILDERS[argv[0]](argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
