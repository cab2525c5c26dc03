"""A weights folder with every recipe's files in their real layout and key names, filled with
tiny random models of the real classes, so each recipe's loading path runs without the weights.

    root = write_weights_folder(tmp_path, RECIPES.values())
    sampler = load_sampler(recipe, weights_root=root)

Base pipelines are the tiny-sd15 world's StableDiffusionPipeline (SD-1.5 and its customised
bases), and tiny random SDXL and PixArt-alpha pipelines. Attached files are made from each
base's own config: UNet and transformer state dicts (`.bin` as torch.save, `.safetensors`),
diffusers model folders (with a weight variant for PeRFlow's delta weights) and LoRAs written by
the pipelines' own `save_lora_weights` from a peft adapter (safetensors, or torch.save for `.pt`).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from baselines.recipe import SamplerRecipe, Weights
from harness.worlds.tiny_sd15.judge import PIPELINE as TINY_SD15
from methods.common.random_pipelines import random_pixart_pipeline, random_sdxl_pipeline
from tiny_models import TINY_PIXART, TINY_SDXL, TINY_VAE

SIZES = {"sd15": 64, "sdxl": 16, "pixart": 16, "cogvideox": 16, "sd3": 16}  # native image sizes of the tiny bases
FRAMES = 5  # tiny CogVideoX clips: 5 frames, 2 latent frames
LCM_W_EMBEDDING = 256  # time_cond_proj_dim of LCM_Dreamshaper_v7's UNet
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


def tiny(recipe: SamplerRecipe) -> SamplerRecipe:
    """The recipe at the tiny base's native size."""
    from dataclasses import replace
    size = SIZES[recipe.pipeline]
    return replace(recipe, height=size, width=size, frames=FRAMES if recipe.frames else None)


def _cogvideox(out: Path) -> Path:
    """A CogVideoXPipeline of the real classes with a few thousand weights and CogVideoX-2b's
    scheduler config (v-prediction, zero terminal SNR, SNR shift 3)."""
    from diffusers import (AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline,
                           CogVideoXTransformer3DModel)
    from transformers import T5Config, T5EncoderModel

    from methods.common.random_pipelines import small_t5_tokenizer

    torch.manual_seed(0)
    tokenizer = small_t5_tokenizer()
    text = T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2,
                                   relative_attention_num_buckets=8, dropout_rate=0.0))
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4, time_embed_dim=8,
        text_embed_dim=16, num_layers=1, sample_width=4, sample_height=4, sample_frames=FRAMES, patch_size=2,
        temporal_compression_ratio=4, max_text_seq_length=226)  # the pipeline's prompt length
    vae = AutoencoderKLCogVideoX(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=2,
        block_out_channels=(8, 8, 8, 8), temporal_compression_ratio=4,
        down_block_types=("CogVideoXDownBlock3D",) * 4, up_block_types=("CogVideoXUpBlock3D",) * 4)
    scheduler = CogVideoXDDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", prediction_type="v_prediction",
        rescale_betas_zero_snr=True, snr_shift_scale=3.0, timestep_spacing="trailing", set_alpha_to_one=True,
        clip_sample=False)
    CogVideoXPipeline(tokenizer=tokenizer, text_encoder=text, vae=vae, transformer=transformer,
                      scheduler=scheduler).save_pretrained(str(out))
    return out


def _sd3(out: Path) -> Path:
    """A StableDiffusion3Pipeline of the real classes (two CLIP towers with projection, T5, MM-DiT)."""
    from diffusers import (AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel,
                           StableDiffusion3Pipeline)
    from transformers import T5Config, T5EncoderModel

    from methods.common.random_pipelines import _clip_text, _clip_tokenizer, small_t5_tokenizer

    torch.manual_seed(0)
    clip = dict(vocab_size=1000, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                max_position_embeddings=77, hidden_act="gelu", projection_dim=16)
    tokenizer, tokenizer_2, tokenizer_3 = _clip_tokenizer(), _clip_tokenizer(pad_token="!"), small_t5_tokenizer()
    pipe = StableDiffusion3Pipeline(
        transformer=SD3Transformer2DModel(sample_size=8, patch_size=2, in_channels=4, num_layers=1,
                                          attention_head_dim=8, num_attention_heads=2, joint_attention_dim=16,
                                          caption_projection_dim=16, pooled_projection_dim=32, out_channels=4),
        vae=AutoencoderKL(**{**TINY_VAE, "scaling_factor": 1.5305, "shift_factor": 0.0609}),  # SD3's VAE constants
        text_encoder=_clip_text(clip, tokenizer, projection=True), tokenizer=tokenizer,
        text_encoder_2=_clip_text(clip, tokenizer_2, projection=True), tokenizer_2=tokenizer_2,
        text_encoder_3=T5EncoderModel(T5Config(vocab_size=len(tokenizer_3), d_model=16, d_kv=4, d_ff=32,
                                               num_layers=1, num_heads=2, relative_attention_num_buckets=8,
                                               dropout_rate=0.0)),
        tokenizer_3=tokenizer_3, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0))
    pipe.save_pretrained(str(out))
    return out


