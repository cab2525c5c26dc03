"""The aesthetic score (harness.metrics.aesthetic) against the LAION improved predictor's `simple_inference.py`
path (`aesthetic_parity`), and where clip.load's and transformers' centre crops start (`crop_offsets`)."""
from __future__ import annotations

import gc
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from .clip_folder import write_clip_l14_folder
from .common import (SHARED_HEAD, _device_wrapped, _quiet, _result, _row, _versions, difference,
                     perturb_small_parameters, random_images)
from .tolerances import AES_FP16_TOLERANCE, AES_TOLERANCE

# smooth, noise, smooth, noise; 333x517 resizes to 224x347, whose crop starts at 62 (clip.load) or 61 (transformers)
AES_SHAPES = ((512, 512), (768, 512), (333, 517), (300, 200))


class _UpstreamMLP(torch.nn.Module):
    """simple_inference.py's MLP (its pytorch_lightning base and training steps left out)."""

    def __init__(self, input_size: int = 768):
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(input_size, 1024), torch.nn.Dropout(0.2), torch.nn.Linear(1024, 128),
            torch.nn.Dropout(0.2), torch.nn.Linear(128, 64), torch.nn.Dropout(0.1), torch.nn.Linear(64, 16),
            torch.nn.Linear(16, 1))

    def forward(self, x):
        return self.layers(x)


def _upstream_normalized(a, axis=-1, order=2):
    """simple_inference.py's `normalized`, verbatim in effect (numpy, in the embedding's dtype)."""
    l2 = np.atleast_1d(np.linalg.norm(a, order, axis))
    l2[l2 == 0] = 1
    return a / np.expand_dims(l2, axis)


def _openai_transform(n_px: int = 224):
    """openai/CLIP clip/clip.py `_transform(n_px)`: what `clip.load` returns as `preprocess`."""
    from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Normalize, Resize, ToTensor

    return Compose([Resize(n_px, interpolation=InterpolationMode.BICUBIC), CenterCrop(n_px),
                    lambda image: image.convert("RGB"), ToTensor(),
                    Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))])


