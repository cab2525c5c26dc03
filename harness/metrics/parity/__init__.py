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

- `hps_parity` (hps.py): HPS v2.1 (harness.metrics.hps, transformers CLIPModel) against hpsv2 1.2.0's own
  code: its vendored open_clip ViT-H-14 built as `evaluation.initialize_model` builds it, its
  `preprocess_val` on PIL images, its tokenizer, and `evaluate_benchmark`'s
  `diag(100 * image_features @ text_features.T)`; float32 on CPU on both sides (hpsv2 runs under
  CUDA AMP, float16, on a GPU, where agreement is looser).
- `aesthetic_parity` (aesthetic.py): the LAION improved predictor (harness.metrics.aesthetic) against its
  `simple_inference.py` path: OpenAI CLIP's `clip.load` preprocess and `encode_image` (open_clip's
  ViT-L-14-quickgelu, the OpenAI architecture), numpy L2 normalisation, then the MLP, with the real
  head. The project's side reads a transformers folder laid out as openai/clip-vit-large-patch14
  and preprocesses as clip.load does; transformers 5's two image processors are measured beside it.
- `clip_parity` (clip.py): CLIP score (harness.metrics.clip_score) against torchmetrics' `CLIPScore` on the
  same transformers folder, on short prompts where the two conventions agree.
- `fid_parity` (fid.py): FID (harness.metrics.fid, clean mode) against clean-fid's `compute_fid` folder to
  folder, both on the scripted stand-in network of harness/metrics/stand_in.py (clean-fid's
  TorchScript call interface), since the Inception weights cannot be downloaded: the resize,
  batching, statistics and Frechet distance are compared, the Inception weights are not.
- `vbench_parity` (vbench.py): VBench's aggregation (harness.metrics.vbench) against the repository's
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

The modules: common.py (what the comparisons share: differences, records, float32 on CUDA, seeded inputs),
clip_folder.py (openai/clip-vit-large-patch14's tokenizer, config and folder rebuilt offline), tolerances.py
(the tolerances claimed and what they were set from), one module per comparison above, and cli.py (the
command line: RUNNERS, table, main; `python -m harness.metrics.parity` runs it through __main__.py).

The reference packages live in .venv-metrics (scripts/setup_metrics.sh) and are imported inside
the functions, so this package imports without them.
"""
from .aesthetic import AES_SHAPES, aesthetic_parity, crop_offsets
from .cli import RUNNERS, main, table
from .clip import CLIP_PROMPTS, CLIP_SHAPES, clip_parity
from .clip_folder import (BPE_FILE, BPE_SHA256, OPENAI_L14_PREPROCESSOR, clip_l14_config, random_state,
                          write_clip_l14_folder, write_clip_tokenizer)
from .common import (COMPARISONS, PACKAGES, REPOSITORY, SHARED_HEAD, _device_fields, difference, float32_on,
                     perturb_small_parameters, random_images)
from .fid import FID_SHAPES, fid_parity
from .hps import HPS_PROMPTS, HPS_SHAPES, hps_parity, import_hpsv2_open_clip
from .tolerances import (AES_FP16_TOLERANCE, AES_TOLERANCE, CLIP_TOLERANCE, FID_CUDA_TOLERANCE, FID_TOLERANCE,
                         HPS_AMP_TOLERANCE, HPS_GPU_PREPROCESSING_TOLERANCE, HPS_TOLERANCE, VBENCH_TOLERANCE)
from .vbench import vbench_parity

__all__ = [
    "REPOSITORY", "SHARED_HEAD", "PACKAGES", "COMPARISONS", "difference", "_device_fields", "float32_on",
    "random_images", "perturb_small_parameters",
    "BPE_FILE", "BPE_SHA256", "OPENAI_L14_PREPROCESSOR", "write_clip_tokenizer", "clip_l14_config",
    "write_clip_l14_folder", "random_state",
    "HPS_TOLERANCE", "HPS_AMP_TOLERANCE", "HPS_GPU_PREPROCESSING_TOLERANCE", "AES_TOLERANCE", "AES_FP16_TOLERANCE",
    "CLIP_TOLERANCE", "FID_TOLERANCE", "FID_CUDA_TOLERANCE", "VBENCH_TOLERANCE",
    "HPS_SHAPES", "HPS_PROMPTS", "import_hpsv2_open_clip", "hps_parity",
    "AES_SHAPES", "aesthetic_parity", "crop_offsets",
    "CLIP_SHAPES", "CLIP_PROMPTS", "clip_parity",
    "FID_SHAPES", "fid_parity",
    "vbench_parity",
    "RUNNERS", "table", "main",
]
