"""FID on CPU: the Frechet mathematics (against scipy's sqrtm and a closed form), the clean resize
(against clean-fid's own resizer), and the scorer end to end on a tiny stand-in for clean-fid's
TorchScript Inception: random weights, the same call interface (a `layers` submodule mapping
(n, 3, 299, 299) in [-1, 1] to (n, 2048, 1, 1)), scripted and saved as inception-2015-12-05.pt."""
import hashlib
import importlib.metadata

import numpy as np
import pytest
import torch
from PIL import Image

from harness.metrics import fid, frechet
from harness.metrics import world as wm
from harness.metrics.registry import get_metric
from methods.common.errors import UserError
from metric_weights import write_inception

# One thread: on a 2-core machine MKL's 2048x2048 eigh ran 3-5x slower with two threads than with one.
pytestmark = pytest.mark.usefixtures("one_thread")


def _world_frechet_before_the_move(features_a, features_b):
    """harness.metrics.world.frechet_distance as it was before it moved to harness.metrics.frechet."""
    a, b = features_a.detach().double(), features_b.detach().double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    eigval_a, eigvec_a = torch.linalg.eigh(cov_a)
    sqrt_a = eigvec_a @ torch.diag(eigval_a.clamp(min=0).sqrt()) @ eigvec_a.T
    cross = torch.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a).clamp(min=0).sqrt().sum()
    return float((mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * cross)


def _scipy_frechet(a, b):
    """The textbook formula with scipy's general matrix square root (what clean-fid computes)."""
    from scipy import linalg

    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b).real
    return float((mu_a - mu_b) @ (mu_a - mu_b) + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root))


@pytest.mark.parametrize("n_a, n_b", [(600, 500), (40, 30)])  # full-rank and rank-deficient covariances (d = 64)
def test_frechet_matches_scipy_sqrtm(n_a, n_b):
    pytest.importorskip("scipy")
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(64, 64)) / 8
    a = np.maximum(rng.normal(size=(n_a, 64)) @ mix, 0)
    b = np.maximum(rng.normal(0.3, 1.2, size=(n_b, 64)) @ mix, 0)
    mu, cov = frechet.statistics(a)
    assert mu.dtype == cov.dtype == np.float64
    np.testing.assert_allclose(mu, a.mean(0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(cov, np.cov(a, rowvar=False), rtol=1e-12, atol=1e-15)
    # eigh of a symmetric matrix vs scipy's Schur-based sqrtm, measured: 2e-14 relative at full rank,
    # 6e-9 rank-deficient (sqrtm of a singular product is the less accurate side). Tolerance 1e-7.
    assert frechet.frechet_distance(a, b) == pytest.approx(_scipy_frechet(a, b), rel=1e-7)


def test_frechet_of_gaussians_with_commuting_covariances_has_its_closed_form():
    """N(m1, Q D1 Q^T) vs N(m2, Q D2 Q^T): FD = |m1 - m2|^2 + sum (sqrt d1 - sqrt d2)^2, exactly."""
    rng = np.random.default_rng(1)
    d = 32
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    m1, m2 = rng.normal(size=d), rng.normal(size=d)
    d1, d2 = rng.uniform(0.1, 4, d), rng.uniform(0.1, 4, d)
    expected = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(d1) - np.sqrt(d2)) ** 2)
    for rotation in (np.eye(d), q):  # diagonal, then the same Gaussians rotated
        value = frechet.frechet_from_statistics(m1, rotation @ np.diag(d1) @ rotation.T,
                                                m2, rotation @ np.diag(d2) @ rotation.T)
        assert value == pytest.approx(expected, rel=1e-10)
    assert frechet.frechet_from_statistics(m1, np.diag(d1), m1, np.diag(d1)) == pytest.approx(0, abs=1e-12)
    with pytest.raises(ValueError, match="mismatched"):
        frechet.frechet_from_statistics(m1, np.diag(d1), m2[:-1], np.diag(d2[:-1]))


