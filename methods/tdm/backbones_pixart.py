"""PixArt-alpha (PixArtAlphaPipeline): a PixArtTransformer2DModel with learned-sigma output
channels (the adapter keeps the epsilon half), conditioned on T5 embeddings.

Prompts are encoded by the pipeline's `encode_prompt` (120 T5 tokens and their attention
mask; captions are not cleaned, `clean_caption=False`). The unconditional branch is the
pipeline's: the encoding of "" with its own mask. Transformers with micro-conditions (the
1024-px multi-aspect models) also get "resolution" and "aspect_ratio" in pixels, as the
pipeline builds them; TDM trains on squares, so the aspect ratio is 1.

The transformer has no input for the step count K, so TDM-unify with step conditioning is
refused (the paper trains PixArt only at 4 steps). LoRA adapters are injected with peft and
exported in peft's format, since PixArtAlphaPipeline has no `load_lora_weights`.
"""
from __future__ import annotations

from pathlib import Path

import torch

from methods.common.adapters import PixArtAdapter
from methods.common.pipeline_io import PIXART_COMPONENTS

from .pipeline_backbone import PipelineBackbone


class PixArtBackbone(PipelineBackbone):
    PIPELINE = "PixArtAlphaPipeline"
    COMPONENTS = PIXART_COMPONENTS
    DENOISER = "transformer"
    ADAPTER = PixArtAdapter
    STEP_CONDITIONING = False
    LORA_HOW_TO_LOAD = ("peft.PeftModel.from_pretrained(pipe.transformer, <student folder>/lora).merge_and_unload() "
                        "on the teacher's pipeline")

    def _latent_multiple(self, denoiser) -> int:
        return denoiser.config.patch_size

    def _cond(self, embeds: torch.Tensor, mask: torch.Tensor) -> dict:
        cond = {"encoder_hidden_states": embeds, "encoder_attention_mask": mask}
        if self.pipe.transformer.use_additional_conditions:
            n = len(embeds)
            cond["resolution"] = torch.tensor([[float(self.resolution)] * 2], device=self.device).expand(n, -1)
            cond["aspect_ratio"] = torch.ones(n, 1, device=self.device)
        return cond

    def _encode(self, prompts: list[str]) -> dict:
        embeds, mask, _, _ = self.pipe.encode_prompt(prompts, do_classifier_free_guidance=False, device=self.device,
                                                     clean_caption=False)
        return self._cond(embeds, mask)

    def _encode_uncond(self) -> dict:
        _, _, embeds, mask = self.pipe.encode_prompt([""], do_classifier_free_guidance=True, negative_prompt="",
                                                     device=self.device, clean_caption=False)
        return self._cond(embeds, mask)

    def _save_lora(self, model, lora_dir: Path) -> None:
        """peft's adapter format: adapter_config.json and adapter_model.safetensors."""
        from peft.utils import get_peft_model_state_dict
        from safetensors.torch import save_file

        lora_dir.mkdir(parents=True, exist_ok=True)
        model.peft_config["default"].save_pretrained(str(lora_dir))
        state = {f"base_model.model.{k}": v.contiguous() for k, v in get_peft_model_state_dict(model).items()}
        save_file(state, str(lora_dir / "adapter_model.safetensors"))
