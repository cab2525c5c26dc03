"""Parity of the project's metric scorers with the reference implementations, on CPU or a CUDA GPU,
with seeded RANDOM weights of the real architectures (no model weights can be downloaded where this
runs; the one real weight file used is the LAION aesthetic head, read from where it lies).

    python -m harness.metrics.parity --out results/metrics/parity-cpu.json [--only hps,aes,clip,fid]
                                     [--vbench-scripts DIR]   # adds VBench's aggregation
    python -m harness.metrics.parity --device cuda --only hps,aes,clip,fid [--aes-head FILE] \
                                     --out results/metrics/parity-h200.json

Each comparison is one function returning a dict (`metric`, `reference` and `versions`, `compared`,
`n`, the largest differences of pixels, features and scores, the `tolerance` claimed for each, and
an `explanation` of where a difference comes from); `rows` holds one entry per variant compared
(the aesthetic scorer, and for the record transformers' two image processors in its place, with
and without a one-pixel crop offset; the CLIP score's per-pair scores and clamped mean), each with its own tolerances. A difference
is {"max_abs": max |ours - ref|, "max_rel": max |ours - ref| / max |ref|}: relative to the largest
reference magnitude, since an element-wise ratio is meaningless for values near 0.

- `hps_parity`: HPS v2.1 (harness.metrics.hps, transformers CLIPModel) against hpsv2 1.2.0's own
  code: its vendored open_clip ViT-H-14 built as `evaluation.initialize_model` builds it, its
  `preprocess_val` on PIL images, its tokenizer, and `evaluate_benchmark`'s
  `diag(100 * image_features @ text_features.T)`; float32 on CPU on both sides (hpsv2 runs under
  CUDA AMP, float16, on a GPU, where agreement is looser).
- `aesthetic_parity`: the LAION improved predictor (harness.metrics.aesthetic) against its
  `simple_inference.py` path: OpenAI CLIP's `clip.load` preprocess and `encode_image` (open_clip's
  ViT-L-14-quickgelu, the OpenAI architecture), numpy L2 normalisation, then the MLP, with the real
  head. The project's side reads a transformers folder laid out as openai/clip-vit-large-patch14
  and preprocesses as clip.load does; transformers 5's two image processors are measured beside it.
- `clip_parity`: CLIP score (harness.metrics.clip_score) against torchmetrics' `CLIPScore` on the
  same transformers folder, on short prompts where the two conventions agree.
- `fid_parity`: FID (harness.metrics.fid, clean mode) against clean-fid's `compute_fid` folder to
  folder, both on the scripted stand-in network of harness/metrics/stand_in.py (clean-fid's
  TorchScript call interface), since the Inception weights cannot be downloaded: the resize,
  batching, statistics and Frechet distance are compared, the Inception weights are not.
- `vbench_parity`: VBench's aggregation (harness.metrics.vbench) against the repository's
  `scripts/cal_final_score.py`, given a copy of that folder (it is not in VBench's wheel).

On CUDA (`--device cuda`; the CPU comparisons are unchanged), each comparison runs both sides on
the GPU: float32 with TF32 off (`torch.backends.cuda.matmul.allow_tf32` and
`torch.backends.cudnn.allow_tf32` False while it runs) unless said otherwise, so that the float32
tolerances of the CPU still apply; and where the reference's own GPU precision is not float32, a
row in that precision beside it:
- HPS: row "amp", both sides as hpsv2 scores on a GPU: its model (float32 weights) under
  `torch.cuda.amp.autocast()`, the 100 x cosine taken inside autocast (so a float16 number, as
  `evaluate_benchmark` does), against `hps.load(..., precision="amp")` (float16 autocast, float32 cosine);
  row "amp, GPU preprocessing": the same, the project's side preprocessing uint8 tensors on the GPU
  (`score`'s fast path) against hpsv2's `preprocess_val` on PIL images on the CPU; row "fp32": both
  sides in float32 on the GPU.
- aesthetic: the CPU's rows in float32 on the GPU, plus "project vs clip.load on a GPU (float16)":
  the reference as `simple_inference.py` runs on CUDA (clip.load keeps float16 weights there: open_clip
  `precision="fp16"`, the same conversion with float32 LayerNorms; numpy normalisation of the float16
  embedding; the MLP in float32) against the project's float32 scorer.
- CLIP score and FID: float32 on both sides (torchmetrics' and clean-fid's own precision there, less TF32).
The `device` of each result is where it ran ("vbench" is float64 arithmetic, on the CPU).

The reference packages live in .venv-metrics (scripts/setup_metrics.sh) and are imported inside
the functions, so this module imports without them.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import gzip
import hashlib
import importlib.util
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from methods.common.errors import UserError

REPOSITORY = Path(__file__).resolve().parents[2]
SHARED_HEAD = REPOSITORY.parent / "shared" / "weights" / "laion-aesthetic" / "sac+logos+ava1-l14-linearMSE.pth"
PACKAGES = ("torchvision", "open_clip_torch", "torchmetrics", "clean-fid", "hpsv2")
COMPARISONS = ("hps", "aes", "clip", "fid")

# OpenAI CLIP's BPE merges; open_clip_torch ships it, hpsv2 1.2.0's wheel lacks it (tgxs002/HPSv2#30),
# hpsv2x 1.2.0's sdist ships this same file (sha256 checked against both).
BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
BPE_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"

# openai/clip-vit-large-patch14's preprocessor_config.json, verbatim (the form users download).
OPENAI_L14_PREPROCESSOR = {
    "crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor",
    "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3, "size": 224,
}

HPS_SHAPES = ((224, 224), (300, 512), (517, 263), (640, 640))  # square at 224 (no resize), wide, tall+odd, square
HPS_PROMPTS = (
    "A cat with two horns on its head",
    "it\u2019s a \u201cquoted\u201d Painting &amp; more,   2 dogs!",  # ftfy, HTML entities, whitespace
    "a watercolor fox in the snow, highly detailed",
    " ".join(["an intricate oil painting of a lighthouse on a cliff at dusk, dramatic clouds"] * 8),  # > 77 tokens
)
# smooth, noise, smooth, noise; 333x517 resizes to 224x347, whose crop starts at 62 (clip.load) or 61 (transformers)
AES_SHAPES = ((512, 512), (768, 512), (333, 517), (300, 200))
CLIP_SHAPES = ((512, 512), (768, 512), (300, 200), (224, 224))
CLIP_PROMPTS = ("a red cube on a table", "two blue spheres", "a photo of a cat in a garden",
                "an old lighthouse at dusk")
FID_SHAPES = ((64, 64), (96, 128), (300, 200), (512, 384), (299, 299))

# Tolerances claimed (absolute; pixels in normalised units, features of unit vectors, scores on each metric's
# scale), each from what was measured on a 2-core CPU with torch 2.14.1, transformers 5.25.0, in float32:
# - HPS: pixels 0 (hpsv2's torchvision resize and hps.preprocess call the same torch interpolate), features
#   7.5e-8, scores 2.0e-6: rounding in the last bits over 32 + 24 layers (SDPA vs nn.MultiheadAttention).
#   Claimed about 100x (features) and 50x (scores, the 1e-4 target where the computation is the same) above,
#   for other CPUs and BLAS builds.
HPS_TOLERANCE = {"pixels": 1e-6, "features": 1e-5, "scores": 1e-4}
# - Aesthetic, PIL backend: pixels 0 (the same PIL resize and crop as clip.load), features 7.6e-8, scores 4.8e-7.
#   torchvision backend: pixels at most one uint8 level (1 / 255 / 0.2613 = 0.0150 after normalisation: torch's
#   antialiased bicubic has PIL's kernel but rounds to uint8 differently), features 2.2e-5, scores 1.5e-4 (the
#   real head's |w| = 18 scales embedding differences); claimed about 10x above. Where the centre crop starts
#   one pixel apart (every pixel moves, no pixel tolerance claimed): features 1.3e-3, scores 4.4e-3 with these
#   random weights; claimed about 4x above (how far real CLIP weights move is not measured here).
AES_TOLERANCE = {
    "project": {"pixels": 1e-6, "features": 1e-5, "scores": 1e-4},
    # For the record: transformers' image processors in the scorer's place (it does not use them).
    "transformers pil": {"pixels": 1e-6, "features": 1e-5, "scores": 1e-4},
    "transformers pil, crop 1 px off": {"features": 5e-3, "scores": 0.02},
    "transformers torchvision": {"pixels": 0.016, "features": 2e-4, "scores": 2e-3},
    "transformers torchvision, crop 1 px off": {"features": 5e-3, "scores": 0.02},
}
# On CUDA (not yet measured when set: claimed from float16's unit roundoff, 2^-11 = 4.9e-4, to be tightened
# from the first record, results/metrics/parity-h200.json):
# - HPS "fp32" on the GPU, TF32 off: HPS_TOLERANCE (float32 kernels differ from the CPU's in summation order only).
# - HPS "amp": the same pixels (the CPU's preprocessing, pixels 0); both sides run every matmul in float16 with
#   float32 accumulation, but in other kernels (packed vs split q/k/v, MultiheadAttention's SDPA call vs
#   transformers'), so a last-bit float32 difference flips a float16 rounding: differences of about 5e-4
#   relative per op, not 1e-7, through 32 + 24 residual layers, about 1e-3 relative on the unit features (at most
#   a few 1e-4 per element of a 1024-d unit vector). hpsv2 also rounds its score to float16 (100 x cosine inside
#   autocast): steps of 2^-6 = 0.016 for scores in [16, 32), as real HPS scores are; 0.002 at the random model's
#   |score| < 4. Claimed: features 2e-3, scores 0.05 (3 float16 steps at real scores): the 1e-4 asked for is
#   out of reach of a float16 computation on either side; the "fp32" row shows the same code within it.
HPS_AMP_TOLERANCE = {"pixels": 1e-6, "features": 2e-3, "scores": 0.05}
# - HPS "amp, GPU preprocessing": torch's antialiased bicubic on CUDA vs on the CPU, float32 arithmetic in other
#   orders: about 1e-6 in [0, 1] (4e-6 after normalisation); claimed 1e-4 on pixels, the amp tolerances beyond.
HPS_GPU_PREPROCESSING_TOLERANCE = {"pixels": 1e-4, "features": 2e-3, "scores": 0.05}
# - Aesthetic "project vs clip.load on a GPU (float16)": the reference in float16 weights and activations (LayerNorm
#   in float32) and a float16 numpy normalisation (element steps of 1.2e-4 near 0.2), the project in float32:
#   fp16 CLIP embeddings are typically within 1e-3 to 5e-3 (L2) of float32 ones; the real head is linear with
#   |w| = 18, so scores move by 18 x (the L2 difference) at worst, a few 1e-3 typically. Claimed features 2e-3
#   (per element), scores 0.05.
AES_FP16_TOLERANCE = {"pixels": 1e-6, "features": 2e-3, "scores": 0.05}
# - CLIP score: the same model and processor on both sides; features 1e-7, per-pair scores 5.6e-6, the clamped
#   mean 1e-6 (batching and padding only); claimed as for HPS.
CLIP_TOLERANCE = {"features": 1e-5, "scores": 1e-4}
# - FID: features bitwise equal (0.0); FID 4.6e-7 at FID 1.57 (scipy's sqrtm vs eigh on rank-8 covariances).
FID_TOLERANCE = {"features": 1e-6, "scores": 1e-4}
# On CUDA, the same float32 tolerances (TF32 off), FID's features at 1e-5: the same network on the same batches,
# but cuDNN may choose another convolution algorithm per call.
FID_CUDA_TOLERANCE = {"features": 1e-5, "scores": 1e-4}


# --- shared helpers ---------------------------------------------------------------------------------

def difference(ours, reference) -> dict:
    """{"max_abs", "max_rel"} of two arrays of one shape; max_rel is relative to max |reference|."""
    a, b = (np.asarray(x.detach().double().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
            for x in (ours, reference))
    if a.shape != b.shape:
        raise ValueError(f"compared arrays differ in shape: {a.shape} and {b.shape}")
    if a.size == 0:
        return {"max_abs": 0.0, "max_rel": 0.0}
    max_abs = float(np.abs(a - b).max())
    scale = float(np.abs(b).max())
    return {"max_abs": max_abs, "max_rel": max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))}


def _row(label: str, tolerance: dict, **diffs) -> dict:
    """One variant compared: its differences (pixels / features / scores; None where not compared),
    the absolute tolerance claimed for each, and whether every one is within it."""
    row = {"label": label, **diffs, "tolerance": tolerance}
    row["within_tolerance"] = all(diffs[k] is not None and diffs[k]["max_abs"] <= t for k, t in tolerance.items())
    return row


def _result(metric: str, reference: str, versions: dict, compared: str, n: int, rows: list[dict],
            explanation: str, details: dict, started: float, device: str | torch.device = "cpu") -> dict:
    """The comparison's record; top-level pixels / features / scores are the largest over its rows."""
    def worst(key):
        found = [r[key] for r in rows if r.get(key) is not None]
        if not found:
            return None
        return {"max_abs": max(d["max_abs"] for d in found), "max_rel": max(d["max_rel"] for d in found)}

    return {"metric": metric, "reference": reference, "versions": versions, "compared": compared, "n": n,
            "pixels": worst("pixels"), "features": worst("features"), "scores": worst("scores"),
            "tolerance": {r["label"]: r["tolerance"] for r in rows},
            "within_tolerance": all(r["within_tolerance"] for r in rows),
            "explanation": explanation, "rows": rows, "details": details,
            **_device_fields(device), "seconds": round(time.time() - started, 1)}


