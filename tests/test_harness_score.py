"""`python -m harness.score` end to end on a folder of images with its manifest: a tiny random CLIP
saved in the real repository layout under a weights root (and the real LAION aesthetic head when
the shared copy is there), refusals before anything is written, and the FID pairing check."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness import score
from harness.metrics.aesthetic import HEAD_FILE
from harness.metrics.registry import METRICS, get_metric
from methods.common.errors import UserError
from metric_weights import HEAD_REPO, SHARED_HEAD, write_clip

PROMPTS = ["a red cube", "two blue spheres", "a green cone on a white floor", "a small purple diamond", "a cat"]


def _folder(path: Path, n: int = 5, seed: int = 0, styles: bool = False) -> Path:
    path.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        name = f"{i:05d}.png"
        Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(path / name)
        rows.append({"file": name, "prompt": PROMPTS[i % len(PROMPTS)], "seed": i, "sampler": "tiny",
                     **({"style": "photo" if i % 2 else "anime"} if styles else {})})
    (path / "manifest.json").write_text(json.dumps(rows))
    return path


@pytest.fixture(scope="module")
def weights_root(tmp_path_factory):
    """<root>/openai/clip-vit-large-patch14 (a tiny random CLIPModel with ViT-L/14's 768-d projection) and,
    where the shared copy is there, the real LAION head (tests/metric_weights.py)."""
    root = tmp_path_factory.mktemp("weights")
    write_clip(root)
    if SHARED_HEAD.is_file():
        head = root / HEAD_REPO
        head.mkdir(parents=True)
        shutil.copy(SHARED_HEAD, head / HEAD_FILE)
    return root


def test_clip_score_end_to_end_writes_every_image_and_its_provenance(weights_root, tmp_path):
    from harness.metrics.clip_score import ClipScorer

    folder = _folder(tmp_path / "images", styles=True)
    out = tmp_path / "scores.json"
    assert score.main([str(folder), "--metrics", "clip", "--weights-root", str(weights_root), "--out", str(out),
                       "--batch-size", "2"]) == 0
    record = json.loads(out.read_text())
    clip = record["metrics"]["clip"]
    direct = ClipScorer.load(weights_root / "openai" / "clip-vit-large-patch14")
    images = np.stack([np.asarray(Image.open(folder / f"{i:05d}.png")) for i in range(5)])
    expected = direct.score(images, PROMPTS)
    assert [clip["per_image"][f"{i:05d}.png"] for i in range(5)] == pytest.approx(expected, abs=1e-4)
    assert clip["mean"] == pytest.approx(expected.mean(), abs=1e-4) and clip["n"] == 5
    assert clip["scale"] == "100 x cosine" and clip["better"] == "higher"
    assert clip["per_style"]["photo"]["n"] == 2 and clip["per_style"]["anime"]["n"] == 3
    assert clip["scorer"]["model"].endswith("clip-vit-large-patch14")
    assert record["images"] == 5 and record["partial"] is False and record["samplers"] == ["tiny"]
    assert record["provenance"]["commit"] and "torchvision" in record["provenance"]["versions"]


@pytest.mark.skipif(not SHARED_HEAD.is_file(), reason=f"needs the real head at {SHARED_HEAD}")
def test_aesthetic_score_reads_the_head_from_the_weights_root(weights_root, tmp_path):
    folder = _folder(tmp_path / "images")
    out = tmp_path / "scores.json"
    assert score.main([str(folder), "--metrics", "aes,clip", "--weights-root", str(weights_root),
                       "--out", str(out)]) == 0
    aes = json.loads(out.read_text())["metrics"]["aes"]
    assert aes["n"] == 5 and aes["scorer"]["head_sha256"].startswith("21dd590f")
    assert all(5.236646 - 18.0 <= s <= 5.236646 + 18.0 for s in aes["per_image"].values())  # b +- ||w|| (unit inputs)
    assert np.ptp(list(aes["per_image"].values())) > 0


def _refused(capsys, argv, out: Path, *words):
    assert score.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err
    assert not out.exists()


def test_mismatched_manifests_and_missing_weights_are_refused_before_writing(weights_root, tmp_path, capsys):
    folder = _folder(tmp_path / "images")
    out = tmp_path / "scores.json"
    Image.fromarray(np.zeros((48, 40, 3), np.uint8)).save(folder / "stray.png")
    _refused(capsys, [str(folder), "--metrics", "clip", "--weights-root", str(weights_root), "--out", str(out)],
             out, "5 manifest rows but 6 images", "stray.png")
    (folder / "stray.png").unlink()
    (folder / "00001.png").unlink()
    _refused(capsys, [str(folder), "--metrics", "clip", "--out", str(out)], out, "listed and missing", "00001.png")
    folder = _folder(tmp_path / "complete")
    _refused(capsys, [str(folder), "--metrics", "aes", "--weights-root", str(tmp_path / "empty"), "--out", str(out)],
             out, HEAD_FILE)
    _refused(capsys, [str(folder), "--metrics", "hps", "--out", str(out)], out, "hps-v2.1")  # never a default version
    _refused(capsys, [str(folder), "--metrics", "clips", "--out", str(out)], out, "did you mean 'clip'")


class _StubFeatures:
    """A distribution scorer on mean pixel colour, standing in for Inception."""

    def features(self, images):
        return images.reshape(len(images), -1, 3).mean(1).astype(np.float64)

    def distance(self, a, b):
        return float(np.abs(a.mean(0) - b.mean(0)).sum())


def test_fid_to_teacher_needs_the_same_prompts_and_seeds(tmp_path):
    student, teacher = _folder(tmp_path / "student", seed=0), _folder(tmp_path / "teacher", seed=1)
    metric = get_metric("fid")
    rows = score.read_manifest(student)
    result = score.score_distribution(metric, _StubFeatures(), student, rows, teacher, unpaired=False, batch_size=2)
    assert result["paired_prompts_and_seeds"] and result["n"] == result["n_reference"] == 5 and result["value"] > 0
    other = _folder(tmp_path / "other", n=4)
    with pytest.raises(UserError, match="same \\(prompt, seed\\) pairs"):
        score.score_distribution(metric, _StubFeatures(), student, rows, other, unpaired=False, batch_size=2)
    unpaired = score.score_distribution(metric, _StubFeatures(), student, rows, other, unpaired=True, batch_size=2)
    assert not unpaired["paired_prompts_and_seeds"] and unpaired["n_reference"] == 4
    with pytest.raises(UserError, match="--reference"):
        score.score_distribution(metric, _StubFeatures(), student, rows, None, unpaired=False, batch_size=2)


def test_every_registered_metric_states_its_scale_direction_and_weights():
    for metric in METRICS.values():
        assert metric.scale and metric.better in ("higher", "lower") and metric.weights
        assert metric.loader.startswith("harness.metrics.")


def test_scorer_options_split_at_the_last_dot_so_dotted_metric_names_work():
    from harness.score import _options

    assert _options(["hps-v2.1.precision=fp16", "aes.head=/x/y.pth"]) == {
        "hps-v2.1": {"precision": "fp16"}, "aes": {"head": "/x/y.pth"}}
    with pytest.raises(UserError):
        _options(["precision=fp16"])
