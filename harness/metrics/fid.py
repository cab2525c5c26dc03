"""FID, folder to folder, as clean-fid's "clean" mode computes it, from a local Inception file.

Per image (GaParmar/clean-fid 0.1.35, `cleanfid/resize.py`, `inception_torchscript.py`, `fid.py`):
  1. the uint8 RGB image is resized to 299x299 by PIL bicubic on each channel separately as a
     float32 ('F') image, clipped to [0, 255] and kept in float32: no uint8 round trip;
  2. the NCHW float32 batch is mapped to [-1, 1] by (x - 128) / 128 and run through the
     TorchScript Inception-v3 (`inception-2015-12-05.pt`, the TensorFlow FID graph converted by
     NVIDIA for StyleGAN2-ADA) via its `layers` submodule, whose output is the 2048-d pool3 feature.
Per set: the float64 mean and unbiased covariance, and the Frechet distance of the two Gaussians
(harness.metrics.frechet; clean-fid uses scipy's sqrtm, this uses an equivalent symmetric eigh).

The Inception file is never downloaded here. It is looked for at an explicit `inception=` path,
then at <weights root>/clean-fid/inception-2015-12-05.pt, then where clean-fid itself keeps it
(a fixed /tmp, or ./ on Windows). FID is biased upward at small N, and with N <= 2048 images per
set the covariance is singular: the distance stays defined, and `describe()` says so.

    scorer = load(weights_root, "cuda")                 # or get_metric("fid").load(...)
    fid = scorer.compare_folders("teacher/", "student/")
    scorer.describe()                                   # file, sha256, resize, precision, N, versions

backend="torchmetrics" uses torchmetrics' Inception (torch-fidelity's weights, its own resize inside
the network: not clean mode) and needs torch-fidelity, which imports torchvision.
"""
from __future__ import annotations

import platform
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from harness.metrics.frechet import frechet_distance
from methods.common.errors import UserError
from methods.common.provenance import file_sha256, package_versions

INCEPTION_FILE = "inception-2015-12-05.pt"
INCEPTION_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"
# clean-fid's feature extractor hard-codes this folder (not tempfile.gettempdir()) and downloads there.
CLEAN_FID_CACHE = Path("./") if platform.system() == "Windows" else Path("/tmp")
FIDELITY_FILE = "weights-inception-2015-12-05-6726825d.pth"
FIDELITY_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{FIDELITY_FILE}"
SIZE, FEATURE_DIM = 299, 2048
IMAGE_EXTENSIONS = {"bmp", "jpg", "jpeg", "pgm", "png", "ppm", "tif", "tiff", "webp"}  # clean-fid's, less .npy


def clean_resize(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) -> float32 (299, 299, 3), matching clean-fid's clean mode
    (`build_resizer("clean")` = `make_resizer("PIL", False, "bicubic", (299, 299))`): each channel
    becomes a float32 PIL 'F' image, is resized bicubically (PIL widens the kernel when shrinking,
    so it is antialiased), clipped to [0, 255] (bicubic overshoots) and never quantised to uint8."""
    channels = [np.asarray(Image.fromarray(np.ascontiguousarray(image[:, :, c], dtype=np.float32))
                           .resize((SIZE, SIZE), resample=Image.BICUBIC)) for c in range(3)]
    return np.stack(channels, axis=-1).clip(0, 255).astype(np.float32)


def find_weights(file: str, url: str, places: list[Path], explicit: str | Path | None) -> Path:
    """`explicit` (a file, or a folder holding `file`) if given, else the first of `places` that exists."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        places = [path / file if path.is_dir() else path]
    for place in places:
        if place.is_file():
            return place
    raise UserError(f"FID needs {file} (download it from {url} on a connected machine); "
                    f"not found at: {', '.join(str(p) for p in places)}")


def find_inception(weights_root: Path | None, inception: str | Path | None = None) -> Path:
    places = [weights_root / "clean-fid" / INCEPTION_FILE] if weights_root else []
    places.append(CLEAN_FID_CACHE / INCEPTION_FILE)
    return find_weights(INCEPTION_FILE, INCEPTION_URL, places, inception)


