"""SDXL (StableDiffusionXLPipeline): a UNet with added conditions, two CLIP text encoders.

The UNet's cond has, besides the concatenated hidden states of both encoders, the pooled
embedding of the second ("text_embeds") and the six micro-conditions ("time_ids"):
original size, crop corner and target size. TDM trains on uncropped squares at the
training resolution, so original = target = (resolution, resolution) and crop = (0, 0),
as the pipeline's defaults at that size. The unconditional branch is the pipeline's own:
zeros when the teacher's config says `force_zeros_for_empty_prompt` (SDXL-base does), else
the encoding of "". Step conditioning (TDM-unify) uses the UNet's `time_cond_proj_dim`,
as for SD-1.5.
"""
from __future__ import annotations

import torch

from methods.common.adapters import SDXLUNetAdapter
from methods.common.errors import UserError
from methods.common.pipeline_io import SDXL_COMPONENTS

from .pipeline_backbone import PipelineBackbone


class SDXLBackbone(PipelineBackbone):
    PIPELINE = "StableDiffusionXLPipeline"
    COMPONENTS = SDXL_COMPONENTS
    ADAPTER = SDXLUNetAdapter
    TEXT_ENCODERS = ("text_encoder", "text_encoder_2")
    LOAD_KWARGS = dict(add_watermarker=False)

    def _time_ids(self, n: int) -> torch.Tensor:
        """(n, 6) micro-conditions: original size, crop (0, 0), target size, all at the training resolution."""
        size, pooled_width = (self.resolution, self.resolution), self.pipe.text_encoder_2.config.projection_dim
        try:
            ids = self.pipe._get_add_time_ids(size, (0, 0), size, dtype=torch.float32,
                                              text_encoder_projection_dim=pooled_width)
        except ValueError as err:  # the UNet's added-embedding width does not match the encoders
            raise UserError(f"the SDXL pipeline in {self.folder} is inconsistent: {err}") from None
        return ids.to(self.device).expand(n, -1)

    def _cond(self, embeds: torch.Tensor, pooled: torch.Tensor) -> dict:
        return {"encoder_hidden_states": embeds, "text_embeds": pooled, "time_ids": self._time_ids(len(embeds))}

    def _encode(self, prompts: list[str]) -> dict:
        embeds, _, pooled, _ = self.pipe.encode_prompt(prompts, device=self.device, do_classifier_free_guidance=False)
        return self._cond(embeds, pooled)

    def _encode_uncond(self) -> dict:
        _, embeds, _, pooled = self.pipe.encode_prompt([""], device=self.device, do_classifier_free_guidance=True)
        return self._cond(embeds, pooled)
