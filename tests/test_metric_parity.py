"""The project's metric scorers against the reference implementations, on CPU, with seeded random weights
of the real architectures (harness/metrics/parity/ runs each comparison; this asserts it).

Each comparison claims absolute tolerances for its pixels, features and scores; they are set in
harness/metrics/parity/tolerances.py (HPS_TOLERANCE, AES_TOLERANCE, CLIP_TOLERANCE, FID_TOLERANCE) from what was
measured, with the measurement and the reason beside each. Summary (2-core CPU, torch 2.14.1, float32):

- HPS v2.1 vs hpsv2 1.2.0 (ViT-H-14): pixels bitwise, features 7.5e-8, scores 2.0e-6 -> 1e-5 / 1e-4.
- Aesthetic vs the LAION predictor's clip.load path (ViT-L/14, real head): PIL backend bitwise pixels,
  scores 5e-7 -> 1e-4; torchvision backend one uint8 level, scores 1.5e-4 -> 2e-3; an image whose centre
  crop starts one pixel apart (transformers floors, torchvision's CenterCrop rounds) 4.4e-3 -> 0.02.
- CLIP score vs torchmetrics CLIPScore (ViT-L/14): per pair 5.6e-6, clamped mean 1e-6 -> 1e-4.
- FID vs clean-fid compute_fid (stand-in network): features bitwise, FID 4.6e-7 -> 1e-4.

The reference packages live in .venv-metrics (scripts/setup_metrics.sh). A test whose reference package is
not importable skips, except under TDM_REQUIRE_PARITY=1 (`make test-metrics`, CI), where it fails.

    .venv-metrics/bin/python -m pytest tests/test_metric_parity.py -m parity -p no:cacheprovider -o addopts=""

About 3-4 minutes on 2 cores; at most one ViT-H-14 in float32 (about 4 GB) is held at a time.

On a CUDA GPU (`-m "parity and gpu"`, skipped elsewhere) the same comparisons run with device="cuda": HPS as
hpsv2 runs there (float16 autocast; tolerances HPS_AMP_TOLERANCE, HPS_GPU_PREPROCESSING_TOLERANCE) and in
float32; the rest in float32 with TF32 off, plus the aesthetic path in clip.load's float16 (AES_FP16_TOLERANCE).
"""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.metrics import parity

pytestmark = pytest.mark.parity


def _needs(*modules: str) -> None:
    from conftest import reference_package

    for name in modules:
        reference_package(name)


def _assert_within(result: dict) -> None:
    """Every row's differences within the tolerances the comparison claims, named in the message."""
    assert result["rows"], result
    for row in result["rows"]:
        for key, tolerance in row["tolerance"].items():
            measured = row[key]
            assert measured is not None, f"{result['metric']} {row['label']}: {key} not measured"
            assert measured["max_abs"] <= tolerance, (
                f"{result['metric']} {row['label']}: {key} differ by {measured['max_abs']:.3g} "
                f"(relative {measured['max_rel']:.3g}), over the claimed {tolerance:g}; {result['explanation']}")
        assert row["within_tolerance"], row
    assert result["within_tolerance"]


def test_hps_equals_hpsv2s_own_evaluation_code():
    _needs("torchvision", "hpsv2", "open_clip")  # open_clip_torch: the BPE file hpsv2's wheel lacks
    result = parity.hps_parity()
    _assert_within(result)
    row = result["rows"][0]
    assert row["tokens_equal_through_end_of_text"]  # incl. ftfy / HTML cleaning and a prompt over 77 tokens
    assert result["details"]["score_spread"] > 1.0  # the random model tells the images apart: not vacuous
    assert result["n"] == 4 and result["details"]["parameters"] > 9e8  # the full ViT-H-14


def test_aesthetic_equals_the_laion_predictors_path():
    _needs("torchvision", "open_clip")
    result = parity.aesthetic_parity()
    _assert_within(result)
    labels = {row["label"] for row in result["rows"]}
    assert labels == set(parity.AES_TOLERANCE)  # the project, and both processors with and without the offset
    project = next(row for row in result["rows"] if row["label"] == "project")
    assert project["n"] == 4 and project["pixels"]["max_abs"] <= 1e-6  # clip.load's pixels, every size
    details = result["details"]
    assert details["project_score_call_max_abs"] <= 1e-5  # score() is the path measured (float32 batching)
    assert details["openclip_preprocess_equals_clip_transform"]  # open_clip's OpenAI preprocess is clip.load's
    if parity.SHARED_HEAD.is_file():
        assert details["head"].startswith("the real LAION head")
    # The crop offset is the rounding of an odd excess: 347 - 224 = 123 -> 62 (round half to even) vs 61.
    assert parity.crop_offsets(333, 517) == ((0, 62), (0, 61))
    assert parity.crop_offsets(768, 512) == ((56, 0), (56, 0))