def image_files(folder: str | Path) -> list[Path]:
    """The images under `folder`, recursively, sorted by path, skipping hidden names (as clean-fid's glob does)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"image folder {folder} does not exist")
    return sorted((p for p in folder.rglob("*") if p.suffix[1:].lower() in IMAGE_EXTENSIONS
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts)), key=str)



class FidScorer:
    """The clean-fid backend; `features` per image set, `distance` between two sets."""

    backend, mode = "clean-fid", "clean"
    packages = ("torch", "numpy", "pillow", "clean-fid")

    def __init__(self, network, weights: Path, device: str = "cpu", batch_size: int = 64):
        if batch_size < 1:
            raise UserError(f"FID batch_size must be at least 1, got {batch_size}")
        self.device = torch.device(device)
        self.network = network.to(self.device).eval()
        self.weights, self.weights_sha256 = Path(weights), file_sha256(Path(weights))
        self.batch_size = batch_size
        self.last: dict | None = None  # what the last `distance` measured: N, rank deficiency

    @classmethod
    def load(cls, path: Path, device: str = "cpu", batch_size: int = 64) -> "FidScorer":
        try:
            with warnings.catch_warnings():  # torch >= 2.13 deprecates TorchScript; clean-fid's file is one
                warnings.filterwarnings("ignore", "`torch.jit.load` is deprecated", DeprecationWarning)
                network = torch.jit.load(str(path), map_location="cpu")
        except (RuntimeError, ValueError) as e:
            raise UserError(f"{path} is not a TorchScript file ({str(e).splitlines()[0]}); FID's clean mode reads "
                            f"clean-fid's {INCEPTION_FILE} from {INCEPTION_URL}") from None
        if not hasattr(network, "layers"):
            raise UserError(f"{path} has no `layers` submodule: it is not clean-fid's {INCEPTION_FILE}")
        return cls(network, path, device, batch_size)

    @torch.no_grad()
    def _batch_features(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        # A contiguous NCHW batch, as clean-fid's DataLoader makes: a permuted (channels-last) view
        # can take another convolution kernel and differ in the last bit.
        x = torch.from_numpy(np.stack([clean_resize(im) for im in images])).permute(0, 3, 1, 2).contiguous()
        x = x.to(self.device)
        return self.network.layers((x - 128) / 128).reshape(len(images), -1)  # pool3: (n, 2048, 1, 1)

    def features(self, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """uint8 (n, H, W, 3) images (or a list of (H, W, 3), sizes may differ) -> float64 (n, 2048)."""
        for im in images:
            if im.dtype != np.uint8 or im.ndim != 3 or im.shape[-1] != 3:
                raise UserError(f"FID reads uint8 RGB images (H, W, 3); got {im.dtype} {tuple(im.shape)}")
        chunks = [self._batch_features(images[i:i + self.batch_size]).double().cpu().numpy()
                  for i in range(0, len(images), self.batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, FEATURE_DIM))

    def folder_features(self, folder: str | Path) -> np.ndarray:
        """Features of every image under `folder`, read as RGB (as clean-fid reads them), batch by batch."""
        files = image_files(folder)
        if not files:
            raise UserError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) under {folder}")
        batches = (files[i:i + self.batch_size] for i in range(0, len(files), self.batch_size))
        return np.concatenate([self.features([np.asarray(Image.open(f).convert("RGB")) for f in batch])
                               for batch in batches])

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        """FID of two (n, d) feature arrays; `self.last` records N and whether a covariance is singular."""
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        for name, x in (("first", a), ("second", b)):
            if x.ndim != 2 or len(x) < 2:
                raise UserError(f"FID needs at least 2 images per set; the {name} set has shape {x.shape}")
        if a.shape[1] != b.shape[1]:
            raise UserError(f"FID of features of different widths: {a.shape[1]} and {b.shape[1]}")
        value = frechet_distance(a, b)
        dim, n_min = a.shape[1], min(len(a), len(b))
        # A sample covariance of n rows has rank <= n - 1: below d + 1 rows it is singular.
        note = (f"N={n_min} <= {dim}: a covariance is rank-deficient; FID is defined but biased upward and "
                "not comparable across N" if n_min <= dim else "FID is biased upward at small N; compare at equal N")
        self.last = {"fid": value, "n_a": len(a), "n_b": len(b), "feature_dim": dim,
                     "covariance_rank_deficient": n_min <= dim, "note": note}
        return value

    def compare_folders(self, folder_a: str | Path, folder_b: str | Path) -> float:
        return self.distance(self.folder_features(folder_a), self.folder_features(folder_b))

    def _preprocessing(self) -> dict:
        return {"mode": self.mode, "resize": "PIL bicubic on float32, per channel, 299x299",
                "antialias": "PIL's filter support widens when downscaling", "clip": "[0, 255]",
                "quantisation": "none after resize", "normalisation": "(x - 128) / 128",
                "image_read": "PIL, converted to RGB"}

    def describe(self) -> dict:
        out = {"metric": "fid", "backend": self.backend, **self._preprocessing(),
               "model": "Inception-v3 (TensorFlow 2015-12-05 FID graph), pool3 features",
               "feature_dim": FEATURE_DIM, "weights": str(self.weights), "weights_sha256": self.weights_sha256,
               "precision": "float32", "statistics": "float64 mean and unbiased covariance; Frechet via eigh",
               "device": str(self.device), "batch_size": self.batch_size, "versions": package_versions(*self.packages)}
        if self.device.type == "cuda":  # convolutions in TF32 unless disabled; clean-fid leaves torch's default
            out["cudnn_allow_tf32"] = torch.backends.cudnn.allow_tf32
        if self.last is not None:
            out["last_distance"] = dict(self.last)
        return out


class TorchmetricsFidScorer(FidScorer):
    """torchmetrics' `NoTrainInceptionV3` (torch-fidelity's port of the same TensorFlow graph): it
    takes uint8 NCHW images and resizes them inside the network, so its FID is not clean mode."""

    backend, mode = "torchmetrics", "torchmetrics"
    packages = ("torch", "numpy", "pillow", "torchmetrics", "torch-fidelity", "torchvision")

    @classmethod
    def load(cls, path: Path, device: str = "cpu", batch_size: int = 64) -> "TorchmetricsFidScorer":
        from torchmetrics.image.fid import NoTrainInceptionV3

        return cls(NoTrainInceptionV3(name="inception-v3-compat", features_list=[str(FEATURE_DIM)],
                                      feature_extractor_weights_path=str(path)), path, device, batch_size)

    @torch.no_grad()
    def _batch_features(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        if len({im.shape for im in images}) > 1:  # the network takes one tensor: mixed sizes go one by one
            return torch.cat([self._batch_features([im]) for im in images])
        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous().to(self.device)
        return self.network(x).reshape(len(images), -1)

    def _preprocessing(self) -> dict:
        antialias = getattr(self.network, "use_antialias", None)
        resize = {True: "torch bilinear, antialias=True", False: "torch-fidelity's TF1-compatible bilinear"}
        return {"mode": self.mode, "resize": f"{resize.get(antialias, 'unknown')}, inside the network, 299x299",
                "quantisation": "uint8 input", "normalisation": "(x - 128) / 128",
                "image_read": "PIL, converted to RGB"}


def _torchmetrics(weights_root: Path | None, device: str, inception: str | None, batch_size: int) -> FidScorer:
    try:  # torchmetrics imports without torch-fidelity and fails only when the network is built
        import torch_fidelity  # noqa: F401
        import torchmetrics.image.fid  # noqa: F401
    except Exception as e:  # ImportError, or a torchvision that does not match torch (RuntimeError)
        raise UserError(f"FID backend 'torchmetrics' needs torchmetrics and torch-fidelity (pip install torchmetrics "
                        f"torch-fidelity); torch-fidelity imports torchvision, so torch needs a matching torchvision "
                        f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); backend 'clean-fid' "
                        "needs neither") from None
    places = ([weights_root / "torch-fidelity" / FIDELITY_FILE] if weights_root else []) + \
        [Path(torch.hub.get_dir()) / "checkpoints" / FIDELITY_FILE]
    return TorchmetricsFidScorer.load(find_weights(FIDELITY_FILE, FIDELITY_URL, places, inception), device, batch_size)


def load(weights_root: Path | None, device: str = "cpu", inception: str | None = None, backend: str = "clean-fid",
         batch_size: int = 64) -> FidScorer:
    """The registry's loader: `get_metric("fid").load(weights_root, device, inception=..., backend=...)`."""
    if backend == "clean-fid":
        return FidScorer.load(find_inception(weights_root, inception), device, batch_size)
    if backend == "torchmetrics":
        return _torchmetrics(weights_root, device, inception, batch_size)
    raise UserError(f"unknown FID backend {backend!r}; known: clean-fid, torchmetrics")