def test_the_moved_function_gives_world_metrics_the_same_numbers_bit_for_bit():
    assert wm.frechet_distance is frechet.frechet_distance
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 16, generator=g)
    for y in (x, x + 0.5, torch.randn(300, 16, generator=g) * 2, torch.rand(700, 16, generator=g)):
        assert wm.frechet_distance(x, y) == _world_frechet_before_the_move(x, y)


@pytest.mark.parity  # clean-fid is a reference package: make test-metrics runs this in .venv-metrics
@pytest.mark.parametrize("shape", [(37, 53), (512, 384), (299, 299), (300, 1000)])
def test_clean_resize_equals_clean_fids_clean_mode(shape):
    from conftest import reference_package

    resize = reference_package("cleanfid.resize")
    image = np.random.default_rng(2).integers(0, 256, (*shape, 3), dtype=np.uint8)
    ours = fid.clean_resize(image)
    assert ours.dtype == np.float32 and ours.shape == (299, 299, 3)
    np.testing.assert_array_equal(ours, resize.build_resizer("clean")(image))
    np.testing.assert_array_equal(ours, resize.make_resizer("PIL", False, "bicubic", (299, 299))(image))


def test_clean_resize_is_not_quantised_and_stays_in_range():
    image = np.random.default_rng(3).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    out = fid.clean_resize(image)
    assert out.min() >= 0 and out.max() <= 255
    assert np.any(out != np.round(out))  # float values between integers survive
    grey = np.asarray(Image.fromarray(image[:, :, 1].astype(np.float32)).resize((299, 299), Image.BICUBIC))
    np.testing.assert_array_equal(out[:, :, 1], grey.clip(0, 255))  # channels are resized one by one


@pytest.fixture(scope="module")
def weights_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    write_inception(root)  # tests/metric_weights.py: a scripted stand-in with clean-fid's call interface
    return root


@pytest.fixture(autouse=True)
def no_clean_fid_cache(monkeypatch, tmp_path):
    """A real inception-2015-12-05.pt in /tmp must not stand in for the test's own."""
    monkeypatch.setattr(fid, "CLEAN_FID_CACHE", tmp_path / "clean-fid-cache")


def _images(seed, n, shape=(48, 64), low=0, high=256):
    return np.random.default_rng(seed).integers(low, high, (n, *shape, 3), dtype=np.uint8)


