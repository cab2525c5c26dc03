"""What every comparison shares: the repository's paths and the reference packages recorded, the differences and
records (`difference`, `_row`, `_result`, `_device_fields`), float32 on CUDA (`float32_on`, `_device_wrapped`),
seeded inputs (`random_images`, `perturb_small_parameters`), and quieting and capturing the reference code
(`_quiet`, `_capture`)."""
from __future__ import annotations

import contextlib
import functools
import time
import warnings
from pathlib import Path

import numpy as np
import torch

REPOSITORY = Path(__file__).resolve().parents[3]  # harness/metrics/parity/common.py -> the repository
SHARED_HEAD = REPOSITORY.parent / "shared" / "weights" / "laion-aesthetic" / "sac+logos+ava1-l14-linearMSE.pth"
PACKAGES = ("torchvision", "open_clip_torch", "torchmetrics", "clean-fid", "hpsv2")
COMPARISONS = ("hps", "aes", "clip", "fid")


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


def _device_wrapped(function):
    """Run a comparison under `float32_on(device)` (TF32 off on CUDA), its `device` keyword passed on."""
    @functools.wraps(function)
    def wrapped(*args, device: str = "cpu", **kwargs):
        with float32_on(device):
            return function(*args, device=device, **kwargs)

    return wrapped
