"""FID (harness.metrics.fid, clean mode) against clean-fid's compute_fid (`fid_parity`), both on the same
TorchScript network, and the shim for clean-fid's call of scipy's sqrtm (`_sqrtm_with_disp`)."""
from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from .common import _device_wrapped, _quiet, _result, _row, _versions, difference, random_images
from .tolerances import FID_CUDA_TOLERANCE, FID_TOLERANCE

FID_SHAPES = ((64, 64), (96, 128), (300, 200), (512, 384), (299, 299))


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
                                 "its error estimate by harness.metrics.parity.fid._sqrtm_with_disp"}
            if sqrtm_shim else {}),
         "not_compared": "the Inception-v3 weights (inception-2015-12-05.pt cannot be downloaded here)",
         **({} if device.type == "cpu" else {"precision": "float32 on the GPU on both sides, TF32 off"})},
        started, device)