def test_the_scorer_finds_the_stand_in_and_gives_2048_float64_features(weights_root):
    scorer = get_metric("fid").load(weights_root, "cpu", batch_size=3)
    assert isinstance(scorer, fid.FidScorer)
    images = _images(0, 7)
    features = scorer.features(images)
    assert features.shape == (7, fid.FEATURE_DIM) and features.dtype == np.float64
    # The network sees clean-resized NCHW images mapped to [-1, 1], like clean-fid's InceptionV3W.
    resized = torch.from_numpy(np.stack([fid.clean_resize(im) for im in images])).permute(0, 3, 1, 2)
    with torch.no_grad():
        expected = scorer.network(resized, return_features=True)  # the stand-in normalises inside
    np.testing.assert_allclose(features, expected.double().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scorer.features(images[2:5]), features[2:5], rtol=1e-5, atol=1e-6)  # batch-independent
    mixed = scorer.features([images[0], _images(1, 1, (90, 30))[0]])  # sizes may differ in a list
    np.testing.assert_allclose(mixed[0], features[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(UserError, match="uint8"):
        scorer.features(images.astype(np.float32))


def test_fid_of_folders_is_zero_against_itself_and_positive_against_a_shift(weights_root, tmp_path):
    scorer = fid.load(weights_root, "cpu", batch_size=4)
    same, shifted = tmp_path / "a", tmp_path / "b"
    for folder, low, high in ((same, 0, 200), (shifted, 60, 256)):
        (folder / "sub").mkdir(parents=True)
        for i, image in enumerate(_images(4, 10, low=low, high=high)):
            Image.fromarray(image).save(folder / ("sub" if i % 3 == 0 else "") / f"{i:03d}.png")
    (same / "notes.txt").write_text("not an image")
    features_a, features_b = scorer.folder_features(same), scorer.folder_features(shifted)
    assert features_a.shape == (10, fid.FEATURE_DIM)
    scale = np.trace(np.cov(features_a, rowvar=False))
    # Not exactly 0: the stand-in's covariance has rank <= 8 of 2048, and the square roots of its
    # ~2040 round-off eigenvalues (about 1e-19 each, clamped at 0) add up to about 1e-6 of the scale.
    assert abs(scorer.distance(features_a, features_a)) <= 1e-4 * scale
    value = scorer.compare_folders(same, shifted)  # reads both folders again
    assert value > 0.01 * scale
    assert value == frechet.frechet_distance(features_a, features_b)
    described = scorer.describe()
    assert described["last_distance"]["covariance_rank_deficient"] and described["last_distance"]["n_a"] == 10
    with pytest.raises(UserError, match="at least 2"):
        scorer.distance(features_a[:1], features_b)


def test_describe_says_how_fid_was_measured(weights_root):
    path = weights_root / "clean-fid" / fid.INCEPTION_FILE
    described = fid.load(weights_root, "cpu").describe()
    assert described["metric"] == "fid" and described["mode"] == "clean"
    assert described["resize"] == "PIL bicubic on float32, per channel, 299x299"
    assert described["weights"] == str(path)
    assert described["weights_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert described["precision"] == "float32" and described["device"] == "cpu"
    assert described["versions"]["torch"] == importlib.metadata.version("torch")
    assert "last_distance" not in described


def test_the_inception_file_is_looked_for_explicitly_then_in_the_weights_root_then_in_clean_fids_cache(
        weights_root, tmp_path):
    stand_in = weights_root / "clean-fid" / fid.INCEPTION_FILE
    assert fid.find_inception(None, stand_in) == stand_in
    assert fid.find_inception(None, stand_in.parent) == stand_in  # a folder holding the file
    assert fid.find_inception(weights_root) == stand_in
    fid.CLEAN_FID_CACHE.mkdir()
    (fid.CLEAN_FID_CACHE / fid.INCEPTION_FILE).write_bytes(stand_in.read_bytes())
    assert fid.find_inception(tmp_path / "empty") == fid.CLEAN_FID_CACHE / fid.INCEPTION_FILE
    assert fid.find_inception(None) == fid.CLEAN_FID_CACHE / fid.INCEPTION_FILE


def test_missing_or_wrong_weights_are_one_line_user_errors(weights_root, tmp_path):
    with pytest.raises(UserError, match=fid.INCEPTION_FILE) as caught:
        fid.load(tmp_path / "empty", "cpu")
    message = str(caught.value)
    assert "\n" not in message and fid.INCEPTION_URL in message and str(fid.CLEAN_FID_CACHE) in message
    assert str(tmp_path / "empty" / "clean-fid" / fid.INCEPTION_FILE) in message
    with pytest.raises(UserError, match="nowhere.pt"):
        fid.load(None, "cpu", inception=str(tmp_path / "nowhere.pt"))  # an explicit path is never second-guessed
    junk = tmp_path / fid.INCEPTION_FILE
    junk.write_bytes(b"not a TorchScript archive")
    with pytest.raises(UserError, match="not a TorchScript file"):
        fid.load(None, "cpu", inception=str(junk))
    with pytest.raises(UserError, match="unknown FID backend"):
        fid.load(None, "cpu", backend="pytorch-fid")
    with pytest.raises(UserError, match="batch_size"):
        fid.load(weights_root, "cpu", batch_size=0)


def test_the_torchmetrics_backend_says_what_it_needs(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # no cached torch-fidelity weights
    with pytest.raises(UserError, match="torch-fidelity") as caught:
        fid.load(tmp_path, "cpu", backend="torchmetrics")
    assert "\n" not in str(caught.value)