def _device_fields(device: str | torch.device) -> dict:
    """{"device": "cpu"} as before; on CUDA the device index and the GPU's name, and the TF32 flags it ran under."""
    device = torch.device(device)
    if device.type != "cuda":
        return {"device": str(device)}
    index = device.index if device.index is not None else torch.cuda.current_device()
    return {"device": f"cuda:{index}", "device_name": torch.cuda.get_device_name(index),
            "tf32": {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32}}


@contextlib.contextmanager
def float32_on(device: str | torch.device):
    """On CUDA, true float32 matmuls and convolutions while a comparison runs (TF32 off, restored after); the
    CPU is left alone."""
    if torch.device(device).type != "cuda":
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _hpsv2_autocast():
    """What hpsv2's evaluation wraps its forward and cosine in: torch.cuda.amp.autocast() (float16), a deprecated
    alias of torch.autocast("cuda", dtype=torch.float16) in newer torch."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        legacy = getattr(torch.cuda.amp, "autocast", None)
        return legacy() if legacy is not None else torch.autocast("cuda", dtype=torch.float16)


def _versions(*names: str) -> dict:
    from methods.common.provenance import package_versions

    return {"torch": torch.__version__, **package_versions(*names)}


def random_images(shapes, seed: int, smooth: bool | list[bool] = False) -> list[np.ndarray]:
    """uint8 (H, W, 3) images: uniform noise, or (smooth) an 8x8 random grid upsampled bicubically plus
    mild noise, closer to the low frequencies of generated images, where resize kernels differ less."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    flags = smooth if isinstance(smooth, (list, tuple)) else [smooth] * len(shapes)
    out = []
    for (height, width), flag in zip(shapes, flags):
        if flag:
            grid = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
            base = np.asarray(grid.resize((width, height), Image.BICUBIC)).astype(np.int16)
            out.append(np.clip(base + rng.integers(-12, 13, base.shape), 0, 255).astype(np.uint8))
        else:
            out.append(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    return out


def perturb_small_parameters(module: torch.nn.Module, scale: float = 0.1, seed: int = 1) -> None:
    """Layer norms start at 1 / 0 and many biases at 0, where a swapped or dropped one is invisible:
    add seeded noise to every parameter of at most one dimension."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            if parameter.ndim <= 1:
                parameter.add_(scale * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))


def _bpe_path() -> Path:
    """open_clip_torch's copy of OpenAI CLIP's BPE file, found without importing open_clip."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("open_clip_torch is not installed: its BPE file builds the CLIP tokenizer")
    path = Path(list(spec.submodule_search_locations)[0]) / BPE_FILE
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != BPE_SHA256:
        raise UserError(f"{path} has sha256 {digest[:12]}..., not OpenAI CLIP's BPE file {BPE_SHA256[:12]}...")
    return path


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP's byte -> printable character table (the BPE's base symbols, in vocabulary order)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + \
        list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    extra = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + extra)
            extra += 1
    return dict(zip(bs, map(chr, cs)))


