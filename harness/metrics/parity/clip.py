"""The CLIP score (harness.metrics.clip_score) against torchmetrics' CLIPScore (`clip_parity`)."""
from __future__ import annotations

import gc
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from .clip_folder import write_clip_l14_folder
from .common import _capture, _device_wrapped, _quiet, _result, _row, _versions, difference, random_images
from .tolerances import CLIP_TOLERANCE

CLIP_SHAPES = ((512, 512), (768, 512), (300, 200), (224, 224))
CLIP_PROMPTS = ("a red cube on a table", "two blue spheres", "a photo of a cat in a garden",
                "an old lighthouse at dusk")


class _Transformers4Features(torch.nn.Module):
    """A CLIPModel whose get_image_features / get_text_features return the projected embedding tensor, as
    transformers 4 did. torchmetrics 1.9.0 calls `.norm` on what they return, which fails on transformers 5's
    output object (Lightning-AI/torchmetrics#3407); this is the fix merged upstream (#3408): `.pooler_output`."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.config = model.config

    @staticmethod
    def _tensor(output):
        return output if isinstance(output, torch.Tensor) else output.pooler_output

    def get_image_features(self, *args, **kwargs):
        return self._tensor(self.model.get_image_features(*args, **kwargs))

    def get_text_features(self, *args, **kwargs):
        return self._tensor(self.model.get_text_features(*args, **kwargs))


@_device_wrapped
def clip_parity(shapes=CLIP_SHAPES, prompts=CLIP_PROMPTS, seed: int = 0, device: str = "cpu") -> dict:
    """The project's ClipScorer against torchmetrics' CLIPScore on one folder laid out as
    openai/clip-vit-large-patch14 (its real config, seeded random weights), short prompts only; float32 on
    `device` on both sides."""
    started = time.time()
    import torchmetrics.multimodal.clip_score as clip_score_module
    from torchmetrics.multimodal import CLIPScore
    from transformers import CLIPModel, CLIPProcessor

    from harness.metrics.clip_score import ClipScorer

    _clip_score_update = clip_score_module._clip_score_update

    images = random_images(shapes, seed + 10, smooth=[i % 2 == 0 for i in range(len(shapes))])
    prompts = list(prompts)
    with tempfile.TemporaryDirectory(prefix="clip-parity-") as tmp:
        # Random CLIP towers give cosines of at most a few hundredths, mostly of one sign per model; where they
        # are negative, CLIPScore's clamp at 0 hides its mean. With seed 0 they are positive (the mean row checks).
        folder = write_clip_l14_folder(Path(tmp) / "openai" / "clip-vit-large-patch14", seed=seed)
        gc.collect()
        scorer = ClipScorer.load(folder, device)
        image_store, text_store = [], []
        _capture(scorer, "image_embeds", image_store)
        _capture(scorer, "text_embeds", text_store)
        ours = np.concatenate([scorer.score(im[None], [p]) for im, p in zip(images, prompts)])
        max_tokens = max(len(scorer.processor.tokenizer(p)["input_ids"]) for p in prompts)
        del scorer
        gc.collect()

        def model_and_processor():  # what torchmetrics does for an "openai/..." path, plus the transformers-5 fix
            return (_Transformers4Features(CLIPModel.from_pretrained(str(folder)).eval()),
                    CLIPProcessor.from_pretrained(str(folder)))

        with _quiet():
            metric = CLIPScore(model_name_or_path=model_and_processor).to(device)
        # uint8 CHW, as its docs; _clip_score_update runs the model on the images' device
        tensors = [torch.from_numpy(im).permute(2, 0, 1).contiguous().to(device) for im in images]
        feature_store = {"image": [], "text": []}
        _capture(metric.model, "get_image_features", feature_store["image"])
        _capture(metric.model, "get_text_features", feature_store["text"])
        # The public API, once: update() sums the per-pair scores of clip_score._clip_score_update, compute()
        # returns max(mean, 0). The per-pair scores (before the sum) are recorded on the way through.
        pairs = []

        def recorded(*args, **kwargs):
            out = _clip_score_update(*args, **kwargs)
            pairs.append(out[0].detach().double().cpu())
            return out

        clip_score_module.__dict__["_clip_score_update"] = recorded
        try:
            metric.update(tensors, prompts)
        finally:
            clip_score_module.__dict__["_clip_score_update"] = _clip_score_update
        ref_mean = float(metric.compute())
        ref_pairs = pairs[0]
        ref_img = torch.nn.functional.normalize(feature_store["image"][0], dim=-1)
        ref_txt = torch.nn.functional.normalize(feature_store["text"][0], dim=-1)
        del metric
        gc.collect()
    ref_pairs = ref_pairs.numpy()
    our_img = torch.nn.functional.normalize(torch.cat(image_store), dim=-1)
    our_txt = torch.nn.functional.normalize(torch.cat(text_store), dim=-1)
    positive = ref_pairs > 0
    row = _row("per pair, unclamped", CLIP_TOLERANCE,
               features=difference(torch.cat([our_img, our_txt]), torch.cat([ref_img, ref_txt])),
               scores=difference(ours, ref_pairs))
    row["positive_pairs"] = difference(ours[positive], ref_pairs[positive]) | {"count": int(positive.sum())}
    mean_row = _row("mean, clamped at 0", {"scores": CLIP_TOLERANCE["scores"]},
                    scores=difference([max(float(ours.mean()), 0.0)], [ref_mean]))
    mean_row["reference_mean_positive"] = ref_mean > 0  # else the clamp hides the comparison
    mean_row["within_tolerance"] = mean_row["within_tolerance"] and ref_mean > 0
    return _result(
        "clip",
        "torchmetrics multimodal CLIPScore(model_name_or_path=<callable>): functional/multimodal/clip_score.py "
        "_clip_score_update (processor(images=..., padding=True), processor(text=..., padding=True), "
        "get_image_features / get_text_features, 100 x cosine), compute() = max(mean, 0)",
        _versions("torchmetrics", "transformers", "torchvision"),
        f"unit image and text embeddings and per-pair scores of {len(images)} uint8 images "
        f"({', '.join(f'{h}x{w}' for h, w in shapes)}) with short prompts (at most {max_tokens} tokens), and "
        "CLIPScore's clamped mean against the clamped mean of the project's scores",
        len(images), [row, mean_row],
        "the same transformers model, processor and pixels on both sides; the project tokenises with truncation "
        "and scores one pair per call, torchmetrics pads the batch without truncation (identical ids for prompts "
        "under 77 tokens), so only float32 rounding differs. The conventions differ beyond this test: torchmetrics "
        "slices long prompts' ids (losing <|endoftext|>) and clamps the mean at 0; the project truncates and does "
        "not clamp.",
        {"reference_scores": [float(s) for s in ref_pairs], "our_scores": [float(s) for s in ours],
         "reference_mean_clamped": ref_mean,
         "model": "transformers CLIPModel of openai/clip-vit-large-patch14's real config (ViT-L/14, quick_gelu, "
                  "legacy text eos_token_id=2), seeded random weights (parity.random_state: layer norms and biases "
                  "away from 1 / 0)",
         "torchmetrics_shim": "get_*_features return .pooler_output (torchmetrics#3407, fixed upstream in #3408 "
                              "after 1.9.0); without it CLIPScore 1.9.0 fails on transformers 5",
         "processor": "CLIPProcessor from the folder (preprocessor_config.json verbatim from openai/clip-vit-large-"
                      "patch14; transformers' torchvision backend here) on both sides",
         "precision": "float32 on CPU" if torch.device(device).type == "cpu" else
                      "float32 on the GPU on both sides (torchmetrics keeps the model's float32), TF32 off"},
        started, device)
