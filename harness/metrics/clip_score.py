"""CLIP score: 100 x cos(image embedding, text embedding) per image-prompt pair.

The TDM paper cites Hessel et al. for its CLIP score without naming a model; its values (31-36)
imply the 100 x cosine scale. The default is OpenAI CLIP ViT-L/14, as torchmetrics' is, and the
model is recorded with every score; any local `CLIPModel` folder can be used instead.

One deliberate difference from torchmetrics: prompts are tokenised with truncation to the
model's 77 tokens, which keeps the end-of-text token that CLIP pools at. torchmetrics tokenises
without truncation and then slices the ids, which drops that token for long prompts (many HPS
benchmark prompts are longer) and pools at a word instead. Scores are not clamped at 0 (torchmetrics
clamps the mean of a batch; a per-image score below 0 is kept as it is).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from methods.common.errors import UserError

CLIP_MODEL = "openai/clip-vit-large-patch14"


class ClipScorer:
    def __init__(self, model, processor, device: str = "cpu", name: str = CLIP_MODEL):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.processor = processor
        self.name = name

    @classmethod
    def load(cls, clip: str | Path = CLIP_MODEL, device: str = "cpu") -> "ClipScorer":
        from transformers import CLIPModel, CLIPProcessor

        try:
            model = CLIPModel.from_pretrained(str(clip), local_files_only=True)
            processor = CLIPProcessor.from_pretrained(str(clip), local_files_only=True)
        except OSError:
            raise UserError(f"CLIP {clip} is neither a local folder nor in the Hugging Face cache; download it "
                            "on a connected machine and pass its folder") from None
        return cls(model, processor, device, name=str(clip))

    @torch.no_grad()
    def text_embeds(self, prompts: list[str]) -> torch.Tensor:
        max_length = self.model.config.text_config.max_position_embeddings
        tokens = self.processor.tokenizer(prompts, padding=True, truncation=True, max_length=max_length,
                                          return_tensors="pt").to(self.device)
        return _projected(self.model.get_text_features(**tokens))

    @torch.no_grad()
    def image_embeds(self, images: np.ndarray) -> torch.Tensor:
        pixels = self.processor.image_processor(images=list(images), return_tensors="pt")["pixel_values"]
        return _projected(self.model.get_image_features(pixel_values=pixels.to(self.device)))

    @torch.no_grad()
    def score(self, images: np.ndarray, prompts: list[str], batch_size: int = 32) -> np.ndarray:
        """uint8 (n, H, W, 3) images and their n prompts -> (n,) scores, 100 x cosine."""
        if len(images) != len(prompts):
            raise UserError(f"{len(images)} images but {len(prompts)} prompts")
        out = []
        for i in range(0, len(prompts), batch_size):
            img = _unit(self.image_embeds(images[i:i + batch_size]))
            txt = _unit(self.text_embeds(prompts[i:i + batch_size]))
            out.append(100 * (img * txt).sum(-1).double().cpu())
        return torch.cat(out).numpy()


    def describe(self) -> dict:
        from .aesthetic import describe_processor

        return {"metric": "clip", "scale": "100 x cosine, not clamped", "model": self.name,
                "tokenisation": "truncated to the model's context, end-of-text token kept",
                "preprocessing": describe_processor(self.processor.image_processor),
                "precision": "float32", "device": str(self.device)}


def load(weights_root: Path | None, device: str = "cpu", clip: str | None = None) -> ClipScorer:
    """The registry's loader: `clip` a folder or repo id (default OpenAI ViT-L/14), found locally."""
    from .aesthetic import clip_folder

    return ClipScorer.load(clip if clip and Path(clip).is_dir() else clip_folder(weights_root, clip or CLIP_MODEL),
                           device)


def _projected(output) -> torch.Tensor:
    """The projected embedding: transformers 4 returns it, transformers 5 an output whose pooler holds it."""
    return (output if isinstance(output, torch.Tensor) else output.pooler_output).float()


def _unit(embedding: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(embedding, dim=-1)