def write_clip_tokenizer(folder: Path) -> Path:
    """openai/clip-vit-large-patch14's tokenizer (vocab.json, merges.txt, 77 tokens) rebuilt offline from
    the BPE file, in OpenAI's SimpleTokenizer order: 256 byte symbols, the same with '</w>', 48894 merges,
    then <|startoftext|> 49406 and <|endoftext|> 49407."""
    from transformers import CLIPTokenizer

    merges = gzip.open(_bpe_path()).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    symbols = list(_bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    if len(vocab) != 49408:
        raise UserError(f"the rebuilt CLIP vocabulary has {len(vocab)} tokens, not 49408")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    CLIPTokenizer.from_pretrained(str(folder), model_max_length=77).save_pretrained(str(folder))
    return folder


def clip_l14_config():
    """openai/clip-vit-large-patch14's config.json as a transformers CLIPConfig (quick_gelu; the text
    tower's legacy eos_token_id=2, with which transformers pools at argmax(ids), i.e. at <|endoftext|>)."""
    from transformers import CLIPConfig

    text = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5,
                bos_token_id=0, eos_token_id=2, pad_token_id=1, projection_dim=768)
    vision = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                  image_size=224, patch_size=14, num_channels=3, hidden_act="quick_gelu", layer_norm_eps=1e-5,
                  projection_dim=768)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=768, logit_scale_init_value=2.6592)


def write_clip_l14_folder(folder: Path, openclip_state: dict | None = None, seed: int = 0) -> Path:
    """A local folder laid out as openai/clip-vit-large-patch14: config.json + model.safetensors of a
    CLIPModel of its real config, its preprocessor_config.json verbatim, and its tokenizer. The weights
    are `openclip_state` (an open_clip ViT-L-14-quickgelu state dict, mapped with hps's open_clip ->
    transformers mapping) or, without one, seeded random values (`random_state`)."""
    from accelerate import init_empty_weights
    from transformers import CLIPModel

    from harness.metrics import hps

    with init_empty_weights():  # parameters on the meta device; buffers (position ids) real
        model = CLIPModel(clip_l14_config())
    if openclip_state is None:
        model.load_state_dict(random_state(model, seed), strict=True, assign=True)
    else:
        hps.load_weights(model, openclip_state, source="open_clip ViT-L-14-quickgelu")
    model.save_pretrained(str(folder))
    del model
    write_clip_tokenizer(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(OPENAI_L14_PREPROCESSOR, indent=2) + "\n")
    return folder


