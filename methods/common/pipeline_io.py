"""Loading diffusers pipeline folders with errors that name the missing or broken file.

Nothing here reaches for the network: paths are local folders (or already in the Hugging
Face cache, when `local_files_only` finds them there).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open

from .errors import UserError

SD_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
SDXL_COMPONENTS = SD_COMPONENTS + ("text_encoder_2", "tokenizer_2")
PIXART_COMPONENTS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
WEIGHTED = ("unet", "transformer", "vae", "text_encoder", "text_encoder_2")  # components that hold weights


def check_pipeline_folder(path: str | Path, components=SD_COMPONENTS) -> Path:
    """Raise UserError unless `path` is a diffusers pipeline folder with these components (sub-folders
    listed in model_index.json) whose weights are readable. Sharded weights (T5's) count as weights."""
    folder = Path(path)
    if not folder.is_dir():
        raise UserError(f"pipeline folder {folder} does not exist; pass a local diffusers pipeline folder")
    index = folder / "model_index.json"
    if not index.is_file():
        raise UserError(f"{folder} is not a diffusers pipeline folder: {index} is missing")
    try:
        listed = json.loads(index.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{index} is not valid JSON ({err})") from None
    for name in components:
        if name not in listed or not (folder / name).is_dir():
            raise UserError(f"{folder} lacks the pipeline component '{name}' (folder {folder / name}); "
                            f"its model_index.json describes a {listed.get('_class_name', 'pipeline')}")
    for weights in sorted(folder.glob("*/*.safetensors")):
        _check_safetensors(weights)
    for name in WEIGHTED:
        if name in components and not any((folder / name).glob("*.safetensors")):
            raise UserError(f"no weights in {folder / name}: expected a *.safetensors file there")
    return folder


def _check_safetensors(path: Path) -> None:
    # safe_open validates the header and that the tensors' offsets match the file's length,
    # so truncated or overwritten headers fail here rather than deep inside from_pretrained.
    try:
        with safe_open(str(path), framework="pt") as f:
            list(f.keys())
    except Exception as err:  # safetensors raises several types for a corrupt file
        raise UserError(f"corrupt safetensors file {path}: {err}") from None


def load_sd_pipeline(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """A StableDiffusionPipeline from a local folder, checked first, with no safety checker."""
    folder = check_pipeline_folder(path)  # before the heavy import, so a bad path fails fast
    from diffusers import StableDiffusionPipeline

    try:
        pipe = StableDiffusionPipeline.from_pretrained(
            str(folder), dtype=dtype, safety_checker=None, feature_extractor=None,
            requires_safety_checker=False, local_files_only=True,
        )
    except (OSError, ValueError, KeyError) as err:
        raise UserError(f"cannot load the pipeline in {folder}: {err}") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)
