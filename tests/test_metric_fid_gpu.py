"""FID against clean-fid itself, with the real Inception file: features of the same images and
the folder-to-folder FID in clean mode. Needs inception-2015-12-05.pt (at $TDM_INCEPTION or in
clean-fid's own cache, /tmp), and clean-fid with torchvision (`cleanfid.fid` imports it); skips
otherwise. Run on a GPU machine with `pytest -m gpu tests/test_metric_fid_gpu.py`."""
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness.metrics import fid

pytestmark = pytest.mark.gpu


def _real_inception() -> Path:
    candidates = [Path(os.environ["TDM_INCEPTION"])] if os.environ.get("TDM_INCEPTION") else []
    candidates.append(fid.CLEAN_FID_CACHE / fid.INCEPTION_FILE)
    for path in candidates:
        if path.is_file() and path.name == fid.INCEPTION_FILE:  # clean-fid reads it as <folder>/<that name>
            return path
    pytest.skip(f"no real {fid.INCEPTION_FILE} at $TDM_INCEPTION or {fid.CLEAN_FID_CACHE} "
                f"(download it from {fid.INCEPTION_URL})")


def _write_folder(folder: Path, seed: int, n: int, low: int, high: int) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):  # mixed sizes, up- and downscaled to 299
        shape = (256, 256) if i % 2 else (512, 384)
        Image.fromarray(rng.integers(low, high, (*shape, 3), dtype=np.uint8)).save(folder / f"{i:04d}.png")
    return folder


def test_features_and_fid_match_clean_fid_clean_mode(tmp_path):
    path = _real_inception()
    cleanfid_fid = pytest.importorskip("cleanfid.fid", reason="clean-fid's fid module needs torchvision")
    from cleanfid.inception_torchscript import InceptionV3W

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dir_a = _write_folder(tmp_path / "a", 0, 24, 0, 256)
    dir_b = _write_folder(tmp_path / "b", 1, 24, 40, 220)
    # clean-fid's own wrapper on the same file: download=False keeps it from fetching into /tmp.
    theirs = InceptionV3W(str(path.parent), download=False).to(device).eval()
    batch = 8
    scorer = fid.load(None, str(device), inception=str(path), batch_size=batch)

    ours_a = scorer.folder_features(dir_a)
    theirs_a = cleanfid_fid.get_folder_features(str(dir_a), theirs, num_workers=0, batch_size=batch, device=device,
                                                mode="clean", verbose=False)
    assert ours_a.shape == theirs_a.shape == (24, 2048)
    # Same file, same resize, same batches on the same device: equal up to float32 round-off.
    np.testing.assert_allclose(ours_a, theirs_a, rtol=1e-4, atol=1e-4)

    ours = scorer.compare_folders(dir_a, dir_b)
    reference = cleanfid_fid.compute_fid(str(dir_a), str(dir_b), mode="clean", custom_feat_extractor=theirs,
                                         num_workers=0, batch_size=batch, device=device, verbose=False)
    # clean-fid: float32 means, scipy sqrtm of a singular product (24 images, 2048-d); here float64
    # means and eigh. Measured on random features of this rank: they agree to ~1e-7 relative.
    assert ours == pytest.approx(float(reference), rel=1e-4)
    assert scorer.describe()["last_distance"]["covariance_rank_deficient"]