def random_state(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Seeded random values for every entry of `model`'s state dict (its parameters may be on the meta
    device), drawn much faster than transformers' own init of a ViT-L (18 s on 2 cores): matrices and
    convolutions N(0, 1 / fan_in); token, position and class embeddings N(0, 0.02^2); layer-norm weights
    1 + 0.1 N(0, 1); biases 0.1 N(0, 1) (layer norms and biases away from 1 / 0, so that a swapped one shows);
    logit_scale log(1 / 0.07)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, value in model.state_dict().items():
        noise = torch.randn(value.shape, generator=generator, dtype=torch.float32)
        if name.endswith("logit_scale"):
            state[name] = torch.full(value.shape, 2.6592)
        elif "embedding" in name and "patch" not in name:  # tables and the class token
            state[name] = 0.02 * noise
        elif value.ndim >= 2:  # linear layers, projections, the patch convolution
            state[name] = noise / (value[0].numel() ** 0.5)
        elif name.endswith("weight"):  # layer norms: the only 1-d weights
            state[name] = 1 + 0.1 * noise
        else:
            state[name] = 0.1 * noise
    return state


@contextlib.contextmanager
def _quiet():
    """The reference packages' deprecation chatter (torch.jit, timm, torch.cuda.amp) and open_clip's note that
    it initialised randomly (as asked) are not findings."""
    import logging

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        logging.disable(logging.WARNING)  # open_clip: "No pretrained weights loaded ... initialized randomly"
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)


def _capture(target, name: str, store: list):
    """Wrap the bound method `target.name` so that each returned tensor is also appended to `store`."""
    method = getattr(target, name)

    def wrapped(*args, **kwargs):
        out = method(*args, **kwargs)
        store.append(out.detach().float().cpu())
        return out

    setattr(target, name, wrapped)


# --- HPS v2.1 against hpsv2 -------------------------------------------------------------------------

@contextlib.contextmanager
def _stand_ins_for_unused_imports():
    """hpsv2 imports two modules that the comparison never uses and a bare environment may lack: `clint`
    (hpsv2/__init__ -> utils: `from clint.textui import progress`, the progress bar of its downloads; clint and
    its dependency `args` are sdists only) and `turtle` (`from turtle import forward` in its vendored
    open_clip/factory.py, a stray import; turtle needs tkinter). Where one is not importable, an empty stand-in
    is in sys.modules while hpsv2 is imported, and removed after; yields the names stood in for."""
    import types

    missing = {}
    try:
        import turtle  # noqa: F401  (imported to see whether it can be)
    except ImportError:
        missing["turtle"] = {"forward": None}
    try:
        from clint.textui import progress  # noqa: F401
    except ImportError:
        missing.update({"clint": {}, "clint.textui": {}, "clint.textui.progress": {"bar": None}})
    added = []
    for name, attributes in missing.items():
        if name not in sys.modules:
            module = types.ModuleType(name, "a stand-in for an import hpsv2 makes and the parity never uses")
            module.__dict__.update(attributes)
            sys.modules[name] = module
            added.append(name)
    for name in added:  # clint.textui.progress reachable as attributes, as `from clint.textui import progress` needs
        parent, _, child = name.rpartition(".")
        if parent in sys.modules:
            setattr(sys.modules[parent], child, sys.modules[name])
    try:
        yield [n for n in added if "." not in n]
    finally:
        for name in added:
            sys.modules.pop(name, None)


def import_hpsv2_open_clip():
    """hpsv2's vendored open_clip (`hpsv2.src.open_clip`) and a note on how it was imported.

    hpsv2 1.2.0's wheel lacks `src/open_clip/bpe_simple_vocab_16e6.txt.gz`, which its tokenizer module
    reads at import time (tgxs002/HPSv2#30), so `import hpsv2.src.open_clip` fails as installed. Where
    the file is missing, that one read is redirected to open_clip_torch's copy, which is byte-identical
    to the file hpsv2x 1.2.0 ships (BPE_SHA256); nothing else is changed, except that an unused import
    that is not importable gets an empty stand-in (`_stand_ins_for_unused_imports`, named in the note)."""
    spec = importlib.util.find_spec("hpsv2")  # does not run hpsv2/__init__
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("hpsv2 is not installed")
    vendored = (Path(list(spec.submodule_search_locations)[0]) / "src" / "open_clip" / BPE_FILE).resolve()
    if "hpsv2.src.open_clip" in sys.modules:
        import hpsv2.src.open_clip as open_clip_vendored
        return open_clip_vendored, getattr(open_clip_vendored, "_parity_import_note", "hpsv2's own BPE file")
    if vendored.is_file():
        with _quiet(), _stand_ins_for_unused_imports() as stood_in:
            import hpsv2.src.open_clip as open_clip_vendored
        note = "hpsv2's own BPE file"
    else:
        source = _bpe_path()
        real_open = gzip.open

        def redirected(filename, *args, **kwargs):
            if isinstance(filename, (str, os.PathLike)) and Path(filename).resolve() == vendored:
                filename = source
            return real_open(filename, *args, **kwargs)

        gzip.open = redirected
        try:
            with _quiet(), _stand_ins_for_unused_imports() as stood_in:
                import hpsv2.src.open_clip as open_clip_vendored
        finally:
            gzip.open = real_open
        note = (f"hpsv2's wheel lacks {BPE_FILE} (HPSv2#30): read open_clip_torch's copy "
                f"(sha256 {BPE_SHA256[:12]}..., identical to hpsv2x 1.2.0's)")
    if stood_in:
        note += f"; empty stand-ins for hpsv2's unused imports of {', '.join(stood_in)} (not importable here)"
    open_clip_vendored._parity_import_note = note
    return open_clip_vendored, note


def _device_wrapped(function):
    """Run a comparison under `float32_on(device)` (TF32 off on CUDA), its `device` keyword passed on."""
    @functools.wraps(function)
    def wrapped(*args, device: str = "cpu", **kwargs):
        with float32_on(device):
            return function(*args, device=device, **kwargs)

    return wrapped


def _our_hps(scorer, images, prompts) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """(scores, unit image features, unit text features) of `scorer.score`, one image per call (the images differ
    in size); `images` are uint8 arrays or tensors."""
    image_store, text_store = [], []
    _capture(scorer, "image_features", image_store)
    _capture(scorer, "text_features", text_store)
    scores = np.concatenate([scorer.score(im[None], [p]) for im, p in zip(images, prompts)])
    return scores, torch.cat(image_store), torch.cat(text_store)