@_device_wrapped
def aesthetic_parity(head: str | Path | None = None, shapes=AES_SHAPES, seed: int = 0, device: str = "cpu") -> dict:
    """The project's AestheticScorer (both image-processor backends) against simple_inference.py's path,
    on one seeded random OpenAI-architecture ViT-L/14 and the real LAION head (a seeded random head of the
    same shape where the real one is not found, recorded). On CUDA also against that path in its own GPU
    precision (clip.load's float16 weights)."""
    started = time.time()
    cuda = torch.device(device).type == "cuda"
    import open_clip
    from PIL import Image
    from transformers import CLIPImageProcessor, CLIPImageProcessorPil

    from harness.metrics.aesthetic import HEAD_SHA256, AestheticHead, AestheticScorer, openai_clip_pixels

    head = Path(head) if head is not None else SHARED_HEAD
    images = random_images(shapes, seed, smooth=[i % 2 == 0 for i in range(len(shapes))])

    # The reference: OpenAI CLIP ViT-L/14 (open_clip's ViT-L-14-quickgelu is its architecture), clip.load's
    # preprocess on PIL images, encode_image, numpy L2 normalisation, the MLP.
    torch.manual_seed(seed)
    with _quiet():
        model, _, openclip_preprocess = open_clip.create_model_and_transforms("ViT-L-14-quickgelu", pretrained=None)
    perturb_small_parameters(model, seed=seed + 1)
    model.eval()
    mlp = _UpstreamMLP(768)
    if head.is_file():
        state = torch.load(head, map_location="cpu", weights_only=True)
        head_note = f"the real LAION head {head.name} (sha256 {HEAD_SHA256[:12]}...)"
    else:
        torch.manual_seed(seed + 2)
        state = _UpstreamMLP(768).state_dict()
        head_note = f"a seeded random head of the LAION head's shape: {head} was not found"
    mlp.load_state_dict(state)
    mlp.eval()
    transform = _openai_transform(224)
    pil_images = [Image.fromarray(im) for im in images]
    ref_pixels = torch.stack([transform(p) for p in pil_images])
    openclip_pixels = torch.stack([openclip_preprocess(p) for p in pil_images])
    model.to(device)
    mlp.to(device)
    with torch.no_grad():
        image_features = model.encode_image(ref_pixels.to(device))  # float32 here (clip.load: float16 on a GPU)
        ref_unit = _upstream_normalized(image_features.cpu().detach().numpy())
        ref_scores = mlp(torch.from_numpy(ref_unit).float().to(device)).squeeze(-1).cpu()
    if cuda:  # simple_inference.py on CUDA: clip.load's float16 model (LayerNorms in float32), float16 numpy
        with _quiet():  # normalisation, the MLP in float32 (`.type(torch.cuda.FloatTensor)`)
            model16 = open_clip.create_model("ViT-L-14-quickgelu", pretrained=None, precision="fp16", device=device)
        model16.load_state_dict(model.state_dict())
        model16.eval()
        with torch.no_grad():
            features16 = model16.encode_image(ref_pixels.to(device).half())  # clip's encode_image: image.type(dtype)
            ref16_unit = _upstream_normalized(features16.cpu().detach().numpy())
            ref16_scores = mlp(torch.from_numpy(ref16_unit).to(device).float()).squeeze(-1).cpu()
        fp16_note = {"embedding_dtype": str(features16.dtype), "normalised_dtype": str(ref16_unit.dtype),
                     "layer_norm_weights": str(model16.visual.ln_pre.weight.dtype),
                     "conv1_weights": str(model16.visual.conv1.weight.dtype)}
        del model16
        model.cpu()

    rows, details = [], {}
    with tempfile.TemporaryDirectory(prefix="aes-parity-") as tmp:
        folder = write_clip_l14_folder(Path(tmp) / "openai" / "clip-vit-large-patch14", model.state_dict())
        del model
        gc.collect()
        if head.is_file():
            scorer = AestheticScorer.load(head, folder, device)
        else:
            ours_head = AestheticHead()
            ours_head.load_state_dict(state)
            scorer = AestheticScorer(ours_head, _vision(folder), device, head_path=None, clip_name=str(folder))
        # The project's scorer as it is (its own copy of clip.load's preprocessing), then, for the record,
        # transformers' two image processors in its place: why the scorer does not use them.
        # Images whose centre crop starts one pixel apart under those processors: torchvision's CenterCrop
        # (clip.load) offsets by int(round(excess / 2)), transformers' centre crop by excess // 2.
        offset = [crop_offsets(h, w)[0] != crop_offsets(h, w)[1] for h, w in shapes]
        groups = {"": [i for i, o in enumerate(offset) if not o],
                  ", crop 1 px off": [i for i, o in enumerate(offset) if o]}
        sides = {"project": (lambda ims: openai_clip_pixels(ims, 224), {"": list(range(len(images)))}),
                 "transformers torchvision": (_processor_pixels(CLIPImageProcessor.from_pretrained(str(folder))),
                                              groups),
                 "transformers pil": (_processor_pixels(CLIPImageProcessorPil.from_pretrained(str(folder))), groups)}
        for name, (pixels_of, side_groups) in sides.items():
            our_pixels = torch.cat([pixels_of(im[None]) for im in images])
            with torch.no_grad():
                embeds = scorer.vision(pixel_values=our_pixels.to(scorer.device)).image_embeds.float()
                ours = scorer.head(embeds).double().cpu().numpy()
                embeds = embeds.cpu()
            if name == "project":  # the scorer's own call gives the same numbers
                details["project_score_call_max_abs"] = float(np.abs(np.concatenate(
                    [scorer.score(im[None]) for im in images]) - ours).max())
            our_unit = torch.nn.functional.normalize(embeds, dim=-1)
            for suffix, index in side_groups.items():
                if not index:
                    continue
                label = name + suffix
                row = _row(label, AES_TOLERANCE[label], pixels=difference(our_pixels[index], ref_pixels[index]),
                           features=difference(our_unit[index], ref_unit[index]),
                           scores=difference(ours[index], ref_scores[index]))
                row["n"] = len(index)
                row["images"] = [f"{shapes[i][0]}x{shapes[i][1]}" for i in index]
                row["per_image"] = [{"pixels": difference(our_pixels[i], ref_pixels[i])["max_abs"],
                                     "features": difference(our_unit[i], ref_unit[i])["max_abs"],
                                     "score": float(ours[i] - ref_scores[i])} for i in index]
                rows.append(row)
            details[f"{name}_scores"] = [float(x) for x in ours]
            if cuda and name == "project":
                row = _row("project vs clip.load on a GPU (float16)", AES_FP16_TOLERANCE,
                           pixels=difference(our_pixels, ref_pixels),
                           features=difference(our_unit, torch.from_numpy(ref16_unit.astype(np.float32))),
                           scores=difference(ours, ref16_scores))
                row["n"] = len(images)
                row["images"] = [f"{h}x{w}" for h, w in shapes]
                row["per_image"] = [{"features": difference(our_unit[i], ref16_unit[i].astype(np.float32))["max_abs"],
                                     "score": float(ours[i] - ref16_scores[i])} for i in range(len(images))]
                fp16_rows = [row]
        del scorer
        gc.collect()
    if cuda:
        rows += fp16_rows
        details["clip_load_fp16"] = {**fp16_note, "reference_scores": [float(x) for x in ref16_scores],
                                     "vs_reference_float32": {
                                         "features": difference(ref16_unit.astype(np.float32), ref_unit),
                                         "scores": difference(ref16_scores, ref_scores)}}

    details.update({
        "reference_scores": [float(s) for s in ref_scores], "score_spread": float(ref_scores.max() - ref_scores.min()),
        "head": head_note,
        "openclip_preprocess_equals_clip_transform": difference(openclip_pixels, ref_pixels)["max_abs"] == 0.0,
        "images": [f"{h}x{w} {'smooth' if i % 2 == 0 else 'noise'}" for i, (h, w) in enumerate(shapes)],
        "weights": f"open_clip ViT-L-14-quickgelu, seeded random (torch.manual_seed({seed})), layer norms and biases "
                   "perturbed by 0.1 x N(0, 1); mapped to transformers with harness.metrics.hps's open_clip mapping",
        "precision": ("float32 on CPU on both sides (clip.load keeps float16 weights on a GPU)" if not cuda else
                      "float32 on the GPU on both sides, TF32 off (rows as on the CPU); row 'project vs clip.load on a "
                      "GPU (float16)': the reference as simple_inference.py runs on CUDA, open_clip precision='fp16' "
                      "(convert_weights_to_lp, LayerNormFp32: clip.load's convert_weights and LayerNorm), the pixels "
                      "cast to float16 as clip's encode_image does, numpy normalisation of the float16 embedding, the "
                      "MLP in float32; the project's scorer in float32"),
        "project": "AestheticScorer.load(head, <folder laid out as openai/clip-vit-large-patch14>): its own "
                   "openai_clip_pixels preprocessing; rows 'transformers ...' put transformers' image processors "
                   "in its place, for the record",
    })
    return _result(
        "aes",
        "christophschuhmann/improved-aesthetic-predictor simple_inference.py: clip.load('ViT-L/14') preprocess "
        "(openai/CLIP clip.py _transform: PIL bicubic short side 224, centre crop, ToTensor, normalise) and "
        "encode_image, numpy normalized(), MLP(768)",
        _versions("open_clip_torch", "torchvision", "transformers"),
        "pixels, unit image embeddings and scores of "
        f"{len(images)} uint8 images ({', '.join(details['images'])}); the project's scorer with its own "
        "preprocessing, and for the record with transformers' torchvision and PIL image processors instead",
        len(images), rows,
        "The project's preprocessing is clip.load's, pixel for pixel; what remains is float32 rounding in the ViT "
        "(SDPA vs nn.MultiheadAttention). For the record, transformers' processors: "
        "PIL backend: the same PIL bicubic resize as clip.load, so only float32 rounding in the ViT (SDPA vs "
        "nn.MultiheadAttention). torchvision backend (transformers 5's default where torchvision is installed): "
        "torch's antialiased bicubic uses PIL's kernel (a = -0.5) but rounds back to uint8 differently, by at most "
        "one level. Both backends crop at excess // 2 where clip.load's CenterCrop uses round(excess / 2) (half to "
        "even): for some non-square sizes (here 333x517 -> 224x347) the crop starts one pixel apart, which moves "
        "every pixel and is the largest difference. The main .venv (no torchvision) gets the PIL backend."
        + (" On the GPU, clip.load's own precision (float16 weights and activations, a float16 normalised embedding) "
           "against the project's float32: float16 rounding through 24 layers." if cuda else ""),
        details, started, device)


def crop_offsets(height: int, width: int, size: int = 224) -> tuple[tuple[int, int], tuple[int, int]]:
    """(top, left) of the centre crop after the short side is resized to `size`: clip.load's (torchvision
    Resize + CenterCrop: int(round(excess / 2.0)), Python's round half to even) and transformers' (excess // 2)."""
    short, long = sorted((height, width))
    resized_long = int(size * long / short)
    resized = (size, resized_long) if height <= width else (resized_long, size)
    excess = [r - size for r in resized]
    return tuple(int(round(e / 2.0)) for e in excess), tuple(e // 2 for e in excess)


def _vision(folder: Path):
    from transformers import CLIPVisionModelWithProjection

    return CLIPVisionModelWithProjection.from_pretrained(str(folder), local_files_only=True)


def _processor_pixels(processor):
    """uint8 (n, H, W, 3) -> pixels through a transformers image processor."""
    return lambda images: processor(images=list(images), return_tensors="pt")["pixel_values"]