def test_clip_score_equals_torchmetrics_clipscore_on_short_prompts():
    _needs("torchmetrics", "torchvision", "open_clip")  # open_clip_torch: the BPE file of the tokenizer
    result = parity.clip_parity()
    _assert_within(result)
    per_pair, mean = result["rows"]
    assert per_pair["positive_pairs"]["count"] >= 1
    assert mean["reference_mean_positive"]  # CLIPScore clamps its mean at 0: a positive one is compared


def test_fid_equals_clean_fids_compute_fid_on_the_stand_in_network():
    _needs("cleanfid.fid", "scipy")
    result = parity.fid_parity()
    _assert_within(result)
    assert result["details"]["reference_fid"] > 0.5  # two distributions apart, not a near-zero FID
    assert result["n"] == 64


# --- the device plumbing (no comparison run) ---------------------------------------------------------

def test_the_cpu_records_device_field_is_as_before_and_tf32_is_off_only_on_cuda():
    assert parity._device_fields("cpu") == {"device": "cpu"}
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    with parity.float32_on("cpu"):
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before
    with parity.float32_on("cuda"):  # the flags are settable without a GPU
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before


def test_the_command_line_checks_its_arguments_before_running_anything(tmp_path):
    out = str(tmp_path / "parity.json")
    assert parity.main(["--only", "hps,nope", "--out", out]) == 2
    assert parity.main(["--only", "aes", "--aes-head", str(tmp_path / "missing.pth"), "--out", out]) == 2
    if not torch.cuda.is_available():
        assert parity.main(["--device", "cuda", "--only", "hps", "--out", out]) == 2
    assert not Path(out).exists()


def test_an_explicit_only_decides_whether_vbench_runs(tmp_path):
    import json

    out = tmp_path / "parity.json"
    assert parity.main(["--only", "vbench", "--out", str(out)]) == 1  # no --vbench-scripts: recorded as an error
    record = json.loads(out.read_text())
    assert list(record["results"]) == ["vbench"] and "vbench-scripts" in record["results"]["vbench"]["error"]
    assert record["what"].endswith("CPU")


def test_hpsv2_imports_where_its_unused_clint_and_turtle_imports_are_not_installed():
    """hpsv2/__init__ imports clint (its downloads' progress bar) and its vendored open_clip `from turtle import
    forward`: neither is used by the comparison, and a bare GPU image lacks clint (and maybe tkinter)."""
    _needs("hpsv2", "open_clip")
    probe = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("turtle", "clint", "tkinter"):
            raise ImportError("blocked " + name)
sys.meta_path.insert(0, Block())
from harness.metrics import parity
module, note = parity.import_hpsv2_open_clip()
assert callable(module.create_model_and_transforms) and callable(module.get_tokenizer)
assert not [n for n in sys.modules if n.split(".")[0] in ("turtle", "clint")], "stand-ins left behind"
print(note)
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                          cwd=parity.REPOSITORY)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "empty stand-ins for hpsv2's unused imports of turtle, clint" in done.stdout


# --- on a GPU ----------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("name, modules", [("hps", ("torchvision", "hpsv2", "open_clip")),
                                           ("aes", ("torchvision", "open_clip")),
                                           ("clip", ("torchmetrics", "torchvision", "open_clip")),
                                           ("fid", ("cleanfid.fid", "scipy"))])
def test_on_a_gpu_each_comparison_is_within_its_claimed_tolerances(name, modules):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    _needs(*modules)
    result = parity.RUNNERS[name](device="cuda")
    _assert_within(result)
    assert result["device"].startswith("cuda:") and result["device_name"]
    assert result["tf32"] == {"matmul": False, "cudnn": False}
    labels = [row["label"] for row in result["rows"]]
    if name == "hps":
        assert labels == ["amp", "amp, GPU preprocessing", "fp32"]
        assert result["details"]["reference_amp_dtypes"]["scores"] == "torch.float16"  # hpsv2's cosine in autocast
    if name == "aes":
        assert "project vs clip.load on a GPU (float16)" in labels
        assert result["details"]["clip_load_fp16"]["embedding_dtype"] == "torch.float16"