@_device_wrapped
def hps_parity(shapes=HPS_SHAPES, prompts=HPS_PROMPTS, seed: int = 0, device: str = "cpu") -> dict:
    """HPS v2.1 through `harness.metrics.hps.load` against hpsv2 1.2.0's evaluation code, on one seeded random
    ViT-H-14 (layer norms and biases perturbed) saved as an HPS checkpoint. On the CPU both in float32; on CUDA
    as hpsv2 runs there (float16 autocast, rows "amp" and "amp, GPU preprocessing") and in float32 ("fp32")."""
    started = time.time()
    from PIL import Image

    from harness.metrics import hps

    cuda = torch.device(device).type == "cuda"
    open_clip_vendored, bpe_note = import_hpsv2_open_clip()
    images = random_images(shapes, seed)
    prompts = list(prompts)
    if len(prompts) != len(images):
        raise ValueError(f"{len(images)} images but {len(prompts)} prompts")

    # hpsv2's side, as evaluation.py's initialize_model() builds it: on the CPU (create_model builds there and
    # moves the model to `device`; here it moves after the perturbation, drawn on the CPU).
    torch.manual_seed(seed)
    with _quiet():
        model, _, preprocess_val = open_clip_vendored.create_model_and_transforms(
            "ViT-H-14", None, precision="amp", device="cpu", jit=False, force_quick_gelu=False,
            force_custom_text=False, force_patch_dropout=False, force_image_size=None, pretrained_image=False,
            image_mean=None, image_std=None, light_augmentation=True, aug_cfg={}, output_dict=True,
            with_score_predictor=False, with_region_predictor=False)
    perturb_small_parameters(model, seed=seed + 1)
    model.eval()
    tokenizer = open_clip_vendored.get_tokenizer("ViT-H-14")
    ref_pixels = torch.stack([preprocess_val(Image.fromarray(im)) for im in images])  # BenchmarkDataset + collate
    ref_tokens = tokenizer(prompts)
    reference = {}
    if not cuda:
        with torch.no_grad():  # evaluate_benchmark wraps this in torch.cuda.amp.autocast(): float16 on a GPU only
            outputs = model(ref_pixels, ref_tokens)
            ref_img, ref_txt = outputs["image_features"].float(), outputs["text_features"].float()
            reference["fp32"] = (ref_img, ref_txt, torch.diagonal(ref_img @ ref_txt.T * 100))
    else:
        model.to(device)
        with torch.no_grad():
            pixels, tokens = ref_pixels.to(device=device), ref_tokens.to(device=device)
            with _hpsv2_autocast():  # evaluate_benchmark, verbatim in effect: one batch of all the images
                outputs = model(pixels, tokens)
                image_features, text_features = outputs["image_features"], outputs["text_features"]
                logits_per_image = image_features @ text_features.T * 100
            amp_img, amp_txt = image_features.float().cpu(), text_features.float().cpu()
            reference["amp"] = (amp_img, amp_txt, torch.diagonal(logits_per_image).float().cpu())
            reference_amp_dtypes = {"features": str(image_features.dtype), "scores": str(logits_per_image.dtype)}
            outputs = model(pixels, tokens)  # float32, TF32 off (float32_on)
            ref_img, ref_txt = outputs["image_features"].float().cpu(), outputs["text_features"].float().cpu()
            reference["fp32"] = (ref_img, ref_txt, torch.diagonal(ref_img @ ref_txt.T * 100))
        model.cpu()
    ref_scores = reference["fp32"][2]

    with tempfile.TemporaryDirectory(prefix="hps-parity-") as tmp:
        root = Path(tmp) / "weights"
        checkpoint = root / hps.HPS_REPO / hps.HPS_FILE
        checkpoint.parent.mkdir(parents=True)
        torch.save({"state_dict": model.state_dict()}, checkpoint)
        parameters = sum(p.numel() for p in model.parameters())
        del model, outputs
        gc.collect()  # one ViT-H-14 in float32 at a time (about 4 GB each)
        tokenizer_folder = write_clip_tokenizer(Path(tmp) / "tokenizer")
        scorer = hps.load(root, device, tokenizer=str(tokenizer_folder), precision="amp" if cuda else "fp32")
        ours = {}
        if cuda:
            ours["amp"] = _our_hps(hps.HpsScorer(scorer.model, scorer.tokenizer, device, "amp"), images, prompts)
            on_gpu = [torch.from_numpy(im).to(device) for im in images]
            ours["amp, GPU preprocessing"] = _our_hps(hps.HpsScorer(scorer.model, scorer.tokenizer, device, "amp"),
                                                      on_gpu, prompts)
            gpu_pixels = torch.cat([hps.preprocess(im[None]).cpu() for im in on_gpu])
            attention = scorer.attention
            scorer = hps.HpsScorer(scorer.model, scorer.tokenizer, device, "fp32")
        ours["fp32"] = _our_hps(scorer, images, prompts)
        attention = scorer.attention if not cuda else attention
        our_tokens = scorer.tokenize(prompts)
        del scorer
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    our_pixels = torch.cat([hps.preprocess(im[None]) for im in images])

    # open_clip pads with 0 after <|endoftext|>, transformers' tokenizer with <|endoftext|>: compare up to it.
    tokens_equal = all(torch.equal(o[:int(r.argmax()) + 1], r[:int(r.argmax()) + 1])
                       for o, r in zip(our_tokens, ref_tokens))
    variants = (("fp32", HPS_TOLERANCE, "fp32", our_pixels),)
    if cuda:
        variants = (("amp", HPS_AMP_TOLERANCE, "amp", our_pixels),
                    ("amp, GPU preprocessing", HPS_GPU_PREPROCESSING_TOLERANCE, "amp", gpu_pixels),
                    ("fp32", HPS_TOLERANCE, "fp32", our_pixels))
    rows = []
    for label, tolerance, side, pixels in variants:
        scores, our_img, our_txt = ours[label]
        ref_img, ref_txt, ref = reference[side]
        row = _row(label, tolerance, pixels=difference(pixels, ref_pixels),
                   features=difference(torch.cat([our_img, our_txt]), torch.cat([ref_img, ref_txt])),
                   scores=difference(scores, ref))
        row["image_features"] = difference(our_img, ref_img)
        row["text_features"] = difference(our_txt, ref_txt)
        row["tokens_equal_through_end_of_text"] = tokens_equal
        if not tokens_equal:
            row["within_tolerance"] = False
        rows.append(row)

    details = {"reference_scores": [float(s) for s in ref_scores],
               "our_scores": [float(s) for s in ours["fp32"][0]],
               "score_spread": float(ref_scores.max() - ref_scores.min()),
               "parameters": int(parameters), "hpsv2_bpe": bpe_note,
               "precision": "float32 on CPU on both sides (hpsv2 itself: precision='amp', float32 weights, "
                            "torch.cuda.amp.autocast() float16 on CUDA; a no-op on CPU)",
               "project": {"scorer": "harness.metrics.hps.load(weights_root, 'cpu', tokenizer=<folder>, "
                                     "precision='fp32')",
                           "batch": "one image per score() call (the images differ in size)",
                           "tokenizer": "transformers CLIPTokenizer on OpenAI CLIP's vocabulary, rebuilt offline"},
               "weights": f"seeded random (torch.manual_seed({seed})), layer norms and biases perturbed by "
                          "0.1 x N(0, 1)"}
    explanation = ("float32 on both sides, the same pixels and token ids up to <|endoftext|>: what remains is the "
                   "kernels (transformers' SDPA attention on split q/k/v vs nn.MultiheadAttention's packed in_proj), "
                   "rounding in the last bits over 32 + 24 layers. hpsv2 scores under CUDA AMP (float16) on a GPU, "
                   "where agreement is looser (tests/test_metric_hps_gpu.py allows 0.25 on the 100 x cosine scale "
                   "under autocast on both sides).")
    if cuda:
        amp_scores, gpu_scores = ours["amp"][0], ours["amp, GPU preprocessing"][0]
        amp_ref_img, amp_ref_txt, amp_ref_scores = reference["amp"]
        details.update({
            "reference_amp_scores": [float(s) for s in amp_ref_scores],
            "our_amp_scores": [float(s) for s in amp_scores],
            "our_amp_gpu_preprocessing_scores": [float(s) for s in gpu_scores],
            "reference_amp_dtypes": reference_amp_dtypes,
            "amp_scores_vs_reference_cosine_in_float32": difference(
                amp_scores, torch.diagonal(amp_ref_img @ amp_ref_txt.T * 100)),
            "gpu_preprocessing_only": {
                "pixels_vs_cpu_preprocessing": difference(gpu_pixels, our_pixels),
                "amp_scores_vs_cpu_preprocessed_amp_scores": difference(gpu_scores, amp_scores)},
            "reference_amp_vs_reference_fp32": {"features": difference(torch.cat([amp_ref_img, amp_ref_txt]),
                                                                       torch.cat(reference["fp32"][:2])),
                                                "scores": difference(amp_ref_scores, ref_scores)},
            "precision": "rows 'amp': hpsv2 as on a GPU, its float32 model under torch.cuda.amp.autocast() (float16) "
                         "incl. the 100 x cosine (a float16 score), one batch of all images; the project's "
                         "precision='amp' (float16 autocast, the cosine in float32), one image per call. Row 'fp32': "
                         "float32 both sides, TF32 off",
            "project": {"scorer": f"harness.metrics.hps.load(weights_root, {device!r}, tokenizer=<folder>, "
                                  "precision='amp'); precision='fp32' on the same model for the 'fp32' row",
                        "gpu_preprocessing": "score() on uint8 (1, H, W, 3) tensors on the GPU: hps.preprocess there "
                                             "(torch antialiased bicubic on CUDA); the reference's preprocess_val on "
                                             "PIL images on the CPU",
                        "batch": "one image per score() call (the images differ in size)",
                        "attention": attention,
                        "tokenizer": "transformers CLIPTokenizer on OpenAI CLIP's vocabulary, rebuilt offline"}})
        explanation = ("'fp32': " + explanation.split(" hpsv2 scores under")[0] + " 'amp': both sides compute "
                       "in float16 with float32 accumulation in other kernels, so float32 last-bit differences flip "
                       "float16 roundings (unit roundoff 4.9e-4) layer after layer; hpsv2 also rounds its 100 x cosine "
                       "to float16 (steps of 0.016 at real scores of 16-32), the project takes it in float32. 'amp, "
                       "GPU preprocessing': the same plus torch's antialiased bicubic on CUDA vs the CPU's (float32 "
                       "arithmetic in another order).")
    else:
        details["project"]["attention"] = attention
    return _result(
        "hps-v2.1",
        "hpsv2 (tgxs002/HPSv2): evaluation.py initialize_model() -> create_model_and_transforms('ViT-H-14', None, "
        "precision='amp', light_augmentation=True, output_dict=True), its preprocess_val on PIL images, "
        "get_tokenizer('ViT-H-14'), evaluate_benchmark's diag(100 * image_features @ text_features.T)",
        _versions("hpsv2", "torchvision", "transformers", "ftfy"),
        "pixels after preprocessing, unit image and text features, and per-pair scores (100 x cosine) of "
        f"{len(images)} random uint8 images {', '.join(f'{h}x{w}' for h, w in shapes)} (incl. non-square, odd "
        "padding, and a 224 square that is not resized) with prompts incl. ftfy/HTML cleaning and one over 77 tokens",
        len(images), rows, explanation, details, started, device)