def _base(pipeline: str, cache: Path) -> Path:
    folder = cache / pipeline
    if not folder.exists():
        if pipeline == "sd15":
            shutil.copytree(TINY_SD15, folder)
        elif pipeline == "sdxl":
            random_sdxl_pipeline(folder, **TINY_SDXL)
        elif pipeline == "pixart":
            random_pixart_pipeline(folder, **TINY_PIXART)
        elif pipeline == "cogvideox":
            _cogvideox(folder)
        elif pipeline == "sd3":
            _sd3(folder)
        else:
            raise NotImplementedError(f"no tiny {pipeline} base for the tests")
    return folder


def _write_base(recipe: SamplerRecipe, target: Path, cache: Path) -> None:
    shutil.copytree(_base(recipe.pipeline, cache), target)
    if recipe.guidance_mode == "embedded":  # LCM's UNet embeds w: rebuild it with time_cond_proj_dim
        from diffusers import UNet2DConditionModel
        config = UNet2DConditionModel.load_config(target / "unet")
        torch.manual_seed(1)
        UNet2DConditionModel.from_config({**config, "time_cond_proj_dim": LCM_W_EMBEDDING}).save_pretrained(target / "unet")
    if recipe.base_variant:  # weights saved as a diffusers variant: <name>.<variant>.safetensors
        for f in list(target.glob("*/*.safetensors")):
            f.rename(f.with_name(f"{f.stem}.{recipe.base_variant}{f.suffix}"))
    if recipe.assemble:  # a model_index.json naming a class diffusers lacks, as InstaFlow's does
        index = json.loads((target / "model_index.json").read_text())
        (target / "model_index.json").write_text(json.dumps({**index, "_class_name": "RectifiedFlowPipeline"}))


def _denoiser_class_and_config(recipe: SamplerRecipe, root: Path):
    from diffusers import PixArtTransformer2DModel, UNet2DConditionModel
    from diffusers import CogVideoXTransformer3DModel, SD3Transformer2DModel
    cls = {"pixart": PixArtTransformer2DModel, "cogvideox": CogVideoXTransformer3DModel,
           "sd3": SD3Transformer2DModel}.get(recipe.pipeline, UNet2DConditionModel)
    name = "unet" if cls is UNet2DConditionModel else "transformer"
    return cls, cls.load_config(root / recipe.base / name)


def _save_state(state: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if "fp16" in path.name:
        state = {k: v.half() for k, v in state.items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, str(path))


def _write_lora(recipe: SamplerRecipe, w: Weights, root: Path, seed: int) -> None:
    import diffusers
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    cls, config = _denoiser_class_and_config(recipe, root)
    torch.manual_seed(seed)
    denoiser = cls.from_config(config)
    # init_lora_weights=False draws both factors at random, so the LoRA changes the output
    denoiser.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=LORA_TARGETS, init_lora_weights=False))
    layers = get_peft_model_state_dict(denoiser)
    pipeline_cls = getattr(diffusers, {"sd15": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline",
                                       "cogvideox": "CogVideoXPipeline", "sd3": "StableDiffusion3Pipeline"}[recipe.pipeline])
    if recipe.pipeline in ("sd15", "sdxl"):  # UNet LoRAs as diffusers' training scripts save them
        layers = {"unet_lora_layers": convert_state_dict_to_diffusers(layers)}
    else:
        layers = {"transformer_lora_layers": layers}
    target = root / w.repo / (w.subfolder or "")
    pipeline_cls.save_lora_weights(str(target), weight_name=w.file, safe_serialization=w.file.endswith(".safetensors"),
                                   **layers)


def to_kohya(state: dict[str, torch.Tensor], rank: int = 4) -> dict[str, torch.Tensor]:
    """A diffusers-format UNet LoRA (`unet.<module>.lora.down.weight`) in kohya's naming
    (`lora_unet_<module with _>.lora_down.weight`, plus `.alpha`), as A1111-style releases are."""
    out = {}
    for key, value in state.items():
        module, _, kind = key.removeprefix("unet.").rpartition(".lora.")
        name = "lora_unet_" + module.replace(".", "_")
        out[f"{name}.lora_{kind.split('.')[0]}.weight"] = value
        out[f"{name}.alpha"] = torch.tensor(float(rank))
    return out


def _write_weights(recipe: SamplerRecipe, w: Weights, root: Path, seed: int) -> None:
    cls, config = _denoiser_class_and_config(recipe, root)
    if w.attach == "lora":
        return _write_lora(recipe, w, root, seed)
    torch.manual_seed(seed)
    model = cls.from_config(config)
    if w.attach == "delta":  # small weight differences, as a fine-tune's delta is
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(0.01)
    target = root / w.repo / (w.subfolder or "")
    if w.file is None:
        model.save_pretrained(str(target), variant=w.variant)
    else:
        _save_state(model.state_dict(), target / w.file)


def write_weights_folder(root: Path, recipes, cache: Path | None = None) -> Path:
    """Write every file the recipes need under root (each repository once)."""
    cache = cache or root.parent / (root.name + "-bases")
    done = set()
    for recipe in recipes:
        if recipe.base not in done and not (root / recipe.base).exists():
            _write_base(recipe, root / recipe.base, cache)
        done.add(recipe.base)
        for i, w in enumerate(recipe.weights):
            key = (w.repo, w.subfolder, w.file)
            if key not in done:
                _write_weights(recipe, w, root, seed=10 + len(done) + i)
                done.add(key)
    return root