# --- the aesthetic score against the LAION predictor ------------------------------------------------

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


# --- CLIP score against torchmetrics ----------------------------------------------------------------

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


# --- FID against clean-fid --------------------------------------------------------------------------

def _write_stand_in(folder: Path) -> Path:
    from harness.metrics.stand_in import write_inception

    with _quiet():
        return write_inception(folder)


def _write_fid_folders(root: Path, n: int, seed: int) -> tuple[Path, Path]:
    """Two folders of n PNGs each, of mixed sizes (incl. 299x299, which PIL's resize returns unchanged), from
    two distributions (the second brighter), so that the FID is not near 0."""
    from PIL import Image

    folders = []
    for index, (name, shift) in enumerate((("a", 0), ("b", 40))):
        folder = root / name
        folder.mkdir(parents=True)
        shapes = [FID_SHAPES[i % len(FID_SHAPES)] for i in range(n)]
        for i, im in enumerate(random_images(shapes, seed + index, smooth=True)):
            Image.fromarray(np.clip(im.astype(np.int16) + shift, 0, 255).astype(np.uint8)).save(folder / f"{i:04d}.png")
        folders.append(folder)
    return folders[0], folders[1]


@contextlib.contextmanager
def _sqrtm_with_disp(cleanfid_module):
    """clean-fid 0.1.35 calls `scipy.linalg.sqrtm(A, disp=False)` and unpacks (root, error estimate); scipy
    removed `disp` (1.16: sqrtm returns the root alone). Where it is gone, clean-fid's `linalg` is replaced for
    the call by one whose sqrtm returns what `disp=False` returned: the root and ||root @ root - A||_F / ||A||_F.
    Yields whether the shim was needed (recorded with the result)."""
    import inspect
    import types

    from scipy import linalg

    if "disp" in inspect.signature(linalg.sqrtm).parameters:
        yield False
        return

    def sqrtm(matrix, disp=True, **kwargs):
        root = linalg.sqrtm(matrix, **kwargs)
        if disp:
            return root
        error = np.linalg.norm(root @ root - matrix, "fro") / np.linalg.norm(matrix, "fro")
        return root, error

    shim = types.SimpleNamespace(**{name: getattr(linalg, name) for name in dir(linalg) if not name.startswith("_")})
    shim.sqrtm = sqrtm
    original = cleanfid_module.linalg
    cleanfid_module.linalg = shim
    try:
        yield True
    finally:
        cleanfid_module.linalg = original


@_device_wrapped
def fid_parity(inception: str | Path | None = None, n: int = 64, batch_size: int = 32, seed: int = 0,
               device: str = "cpu") -> dict:
    """FidScorer (clean mode) against clean-fid's compute_fid(mode="clean") folder to folder, both on the same
    TorchScript network: `inception` (a file with clean-fid's interface) or tests/metric_weights.py's stand-in.
    clean-fid gets the network through its own wrapper, InceptionV3W(resize_inside=False), as its
    build_feature_extractor("clean") builds it (without DataParallel), on `device` (float32; TF32 off on CUDA)."""
    started = time.time()
    from cleanfid import fid as cleanfid
    from cleanfid.inception_torchscript import InceptionV3W

    from harness.metrics.fid import INCEPTION_FILE, FidScorer

    with tempfile.TemporaryDirectory(prefix="fid-parity-") as tmp:
        tmp = Path(tmp)
        if inception is None:
            path = _write_stand_in(tmp / "weights")  # <root>/clean-fid/inception-2015-12-05.pt
            network_note = "tests/metric_weights.py write_inception: StandInInception (conv 13x13/13 -> 8 channels, " \
                           "ReLU, average pool, 1x1 conv to 2048), random seeded, TorchScript"
        else:  # InceptionV3W reads <folder>/inception-2015-12-05.pt
            path = tmp / "weights" / INCEPTION_FILE
            path.parent.mkdir()
            os.symlink(Path(inception).resolve(), path)
            network_note = str(inception)
        network_dir = path.parent
        folder_a, folder_b = _write_fid_folders(tmp / "images", n, seed)
        device = torch.device(device)
        with _quiet(), _sqrtm_with_disp(cleanfid) as sqrtm_shim:
            network = InceptionV3W(str(network_dir), download=False, resize_inside=False).eval().to(device)
            batches = []  # what compute_fid's get_batch_features receives from the network: folder a, then b
            network.register_forward_hook(lambda module, args, output: batches.append(output.detach().double().cpu()))
            ref_fid = float(cleanfid.compute_fid(str(folder_a), str(folder_b), mode="clean",
                                                 custom_feat_extractor=network, num_workers=0, batch_size=batch_size,
                                                 device=device, verbose=False))
            ref_features = torch.cat(batches).numpy()
            scorer = FidScorer.load(path, device, batch_size=batch_size)
        ours_a, ours_b = scorer.folder_features(folder_a), scorer.folder_features(folder_b)
        our_fid = scorer.distance(ours_a, ours_b)
        last = dict(scorer.last)
        rank = int(np.linalg.matrix_rank(np.cov(ours_a, rowvar=False)))
    features = difference(np.concatenate([ours_a, ours_b]), ref_features)
    row = _row("clean mode", FID_TOLERANCE if device.type == "cpu" else FID_CUDA_TOLERANCE, features=features,
               scores=difference([our_fid], [ref_fid]))
    return _result(
        "fid",
        "clean-fid (GaParmar/clean-fid) cleanfid/fid.py compute_fid(dir1, dir2, mode='clean', custom_feat_extractor="
        "InceptionV3W(resize_inside=False), num_workers=0): ResizeDataset (PIL RGB, make_resizer('PIL', False, "
        "'bicubic', (299, 299)), float32 [0, 255]), InceptionV3W.forward ((x - 128) / 128 -> layers), np.mean / "
        "np.cov, frechet_distance (scipy sqrtm)",
        _versions("clean-fid", "scipy", "pillow"),
        f"pool features of two folders of {n} PNGs each (sizes {', '.join(f'{h}x{w}' for h, w in FID_SHAPES)}) and "
        "the FID between them; the network is a stand-in, so the Inception weights themselves are NOT compared: "
        "the parity covers the image reading, resize, batching, normalisation, statistics and Frechet distance",
        n, [row],
        "features are computed the same way (clean-fid's ResizeDataset and InceptionV3W vs FidScorer); the FID "
        "differs only in the Frechet distance's matrix square root: scipy's sqrtm of cov_a @ cov_b (clean-fid) vs "
        "a symmetric eigh (harness.metrics.frechet), float64 rounding; with N <= 2048 both covariances are singular.",
        {"reference_fid": ref_fid, "our_fid": our_fid, "network": network_note, "batch_size": batch_size,
         "covariance_rank": rank, "fid_scorer_last": last,
         **({"scipy_sqrtm_shim": "scipy without sqrtm's disp: clean-fid's sqrtm(disp=False) call given the root and "
                                 "its error estimate by harness.metrics.parity._sqrtm_with_disp"} if sqrtm_shim else {}),
         "not_compared": "the Inception-v3 weights (inception-2015-12-05.pt cannot be downloaded here)",
         **({} if device.type == "cpu" else {"precision": "float32 on the GPU on both sides, TF32 off"})},
        started, device)


# --- the command line -------------------------------------------------------------------------------

# --- VBench's aggregation against its own final-score script ---------------------------------------

VBENCH_TOLERANCE = {"scores": 1e-12}  # the same float64 arithmetic in another order


def vbench_parity(scripts: str | Path | None = None, trials: int = 20, seed: int = 0) -> dict:
    """harness.metrics.vbench.aggregate against VBench's `scripts/cal_final_score.py` (its normalisation,
    Quality, Semantic and final score) on random per-dimension scores. That script is in VBench's
    repository, not its wheel: `scripts` is a copy of the repository's scripts/ folder (with constant.py)."""
    started = time.time()

    from harness.metrics.vbench import CONSTANTS_SOURCE, DIMENSIONS, aggregate

    folder = Path(scripts) if scripts else None
    if folder is None or not (folder / "cal_final_score.py").is_file():
        raise UserError("the VBench comparison needs a copy of VBench's scripts/ folder (cal_final_score.py, "
                        "constant.py) from the repository Vchitect/VBench: pass --vbench-scripts DIR")
    sys.path.insert(0, str(folder))  # cal_final_score imports its neighbour constant.py
    try:
        spec = importlib.util.spec_from_file_location("vbench_cal_final_score", folder / "cal_final_score.py")
        upstream = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(upstream)
    finally:
        sys.path.remove(str(folder))
    rng = np.random.default_rng(seed)
    worst, examples = 0.0, []
    for trial in range(trials):
        ours_in = {name: float(rng.uniform(0.0, 1.0)) for name in DIMENSIONS}
        theirs_in = {name.replace("_", " "): value for name, value in ours_in.items()}  # as submission() keys them
        normalised = upstream.get_nomalized_score(theirs_in)
        quality, semantic = upstream.get_quality_score(normalised), upstream.get_semantic_score(normalised)
        final = upstream.get_final_score(quality, semantic)
        ours = aggregate(ours_in)
        diffs = [abs(ours["quality"] - quality), abs(ours["semantic"] - semantic), abs(ours["total"] - final)]
        diffs += [abs(ours["dimensions"][n]["normalised"] * DIMENSIONS[n].weight - normalised[n.replace("_", " ")])
                  for n in DIMENSIONS]
        worst = max(worst, *diffs)
        if trial < 2:
            examples.append({"quality": [ours["quality"], quality], "semantic": [ours["semantic"], semantic],
                             "total": [ours["total"], final]})
    diff = {"max_abs": worst, "max_rel": worst}
    row = _row("aggregation", VBENCH_TOLERANCE, scores=diff)
    row["n"] = trials
    return _result("vbench", f"Vchitect/VBench scripts/cal_final_score.py from {folder}", _versions(),
                   f"normalised dimensions, Quality, Semantic and Total of {trials} random sets of the 16 "
                   "dimensions' raw scores", trials, [row],
                   f"the project's constants are read from {CONSTANTS_SOURCE}; upstream reads constant.py beside "
                   "its script; the same formula, float64 both sides", {"examples (ours, theirs)": examples},
                   started)


RUNNERS = {"hps": hps_parity, "aes": aesthetic_parity, "clip": clip_parity, "fid": fid_parity, "vbench": vbench_parity}


def _format(d: dict | None) -> str:
    return "-" if d is None else f"{d['max_abs']:.1e} / {d['max_rel']:.1e}"


def table(results: dict) -> str:
    """One line per row of each comparison: differences (max abs / max rel) and the tolerances (abs)."""
    header = ("metric", "variant", "N", "pixels abs/rel", "features abs/rel", "scores abs/rel",
              "tolerance pix/feat/score", "ok", "s")
    lines = [header]
    for name, result in results.items():
        if "error" in result:
            lines.append((name, "not run", "-", "-", "-", "-", "-", "ERROR", "-"))
            continue
        for row in result["rows"]:
            tol = row["tolerance"]
            lines.append((result["metric"], row["label"], str(row.get("n", result["n"])), _format(row.get("pixels")),
                          _format(row.get("features")), _format(row.get("scores")),
                          " / ".join(f"{tol[k]:g}" if k in tol else "-" for k in ("pixels", "features", "scores")),
                          "yes" if row["within_tolerance"] else "NO", str(result["seconds"])))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    legend = ("abs: max |ours - reference|; rel: abs / max |reference|; tolerances are absolute; "
              "fid's score is the FID itself")
    return "\n".join(["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines]
                     + [legend])


def _quiet_transformers() -> None:
    """No loading reports (a vision model read from a full CLIP folder lists the text tower as unexpected, as
    with the real repository) and no progress bars between the table's lines."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.metrics.parity", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the JSON record to write")
    parser.add_argument("--only", default=None,
                        help=f"comma-separated subset of {','.join(COMPARISONS)},vbench (default: "
                             f"{','.join(COMPARISONS)}, and vbench where --vbench-scripts is given)")
    parser.add_argument("--aesthetic-head", "--aes-head", default=None,
                        help=f"the LAION head sac+logos+ava1-l14-linearMSE.pth (default: {SHARED_HEAD})")
    parser.add_argument("--device", default="cpu",
                        help="cpu (float32, the default) or cuda (hpsv2's float16 autocast for HPS beside float32; "
                             "float32 with TF32 off for the rest, plus clip.load's float16 for the aesthetic score)")
    parser.add_argument("--vbench-scripts", metavar="DIR",
                        help="a copy of VBench's repository scripts/ folder: adds the vbench comparison")
    args = parser.parse_args(argv)
    names = [n.strip() for n in (args.only or ",".join(COMPARISONS)).split(",") if n.strip()]
    if args.vbench_scripts and "vbench" not in names and args.only is None:  # an explicit --only decides
        names.append("vbench")
    unknown = [n for n in names if n not in RUNNERS]
    if unknown or not names:
        print(f"error: --only {args.only!r}: known comparisons are {', '.join(RUNNERS)}", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    if device.type not in ("cpu", "cuda") or (device.type == "cuda" and not torch.cuda.is_available()):
        print(f"error: --device {args.device!r}: cpu, or cuda where a CUDA GPU is visible", file=sys.stderr)
        return 2
    if args.aesthetic_head and "aes" in names and not Path(args.aesthetic_head).is_file():
        print(f"error: --aes-head {args.aesthetic_head}: no such file", file=sys.stderr)
        return 2
    from methods.common.provenance import provenance, write_json_atomic

    _quiet_transformers()
    results = {}
    for name in names:
        print(f"[parity] {name} ...", file=sys.stderr, flush=True)
        try:
            options = {"hps": {"device": args.device}, "aes": {"head": args.aesthetic_head, "device": args.device},
                       "clip": {"device": args.device}, "fid": {"device": args.device},
                       "vbench": {"scripts": args.vbench_scripts}}  # float64 arithmetic, device-free
            results[name] = RUNNERS[name](**options.get(name, {}))
        except Exception as error:  # a missing reference package, or a reference that fails: recorded, not hidden,
            results[name] = {"error": f"{type(error).__name__}: {error}"}  # and the other comparisons still run
            print(f"[parity] {name} failed: {results[name]['error']}", file=sys.stderr, flush=True)
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(table(results))
    where = ("CPU" if device.type == "cpu" else
             "CUDA GPU (hpsv2's float16 autocast for HPS, float32 and TF32 off elsewhere)")
    record = {"what": "metric scorers against the reference implementations, random weights of the real "
                      f"architectures, {where}",
              "command": " ".join(["python -m harness.metrics.parity", *(sys.argv[1:] if argv is None else argv)]),
              "provenance": provenance(args.device, packages=PACKAGES), "results": results}
    write_json_atomic(args.out, record)
    print(f"wrote {args.out}", file=sys.stderr)
    failed = [n for n, r in results.items() if "error" in r or not r["within_tolerance"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
