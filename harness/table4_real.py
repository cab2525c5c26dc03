"""Table 4 at real size: CogVideoX-2B (50 steps, CFG 6) against TDM at 4 steps, on VBench.

    python -m harness.table4_real plan [--weights-root DIR] [--vbench-root DIR] [--vbench-env DIR] [--student DIR]
    python -m harness.table4_real run --device cuda --weights-root DIR --vbench-root DIR [--cells a,b] [--no-vbench]

Cells (CELLS):
- cogvideox-2b-teacher: THUDM/CogVideoX-2b through diffusers' CogVideoXPipeline with its own
  settings: the repository's CogVideoXDDIMScheduler (trailing spacing), 50 steps, constant CFG 6
  (CogVideoXPipeline.__call__'s defaults in diffusers 0.42.1; THUDM/CogVideo inference/cli_demo.py
  at 1c2e487, the commit VBench's CogVideoX-2B entry names, samples so: 50 steps, guidance 6.0,
  49 frames, mp4 at 8 fps). VBench's leaderboard entry "CogVideoX-2B (SAT, prompt-optimized)"
  was sampled by the SAT code instead (sat/configs/cogvideox_2b_infer.yaml at 1c2e487:
  VPSDEDPMPP2MSampler, 50 steps, DynamicCFG scale 6, exp 5); that sampler is not reproduced here.
- tdm-cogvideox-2b-lora: the released TDM LoRA, Luo-Yihong/TDM_CogVideoX-2B_LoRA (TDM README,
  "Pre-trained Models"), on the teacher, sampled at guidance 1 on the timesteps it was trained on,
  [999, 856, 665, 399], with baselines.cogvideox_scheduler.CogVideoXTimestepsDDIMScheduler (the
  README itself samples 4 steps of the stock scheduler, [999, 749, 499, 249], and says the
  uniform spacing "may cause inferior results"). The README loads the repository without a file
  name; the file is taken as diffusers' default pytorch_lora_weights.safetensors, or the folder's
  only .safetensors file, as diffusers' own guess does.
- tdm-cogvideox-2b-project: this project's student, the export of
  `python -m methods.tdm.train --preset cogvideox-2b` (<run>/student-K4, a whole CogVideoXPipeline
  folder with tdm_student.json), sampled at guidance 1 on its card's timesteps. "needs training"
  while absent.

All three sample in float16 on a GPU (CogVideoX-2B's model card recommends FP16 for the 2B; the
TDM README loads it so), float32 on a CPU.

Prompts: VBench's all-dimension suite (prompts/all_dimension.txt, 946 lines; the 11 per-dimension
suites of prompts/prompts_per_dimension/ concatenated), by default sampled from its GPT-augmented
version (prompts/augmented_prompts/gpt_enhanced_prompts/all_dimension_longer.txt), which VBench's
CogVideoX-2B entries used (sampled_videos/README.md). Each video is named by the ORIGINAL prompt,
`<prompt>-<i>.mp4`, i = 0..4 (VBench's standard mode looks them up so), 25 videos (i = 0..24)
for the 75 temporal-flickering prompts, of which VBench's static filter keeps up to 5 (VBench
prompts/README.md). Two prompts are listed twice with different augmented texts; their files
coincide, and the later line's text is sampled, as VBench's sampling loop (which overwrites) ends
up with. Names come from the VBench_full_info.json that evaluates them (the vbench wheel in the
VBench environment, or a checkout's), which lists the same 946 prompts in the same order
(Vchitect/VBench@45e79ec and the vbench 0.1.5 wheel). The augmented list is not in the wheel: it
needs a checkout (--vbench-root). Video j of prompt line l (0-based) has seed
seed * 1_000_000 + l * 100 + j, the same in every cell.

Layout under --out (default runs/table4-real): <cell>/videos/*.mp4 (only the videos: VBench's
standard mode takes the first entry's suffix for all), <cell>/manifest.json (prompt, sampled
prompt and seed per file, and the recipe), <cell>/sampler.json, <cell>/vbench/ (harness.vbench
run: raw results, logs, vbench.json), and <cell>.json: VBench Total, Quality and Semantic
(percent, as Table 4 prints them), the paper's numbers beside them, the provenance. Sampling
resumes: existing mp4s are kept (each is written to <cell>/tmp/ and moved into place when
complete); a folder made under another recipe or prompt list is refused.

A missing weight file, prompt file, VBench environment or mp4 writer is one line on stderr and
exit code 2, before anything is written; a VBench run in which some dimension failed exits 1.
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from methods.common.cli import OneLineParser, check_device, quiet_libraries
from methods.common.errors import UserError, did_you_mean
from methods.common.provenance import provenance, write_json_atomic

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "runs" / "table4-real"
DEFAULT_ENV = ROOT / ".vbench-env"  # where scripts/vbench_env.sh puts it
DEFAULT_STUDENT = ROOT / "runs" / "cogvideox-2b"  # the cogvideox-2b preset's output_dir
TRAIN_COMMAND = "python -m methods.tdm.train --preset cogvideox-2b prompts=<prompt file> [teacher=<folder>]"

TEACHER_REPO = "THUDM/CogVideoX-2b"  # also served as zai-org/CogVideoX-2b
LORA_REPO = "Luo-Yihong/TDM_CogVideoX-2B_LoRA"
LORA_FILE = "pytorch_lora_weights.safetensors"  # diffusers' default name; the README names no file
STUDENT_CARD = "tdm_student.json"
# THUDM/CogVideoX-2b's diffusers files (huggingface.co/THUDM/CogVideoX-2b/tree/main and its folders).
TEACHER_FILES = (
    "model_index.json", "scheduler/scheduler_config.json",
    "transformer/config.json", "transformer/diffusion_pytorch_model.safetensors",
    "vae/config.json", "vae/diffusion_pytorch_model.safetensors",
    "text_encoder/config.json", "text_encoder/model.safetensors.index.json",
    "text_encoder/model-00001-of-00002.safetensors", "text_encoder/model-00002-of-00002.safetensors",
    "tokenizer/spiece.model", "tokenizer/tokenizer_config.json", "tokenizer/special_tokens_map.json",
    "tokenizer/added_tokens.json")
MODEL_COMPONENTS = ("transformer", "vae", "text_encoder")
WEIGHT_SUFFIXES = (".safetensors", ".bin")

# VBench (Vchitect/VBench@45e79ec; the vbench 0.1.5 wheel holds only vbench/VBench_full_info.json of these).
VBENCH_URL = "https://github.com/Vchitect/VBench"
VBENCH_SETUP = "scripts/vbench_env.sh"
ORIGINAL = "prompts/all_dimension.txt"
AUGMENTED = "prompts/augmented_prompts/gpt_enhanced_prompts/all_dimension_longer.txt"
FULL_INFO = "vbench/VBench_full_info.json"
PER_DIMENSION = "prompts/prompts_per_dimension/{}.txt"
N_LINES, N_NAMES, N_FLICKER = 946, 944, 75
# The 11 prompt suites (prompts/prompts_per_dimension/*.txt, 946 lines in all) and the suite each
# of the 16 dimensions is scored on, with its prompt count (prompts/README.md's table).
SUITES = {"subject_consistency": 72, "temporal_flickering": 75, "object_class": 79, "multiple_objects": 82,
          "human_action": 100, "color": 85, "spatial_relationship": 84, "scene": 86, "temporal_style": 100,
          "appearance_style": 90, "overall_consistency": 93}
DIMENSION_SUITE = {"subject_consistency": "subject_consistency", "background_consistency": "scene",
                   "temporal_flickering": "temporal_flickering", "motion_smoothness": "subject_consistency",
                   "dynamic_degree": "subject_consistency", "aesthetic_quality": "overall_consistency",
                   "imaging_quality": "overall_consistency", "object_class": "object_class",
                   "multiple_objects": "multiple_objects", "human_action": "human_action", "color": "color",
                   "spatial_relationship": "spatial_relationship", "scene": "scene",
                   "temporal_style": "temporal_style", "appearance_style": "appearance_style",
                   "overall_consistency": "overall_consistency"}
GRIT_DIMENSIONS = ("object_class", "multiple_objects", "color", "spatial_relationship")  # need detectron2
# The weights VBench reads from its cache folder ($VBENCH_CACHE_DIR, default ~/.cache/vbench), by
# dimension (vbench/utils.py init_submodules; scripts/vbench_env.sh). Missing ones it downloads
# itself (wget), which an offline GPU machine cannot.
VBENCH_WEIGHTS = {
    "clip_model/ViT-B-32.pt": ("background_consistency", "appearance_style"),
    "clip_model/ViT-L-14.pt": ("aesthetic_quality",),
    "dino_model/dino_vitbase16_pretrain.pth": ("subject_consistency",),
    "dino_model/facebookresearch_dino_main": ("subject_consistency",),
    "aesthetic_model/emb_reader/sa_0_4_vit_l_14_linear.pth": ("aesthetic_quality",),
    "amt_model/amt-s.pth": ("motion_smoothness",),
    "raft_model/models/raft-things.pth": ("dynamic_degree", "temporal_flickering"),  # the static filter
    "pyiqa_model/musiq_spaq_ckpt-358bb6af.pth": ("imaging_quality",),
    "umt_model/l16_ptk710_ftk710_ftk400_f16_res224.pth": ("human_action",),
    "grit_model/grit_b_densecap_objectdet.pth": GRIT_DIMENSIONS,
    "caption_model/tag2text_swin_14m.pth": ("scene",),
    "ViCLIP/ViClip-InternVid-10M-FLT.pth": ("temporal_style", "overall_consistency"),
    "ViCLIP/bpe_simple_vocab_16e6.txt.gz": ("temporal_style", "overall_consistency"),
}

# The VBench protocol and CogVideoX-2B's clip.
SAMPLES, FLICKER_SAMPLES = 5, 25
FRAMES, HEIGHT, WIDTH, FPS = 49, 480, 720, 8
RELEASED_TIMESTEPS = (999, 856, 665, 399)

# Sampling cost per video: NFE x one transformer forward + one 3D VAE decode + the T5 encoding, as
# measured on one H200 (results/bench/cogvideox-2b-sampling-h200.json, python -m methods.tdm.bench_sampling).
TRANSFORMER_SECONDS = 0.315
VAE_SECONDS = 2.12
T5_SECONDS = 0.026
COST_BASIS = (
    f"transformer {TRANSFORMER_SECONDS} s per forward per clip and 3D VAE decode {VAE_SECONDS} s per clip "
    f"(no tiling, 29.3 GiB peak), T5 encoding {T5_SECONDS} s: CogVideoX-2B at 49x480x720, bf16, batch 1, random "
    "weights, one H200 (results/bench/cogvideox-2b-sampling-h200.json)",
    "unmeasured: float16 against bfloat16, mp4 encoding, and VBench's own evaluation time")

# Table 4 of the paper (percent).
PAPER = {"teacher": {"vbench_total": 80.91, "vbench_quality": 82.18, "vbench_semantic": 75.83},
         "tdm": {"vbench_total": 81.65, "vbench_quality": 82.66, "vbench_semantic": 77.64}}


@dataclass(frozen=True)
class CellSpec:
    key: str
    row: str        # the paper's Table 4 row it stands for
    method: str
    paper: str      # key of PAPER
    kind: str       # "teacher" | "lora" | "project"


CELLS = {c.key: c for c in (
    CellSpec("cogvideox-2b-teacher", "CogVideoX-2B", "CogVideoX-2B", "teacher", "teacher"),
    CellSpec("tdm-cogvideox-2b-lora", "TDM (4 NFE)", "TDM (released LoRA)", "tdm", "lora"),
    CellSpec("tdm-cogvideox-2b-project", "TDM (4 NFE)", "TDM (this project's student)", "tdm", "project"),
)}


# ---- configuration and plan ------------------------------------------------------------------

@dataclass(frozen=True)
class Table4Config:
    out: Path = DEFAULT_OUT               # videos, manifests, VBench's raw results
    results_dir: Path | None = None       # where <cell>.json goes; None: `out`
    weights_root: Path | None = None      # laid out <root>/<owner>/<name>/<file>; None: the Hugging Face cache
    vbench_root: Path | None = None       # a checkout of Vchitect/VBench (the augmented prompts are only there)
    vbench_env: Path = DEFAULT_ENV        # VBench's own environment (scripts/vbench_env.sh)
    student: Path = DEFAULT_STUDENT       # the cogvideox-2b run folder, or its student-K4 export
    cells: tuple[str, ...] = tuple(CELLS)
    prompts: str = "augmented"            # "augmented" (the CogVideoX entries') | "original"
    samples: int = SAMPLES                # videos per prompt, i = 0 .. samples - 1
    flicker_samples: int = FLICKER_SAMPLES  # videos per temporal-flickering prompt (static filter keeps 5)
    seed: int = 0
    dtype: str = "float16"                # on a GPU; a CPU samples in float32
    dimensions: str = "all"               # VBench dimensions to score
    limit: int | None = None              # only the first N prompt names (a smoke run: never the benchmark)
    clip: tuple[int, int, int] | None = None  # (frames, height, width) instead of 49x480x720: tests and smoke runs
    hub_weights: bool = False             # let VBench fetch CLIP and DINO from their hubs

    def __post_init__(self):
        unknown = [c for c in self.cells if c not in CELLS]
        if unknown or not self.cells:
            hint = did_you_mean(unknown[0], CELLS) if unknown else ""
            raise UserError(f"--cells must name some of {', '.join(CELLS)}; got {','.join(self.cells) or 'none'}{hint}")
        if self.prompts not in ("augmented", "original"):
            raise UserError(f"--prompts must be augmented or original, got {self.prompts!r}")
        if not 1 <= self.samples <= self.flicker_samples <= 100:
            raise UserError(f"need 1 <= --samples ({self.samples}) <= --flicker-samples "
                            f"({self.flicker_samples}) <= 100")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"--limit must be at least 1, got {self.limit}")
        if self.seed < 0 or self.seed > 2000:
            raise UserError(f"--video-seed must be in [0, 2000], got {self.seed}")
        if self.dtype not in ("float16", "bfloat16", "float32"):
            raise UserError(f"--dtype must be float16, bfloat16 or float32, got {self.dtype!r}")

    @property
    def protocol(self) -> bool:
        """Whether the videos follow VBench's protocol (every prompt, 5 per prompt, 49x480x720)."""
        return self.limit is None and self.samples == SAMPLES and self.clip is None


@dataclass(frozen=True)
class PromptFile:
    what: str                 # what it is for
    relpath: str              # its path in a VBench checkout
    path: Path | None         # where it was found
    count: int | None         # its prompts
    expected: int | None


@dataclass(frozen=True)
class VideoRow:
    file: str                 # <original prompt>-<index>.mp4
    prompt: str               # the original prompt (VBench looks the video up by it)
    sampled_prompt: str       # what the model is given: the augmented text, or the original
    line: int                 # 0-based line in the prompt list
    index: int
    seed: int


@dataclass(frozen=True)
class PromptPlan:
    kind: str                                  # "augmented" | "original"
    files: tuple[PromptFile, ...]
    per_dimension: dict                        # dimension -> prompts it is scored on
    per_dimension_source: str
    n_lines: int | None
    n_names: int | None
    duplicates: tuple[tuple[str, tuple[int, ...]], ...]  # prompt, its 1-based lines
    flicker_prompts: int | None
    rows: tuple[VideoRow, ...]                 # empty while a file is missing
    missing: tuple[str, ...]                   # one line per missing file: what, and where to get it


@dataclass(frozen=True)
class CostEstimate:
    nfe: int
    seconds_per_video: float
    videos: int
    gpu_hours: float
    basis: tuple[str, ...] = COST_BASIS


@dataclass(frozen=True)
class CellPlan:
    spec: CellSpec
    sampler: str              # one line: base, weights, scheduler, steps, guidance, dtype
    steps: int
    nfe: int
    guidance: float
    timesteps: tuple[int, ...] | None
    frames: int
    height: int
    width: int
    status: str               # "done" | "ready" | "missing weights" | "needs training"
    missing: tuple[str, ...]  # one line per missing file
    how: str                  # how to provide what is missing
    videos: int
    videos_done: int
    cost: CostEstimate
    folder: Path
    result: Path
    paper: dict
    source: str
    notes: str = ""
    recipe: object = None     # baselines.recipe.SamplerRecipe, when it can be built
    sampler_root: Path | None = None  # the weights root the recipe's base is found under

    @property
    def key(self) -> str:
        return self.spec.key


@dataclass(frozen=True)
class VBenchPlan:
    env: Path
    python: Path | None
    package: Path | None      # the installed vbench package folder
    detectron2: bool
    cache_dir: Path
    dimensions: tuple[str, ...]
    missing: tuple[str, ...]          # what stops VBench from running at all
    missing_weights: tuple[str, ...]  # VBench's cache files absent (it would try to download them)


@dataclass(frozen=True)
class Table4Plan:
    config: Table4Config
    prompts: PromptPlan
    cells: tuple[CellPlan, ...]
    vbench: VBenchPlan

    @property
    def videos_per_cell(self) -> int:
        return len(self.prompts.rows) or _expected_videos(self.config)


def _expected_videos(config: Table4Config) -> int:
    names = min(config.limit or N_NAMES, N_NAMES)
    flicker = min(N_FLICKER, names)
    return names * config.samples + flicker * (config.flicker_samples - config.samples)


# ---- VBench's files ------------------------------------------------------------------------------

def _site_packages(env: Path) -> list[Path]:
    return [Path(p) for p in sorted(glob.glob(str(env / "lib" / "python*" / "site-packages")))]


def vbench_package(env: Path) -> Path | None:
    """The vbench package folder installed in VBench's environment, or None."""
    for site in _site_packages(env):
        if (site / "vbench" / "VBench_full_info.json").is_file():
            return site / "vbench"
    return None


def checkout_of_env(env: Path) -> Path | None:
    """The VBench checkout an editable install (`pip install -e <checkout>`) points at, or None."""
    for site in _site_packages(env):
        for record in sorted(site.glob("vbench-*.dist-info/direct_url.json")):
            try:
                url = json.loads(record.read_text()).get("url", "")
            except (OSError, ValueError):
                continue
            if url.startswith("file://") and (Path(url[len("file://"):]) / "prompts").is_dir():
                return Path(url[len("file://"):])
    return None


def _lines(path: Path) -> list[str]:
    """Prompts one per line, stripped as VBench's loops strip them; trailing blank lines dropped."""
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if any(not line for line in lines):
        raise UserError(f"{path} has a blank line at line {lines.index('') + 1}: not a VBench prompt list")
    return lines


def _full_info(path: Path) -> list[dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        assert isinstance(data, list) and all(isinstance(e["prompt_en"], str) and isinstance(e["dimension"], list)
                                              for e in data)
    except (OSError, ValueError, AssertionError, KeyError, TypeError):
        raise UserError(f"{path} is not VBench's full-info file (a list of {{prompt_en, dimension}})") from None
    return data


def _first(*paths: Path | None) -> Path | None:
    return next((p for p in paths if p is not None and p.is_file()), None)


def video_seed(line: int, index: int, seed: int) -> int:
    """The seed of video `index` of prompt line `line` (0-based): the same in every cell."""
    return seed * 1_000_000 + line * 100 + index


def _checked_name(prompt: str, index: int) -> str:
    name = f"{prompt}-{index}.mp4"
    if "/" in prompt or "\0" in prompt or len(name.encode()) > 255:
        raise UserError(f"prompt {prompt[:60]!r}... cannot name a file ({name!r}): VBench's standard mode needs "
                        "<prompt>-<i>.mp4")
    return name


def prompt_plan(config: Table4Config) -> PromptPlan:
    """VBench's prompts as this config samples them: which files were found, counts, and the videos."""
    root = config.vbench_root
    checkout = root if root is not None else checkout_of_env(config.vbench_env)
    package = vbench_package(config.vbench_env)
    at = (lambda rel: checkout / rel if checkout is not None else None)
    # The names: the evaluating vbench's full-info file first (it is what looks the videos up).
    info_path = _first(package / "VBench_full_info.json" if package else None, at(FULL_INFO))
    original_path = _first(at(ORIGINAL))
    augmented_path = _first(at(AUGMENTED)) if config.prompts == "augmented" else None
    info = _full_info(info_path) if info_path else None
    names = [e["prompt_en"] for e in info] if info else (_lines(original_path) if original_path else None)
    original = _lines(original_path) if original_path else None
    augmented = _lines(augmented_path) if augmented_path else None

    where = (f"looked in {checkout}" if checkout is not None else
             "no VBench checkout given (--vbench-root)") + f" and in the environment {config.vbench_env}"
    missing = []
    if names is None:
        missing.append(f"VBench's prompt list: neither {FULL_INFO} (in the vbench wheel: create the environment with "
                       f"{VBENCH_SETUP} {config.vbench_env}) nor {ORIGINAL} (a checkout of {VBENCH_URL}, "
                       f"--vbench-root DIR) was found; {where}")
    if config.prompts == "augmented" and augmented is None:
        missing.append(f"{AUGMENTED}: the GPT-augmented prompts, not in the vbench wheel: clone {VBENCH_URL} and pass "
                       f"--vbench-root <checkout> (or --prompts original); {where}")
    flicker = None
    if info:
        flicker = {e["prompt_en"] for e in info if "temporal_flickering" in e["dimension"]}
    elif _first(at(PER_DIMENSION.format("temporal_flickering"))):
        flicker = set(_lines(at(PER_DIMENSION.format("temporal_flickering"))))
    elif names is not None and config.flicker_samples > config.samples:
        missing.append(f"which prompts are temporal flickering's: neither {FULL_INFO} nor "
                       f"{PER_DIMENSION.format('temporal_flickering')} was found; {where}")
    if names is not None and original is not None and original != names:
        line = next((i for i, (a, b) in enumerate(zip(original, names)) if a != b), min(len(original), len(names)))
        missing.append(f"{original_path} differs from {info_path} at line {line + 1} (or in length, "
                       f"{len(original)} against {len(names)}): the augmented prompts align with the first, VBench "
                       "looks videos up by the second; use a checkout of the installed vbench's version")
    if names is not None and augmented is not None and len(augmented) != len(names):
        missing.append(f"{augmented_path} has {len(augmented)} prompts but the prompt list has {len(names)}: "
                       "they must align line by line")

    if info:
        per_dimension = {d: sum(d in e["dimension"] for e in info) for d in DIMENSION_SUITE}
        per_source = str(info_path)
    else:
        per_dimension = {d: SUITES[s] for d, s in DIMENSION_SUITE.items()}
        per_source = "expected (VBench prompts/README.md at 45e79ec); not read from a file"
    files = (
        PromptFile("the prompt list VBench evaluates by", FULL_INFO, info_path, len(info) if info else None, N_LINES),
        PromptFile("the original prompts (file names)", ORIGINAL, original_path,
                   len(original) if original else None, N_LINES),
    ) + ((PromptFile("the GPT-augmented prompts (sampled)", AUGMENTED, augmented_path,
                     len(augmented) if augmented else None, N_LINES),) if config.prompts == "augmented" else ())
    duplicates, rows = (), ()
    if names is not None:
        seen: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            seen.setdefault(name, []).append(i + 1)
        duplicates = tuple((name, tuple(lines)) for name, lines in seen.items() if len(lines) > 1)
        if not missing:
            rows = tuple(_rows(config, names, augmented, flicker or set()))
    return PromptPlan(config.prompts, files, per_dimension, per_source, len(names) if names else None,
                      len(set(names)) if names else None, duplicates, len(flicker) if flicker is not None else None,
                      rows, tuple(missing))


def _rows(config: Table4Config, names: list[str], augmented: list[str] | None, flicker: set[str]):
    """One row per video, in sampling order: each name once, sampled from its LAST line's text."""
    last = {name: i for i, name in enumerate(names)}
    order = [name for i, name in enumerate(names) if last[name] == i]
    order.sort(key=lambda name: last[name])
    if config.limit is not None:
        order = order[:config.limit]
    for name in order:
        line = last[name]
        count = config.flicker_samples if name in flicker else config.samples
        for index in range(count):
            yield VideoRow(_checked_name(name, index), name, augmented[line] if augmented else name, line, index,
                           video_seed(line, index, config.seed))


# ---- weights -----------------------------------------------------------------------------------

def _locate(repo: str, path: str | None, root: Path | None) -> Path | None:
    from baselines import weights as weight_files

    return weight_files.locate(repo, path, root)


def pipeline_missing(folder: Path, label: str) -> list[str]:
    """What a diffusers CogVideoXPipeline folder lacks: model_index.json, then per component its
    config and weights (every shard an index names), the tokenizer's files, the scheduler config."""
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        return [f"{label} : model_index.json"]
    try:
        index = json.loads(index_path.read_text())
    except ValueError:
        return [f"{label} : model_index.json (unreadable)"]
    out = []
    for component in ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"):
        if component not in index:
            out.append(f"{label} : {component} (not in model_index.json)")
            continue
        sub = folder / component
        if component == "scheduler":
            if not (sub / "scheduler_config.json").is_file():
                out.append(f"{label} : scheduler/scheduler_config.json")
            continue
        if component == "tokenizer":
            if not sub.is_dir() or not any(sub.iterdir()):
                out.append(f"{label} : tokenizer/ (spiece.model and its configs)")
            continue
        if not (sub / "config.json").is_file():
            out.append(f"{label} : {component}/config.json")
        indexes = sorted(sub.glob("*.index.json")) if sub.is_dir() else []
        shards: set[str] = set()
        for path in indexes:
            try:
                shards |= set(json.loads(path.read_text()).get("weight_map", {}).values())
            except ValueError:
                out.append(f"{label} : {component}/{path.name} (unreadable)")
        if shards:
            out += [f"{label} : {component}/{s}" for s in sorted(shards) if not (sub / s).is_file()]
        elif not sub.is_dir() or not any(p.suffix in WEIGHT_SUFFIXES for p in sub.iterdir()):
            out.append(f"{label} : {component}/diffusion_pytorch_model.safetensors (or model weights)")
    return out


def teacher_missing(root: Path | None) -> tuple[Path | None, list[str]]:
    folder = _locate(TEACHER_REPO, None, root)
    if folder is None:
        return None, [f"{TEACHER_REPO} : {f}" for f in TEACHER_FILES]
    return folder, pipeline_missing(folder, TEACHER_REPO)


def lora_file(root: Path | None) -> tuple[str | None, Path | None]:
    """(file name in the repository, local path) of the released LoRA: the default name, else the
    repository folder's only .safetensors file (what diffusers' load_lora_weights guesses)."""
    path = _locate(LORA_REPO, LORA_FILE, root)
    if path is not None:
        return LORA_FILE, path
    folder = _locate(LORA_REPO, None, root)
    if folder is not None and folder.is_dir():
        files = [p for p in folder.glob("*.safetensors")
                 if not any(s in p.name for s in ("scheduler", "optimizer", "checkpoint"))]
        if len(files) == 1:
            return files[0].name, files[0]
    return None, None


def student_folder(path: Path) -> Path | None:
    """The exported 4-step student: PATH itself, or PATH/student-K4, when it holds tdm_student.json."""
    for folder in (path, path / "student-K4"):
        if (folder / STUDENT_CARD).is_file():
            return folder
    return None


def _where(root: Path | None) -> str:
    return f"under {root}/<owner>/<name>/ or in the Hugging Face cache" if root else \
        "in the Hugging Face cache (or pass --weights-root DIR, laid out DIR/<owner>/<name>/<file>)"


def _download_hint(repo: str, root: Path | None) -> str:
    target = f"{root}/{repo}" if root else f"<weights-root>/{repo}"
    return f"huggingface-cli download {repo} --local-dir {target}"


# ---- cells ----------------------------------------------------------------------------------------

def _clip(config: Table4Config, frames: int, height: int, width: int) -> tuple[int, int, int]:
    return config.clip if config.clip is not None else (frames, height, width)


def _cost(nfe: int, videos: int) -> CostEstimate:
    seconds = nfe * TRANSFORMER_SECONDS + VAE_SECONDS + T5_SECONDS
    return CostEstimate(nfe, round(seconds, 2), videos, round(videos * seconds / 3600, 1))


def _done(config: Table4Config, key: str, rows) -> tuple[int, Path]:
    folder = config.out / key / "videos"
    done = sum((folder / r.file).is_file() for r in rows) if folder.is_dir() else 0
    return done, (config.results_dir or config.out) / f"{key}.json"


def _status(result: Path, missing, videos: int, dimensions: tuple[str, ...]) -> str:
    """"done" when the cell's result holds every asked-for dimension of exactly these videos."""
    if missing:
        return "missing weights"
    if result.is_file():
        try:
            record = json.loads(result.read_text())
        except ValueError:
            return "ready"
        if (record.get("complete") and record.get("videos", {}).get("n") == videos
                and sorted(record.get("dimensions_run", [])) == sorted(dimensions)):
            return "done"
    return "ready"


def _dims(config: Table4Config) -> tuple[str, ...]:
    from harness.vbench import parse_dimensions

    return tuple(parse_dimensions(config.dimensions, "standard"))


def _teacher_cell(config: Table4Config, spec: CellSpec, rows, videos: int) -> CellPlan:
    from baselines.recipe import SamplerRecipe

    frames, height, width = _clip(config, FRAMES, HEIGHT, WIDTH)
    recipe = SamplerRecipe(
        "cogvideox-2b-teacher-50", "CogVideoX-2B", "cogvideox", TEACHER_REPO, scheduler="CogVideoXDDIMScheduler",
        steps=50, guidance=6.0, guidance_mode="cfg", height=height, width=width, frames=frames, dtype=config.dtype,
        source="diffusers 0.42.1 CogVideoXPipeline.__call__ defaults (50 steps, guidance_scale 6, no dynamic CFG); "
               "THUDM/CogVideo inference/cli_demo.py @ 1c2e487 (DDIM trailing, 50 steps, guidance 6.0, 49 frames, "
               "8 fps)",
        notes="the repository's scheduler config (CogVideoXDDIMScheduler, trailing); VBench's SAT entry used "
              "VPSDEDPMPP2MSampler with DynamicCFG (scale 6, exp 5) instead")
    folder, missing = teacher_missing(config.weights_root)
    done, result = _done(config, spec.key, rows)
    return CellPlan(
        spec, f"{TEACHER_REPO}, CogVideoXDDIMScheduler (its own config: trailing), 50 steps, CFG 6, {config.dtype}",
        50, recipe.nfe, 6.0, None, frames, height, width, _status(result, missing, videos, _dims(config)),
        tuple(missing),
        f"{_download_hint(TEACHER_REPO, config.weights_root)} (about 13 GB; looked {_where(config.weights_root)})",
        videos, done, _cost(recipe.nfe, videos), config.out / spec.key, result, PAPER[spec.paper], recipe.source,
        recipe.notes, recipe, config.weights_root)


def _lora_cell(config: Table4Config, spec: CellSpec, rows, videos: int) -> CellPlan:
    from baselines.recipe import Weights
    from baselines.registry import get_recipe

    frames, height, width = _clip(config, FRAMES, HEIGHT, WIDTH)
    name, path = lora_file(config.weights_root)
    recipe = replace(get_recipe("tdm-cogvideox-2b-lora"), dtype=config.dtype, frames=frames, height=height, width=width)
    if name is not None and name != LORA_FILE:
        recipe = replace(recipe, weights=(Weights("lora", LORA_REPO, name),))
    _, missing = teacher_missing(config.weights_root)
    if path is None:
        missing = missing + [f"{LORA_REPO} : {LORA_FILE} (the diffusers default name; the README names no file)"]
    done, result = _done(config, spec.key, rows)
    timesteps = tuple(recipe.timesteps)
    return CellPlan(
        spec, f"{TEACHER_REPO} + {LORA_REPO} ({name or LORA_FILE}, fused at scale 1), "
              f"CogVideoXTimestepsDDIMScheduler on {list(timesteps)}, guidance 1, {config.dtype}",
        recipe.steps, recipe.nfe, recipe.guidance, timesteps, frames, height, width,
        _status(result, missing, videos, _dims(config)),
        tuple(missing), f"{_download_hint(LORA_REPO, config.weights_root)} and the teacher's files "
                        f"(looked {_where(config.weights_root)})",
        videos, done, _cost(recipe.nfe, videos), config.out / spec.key, result, PAPER[spec.paper],
        "Luo-Yihong/TDM README.md (TDM-CogVideoX-2B-LoRA, Pre-trained Models) @ 81b019f",
        "the README samples the stock scheduler's 4 steps [999, 749, 499, 249] and notes the LoRA was trained on "
        "[999, 856, 665, 399], which is what this cell samples", recipe, config.weights_root)


def _project_cell(config: Table4Config, spec: CellSpec, rows, videos: int) -> CellPlan:
    from baselines.recipe import SamplerRecipe

    folder = student_folder(Path(config.student))
    done, result = _done(config, spec.key, rows)
    cost = _cost(4, videos)
    if folder is None:
        frames, height, width = _clip(config, FRAMES, HEIGHT, WIDTH)
        return CellPlan(
            spec, f"the export of the cogvideox-2b preset, CogVideoXTimestepsDDIMScheduler on "
                  f"{list(RELEASED_TIMESTEPS)}, guidance 1, {config.dtype}",
            4, 4, 1.0, RELEASED_TIMESTEPS, frames, height, width, "needs training",
            (f"{config.student}/student-K4/{STUDENT_CARD} (and the pipeline folder around it)",),
            f"train it: {TRAIN_COMMAND} (exports runs/cogvideox-2b/student-K4), or pass --student DIR",
            videos, done, cost, config.out / spec.key, result, PAPER[spec.paper],
            "methods/tdm/presets.py cogvideox-2b; methods/tdm/backbones_cogvideox.py (export layout)")
    card = json.loads((folder / STUDENT_CARD).read_text())
    timesteps = tuple(int(t) for t in card["timesteps"])
    frames, height, width = _clip(config, int(card.get("frames", FRAMES)), int(card.get("height", HEIGHT)),
                                  int(card.get("width", WIDTH)))
    recipe = SamplerRecipe(
        spec.key, spec.method, "cogvideox", folder.name, scheduler="CogVideoXTimestepsDDIMScheduler",
        steps=len(timesteps), timesteps=timesteps, guidance=float(card.get("guidance_scale", 1.0)),
        guidance_mode="none",
        height=height, width=width, frames=frames, dtype=config.dtype, source=str(folder / STUDENT_CARD),
        notes=card.get("sampling", ""))
    missing = pipeline_missing(folder, str(folder))
    return CellPlan(
        spec, f"{folder} (step count {card['steps']}), CogVideoXTimestepsDDIMScheduler on {list(timesteps)}, "
              f"guidance {recipe.guidance:g}, {config.dtype}",
        recipe.steps, recipe.nfe, recipe.guidance, timesteps, frames, height, width,
        _status(result, missing, videos, _dims(config)),
        tuple(missing), f"re-export the run ({TRAIN_COMMAND})", videos, done, _cost(recipe.nfe, videos),
        config.out / spec.key, result, PAPER[spec.paper], str(folder / STUDENT_CARD), recipe.notes, recipe,
        folder.parent)


def vbench_plan(config: Table4Config) -> VBenchPlan:
    dims = _dims(config)
    env = Path(config.vbench_env)
    python = env / "bin" / "python"
    package = vbench_package(env)
    detectron2 = any((site / "detectron2").is_dir() for site in _site_packages(env))
    cache = Path(os.environ.get("VBENCH_CACHE_DIR") or Path.home() / ".cache" / "vbench")
    missing = []
    if not python.exists():
        missing.append(f"VBench environment {env}: no {python}; create it with {VBENCH_SETUP} {env} "
                       "(or pass --vbench-env DIR)")
    elif package is None:
        missing.append(f"VBench environment {env} has no vbench package (no site-packages/vbench/"
                       f"VBench_full_info.json); create it with {VBENCH_SETUP} {env}")
    grit = [d for d in dims if d in GRIT_DIMENSIONS]
    if python.exists() and grit and not detectron2:
        missing.append(f"detectron2 is not installed in {env}, and {', '.join(grit)} need it: build it from "
                       "facebookresearch/detectron2 against the environment's torch (VBench's README), or leave "
                       "those out with --dimensions")
    weights = [f"{cache}/{rel} ({', '.join(d for d in needs if d in dims)})" for rel, needs in VBENCH_WEIGHTS.items()
               if any(d in dims for d in needs) and not (cache / rel).exists()]
    return VBenchPlan(env, python if python.exists() else None, package, detectron2, cache, dims, tuple(missing),
                      tuple(weights))


def plan(config: Table4Config = Table4Config()) -> Table4Plan:
    """What `run` would do with this config, and what it still needs; reads files only, writes nothing."""
    prompts = prompt_plan(config)
    videos = len(prompts.rows) or _expected_videos(config)
    build = {"teacher": _teacher_cell, "lora": _lora_cell, "project": _project_cell}
    cells = tuple(build[CELLS[key].kind](config, CELLS[key], prompts.rows, videos) for key in config.cells)
    return Table4Plan(config, prompts, cells, vbench_plan(config))


# ---- the plan as text -------------------------------------------------------------------------------

def _n(value: int | float) -> str:
    return f"{value:,}"


def format_plan(p: Table4Plan) -> str:
    c, pr = p.config, p.prompts
    frames, height, width = _clip(c, FRAMES, HEIGHT, WIDTH)
    kind = ("GPT-augmented (prompts/augmented_prompts/gpt_enhanced_prompts, as VBench's CogVideoX-2B entries)"
            if pr.kind == "augmented" else "original")
    lines = [f"table4 on real: CogVideoX-2B against TDM at 4 steps on VBench; {len(p.cells)} cells, "
             f"{_n(p.videos_per_cell)} videos each"
             + ("" if c.protocol else " (not VBench's protocol: --limit, --samples or --clip)"),
             f"  prompts: VBench's all-dimension suite, sampled from the {kind} prompts, files named "
             f"<original prompt>-<i>.mp4"]
    for f in pr.files:
        found = f"{f.path} ({f.count} prompts)" if f.path else "not found"
        lines.append(f"    {f.relpath:<70} {found}; {f.what}, {f.expected} expected")
    counts = (f"{pr.n_lines} lines, {pr.n_names} distinct names" if pr.n_names is not None
              else f"{N_LINES} lines and {N_NAMES} distinct names expected")
    lines.append(f"    {counts}")
    for prompt, at in pr.duplicates:
        lines.append(f"    listed twice (lines {', '.join(map(str, at))}): {prompt!r}; the later line's text is "
                     "sampled")
    lines.append("    per dimension (" + pr.per_dimension_source + "): "
                 + ", ".join(f"{d} {n}" for d, n in pr.per_dimension.items()))
    flicker = pr.flicker_prompts if pr.flicker_prompts is not None else f"{N_FLICKER} expected"
    lines.append(f"  samples: {c.samples} per prompt (i = 0..{c.samples - 1}), {c.flicker_samples} per temporal-"
                 f"flickering prompt ({flicker} prompts; VBench's static filter keeps up to 5); seed of video i of "
                 f"line l: {c.seed} * 1e6 + 100 l + i; {frames} frames at {height}x{width}, mp4 at {FPS} fps"
                 + (f"; only the first {c.limit} prompts" if c.limit else ""))
    for line in pr.missing:
        lines.append(f"  missing prompts: {line}")
    v = p.vbench
    lines.append(f"  VBench: environment {v.env} ({'vbench at ' + str(v.package) if v.package else 'not ready'}), "
                 f"standard mode, {len(v.dimensions)} dimensions, python -m harness.vbench run on each cell's videos")
    for line in v.missing:
        lines.append(f"  missing for the evaluation: {line}")
    if v.missing_weights:
        lines.append(f"  VBench's weights not in its cache {v.cache_dir} (it downloads them itself when online; "
                     f"offline, place them there: {VBENCH_SETUP} lists them):")
        lines += [f"      {w}" for w in v.missing_weights]
    lines.append(f"  weights: looked {_where(c.weights_root)}; results under {c.out}")
    listed: set[str] = set()
    for cell in p.cells:
        lines.append(f"  {cell.key}  [Table 4 row: {cell.spec.row}]")
        lines.append(f"      {cell.sampler}")
        lines.append(f"      {cell.steps} steps, {cell.nfe} NFE; {_n(cell.videos)} videos "
                     f"({_n(cell.videos_done)} made); at 49x480x720 about {cell.cost.seconds_per_video} s per "
                     f"video, {cell.cost.gpu_hours} GPU-hours (estimate); paper: "
                     + ", ".join(f"{k.split('_')[1]} {v:.2f}" for k, v in cell.paper.items()))
        if cell.status in ("missing weights", "needs training"):
            lines.append(f"      {cell.status}:")
            again = [m for m in cell.missing if m in listed]
            lines += [f"        {m}" for m in cell.missing if m not in listed]
            if again:
                repos = sorted({m.split(" : ")[0] for m in again})
                lines.append(f"        and the {len(again)} files of {', '.join(repos)} listed above")
            listed.update(cell.missing)
            lines.append(f"      how: {cell.how}")
        else:
            lines.append(f"      {cell.status}" + (f": {cell.result}" if cell.status == "done" else ""))
    lines.append("  cost basis: " + "; ".join(COST_BASIS))
    return "\n".join(lines)


# ---- run ----------------------------------------------------------------------------------------------

def video_backend() -> str | None:
    """What diffusers.utils.export_to_video will write mp4s with: imageio (needs imageio-ffmpeg),
    else OpenCV; None when neither works."""
    if importlib.util.find_spec("imageio") is not None:
        return "imageio" if importlib.util.find_spec("imageio_ffmpeg") is not None else None
    return "opencv" if importlib.util.find_spec("cv2") is not None else None


def write_mp4(frames, path: Path, fps: int = FPS) -> None:
    """uint8 frames (F, H, W, 3) as an mp4 (diffusers.utils.export_to_video)."""
    from diffusers.utils import export_to_video
    from PIL import Image

    export_to_video([Image.fromarray(frame) for frame in frames], str(path), fps=fps)


def _summarise(missing) -> str:
    """Missing files grouped by repository: 'repo : file', or 'repo: N files (a, b, ...)'."""
    groups: dict[str, list[str]] = {}
    for line in missing:
        repo, sep, path = line.partition(" : ")
        groups.setdefault(repo if sep else line, []).append(path)
    parts = []
    for repo, paths in groups.items():
        paths = [p for p in paths if p]
        if len(paths) == 1:
            parts.append(f"{repo} : {paths[0]}")
        elif paths:
            parts.append(f"{repo}: {len(paths)} files ({', '.join(paths[:2])}, ...)")
        else:
            parts.append(repo)
    return "; ".join(parts)


def _preflight(p: Table4Plan, evaluate: bool) -> dict | None:
    """Everything a run needs, checked before anything is written: one UserError naming what is missing."""
    problems = []
    if video_backend() is None:
        problems.append("an mp4 writer: diffusers.utils.export_to_video needs imageio with imageio-ffmpeg "
                        f"(pip install imageio imageio-ffmpeg) or, without imageio, opencv-python, in {sys.executable}")
    problems += list(p.prompts.missing)
    for cell in p.cells:
        if cell.status in ("missing weights", "needs training"):
            problems.append(f"{cell.key} ({cell.status}): {_summarise(cell.missing)}; {cell.how}")
    if evaluate:
        problems += list(p.vbench.missing)
    if problems:
        raise UserError("table4 cannot run; missing " + " | ".join(problems))
    if not evaluate:
        return None
    from harness import vbench as driver

    env = driver.env_versions(driver.env_python(p.config.vbench_env).absolute())
    grit = [d for d in p.vbench.dimensions if d in GRIT_DIMENSIONS]
    if grit and not env["packages"].get("detectron2"):
        raise UserError(f"the VBench environment {p.config.vbench_env} has no detectron2, which {', '.join(grit)} "
                        "need: build it there (VBench's README) or leave them out with --dimensions")
    return env


def _fingerprint(cell: CellPlan, config: Table4Config, device_dtype: str) -> str:
    """What fixes a cell's videos beyond their rows: the recipe as sampled (not its name or notes), the
    precision and the prompt kind; for this project's student, its folder and card."""
    recipe = {k: v for k, v in cell.recipe.describe().items() if k not in ("name", "method", "source", "notes")}
    if cell.spec.kind == "project":
        folder = cell.sampler_root / cell.recipe.base
        recipe["base"] = str(folder.resolve())
        recipe["card_sha256"] = hashlib.sha256((folder / STUDENT_CARD).read_bytes()).hexdigest()
    key = {"recipe": recipe, "prompts": config.prompts, "dtype": device_dtype, "seed_rule": "seed*1e6+100*line+index"}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _check_manifest(cell: CellPlan, fingerprint: str, rows) -> dict:
    """The cell's manifest rows by file, after checking the folder was made by this recipe and prompts."""
    path = cell.folder / "manifest.json"
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text())
    except ValueError:
        raise UserError(f"{path} is unreadable: move {cell.folder} away") from None
    if manifest.get("fingerprint") != fingerprint:
        raise UserError(f"{cell.folder} holds videos of another recipe, prompt list or precision (manifest "
                        f"fingerprint {manifest.get('fingerprint')}, now {fingerprint}): move it away or use "
                        "another --out")
    known = {r["file"]: r for r in manifest.get("rows", [])}
    for row in rows:
        old = known.get(row.file)
        if old is not None and (old["sampled_prompt"], old["seed"]) != (row.sampled_prompt, row.seed):
            raise UserError(f"{cell.folder}: {row.file} was sampled from another prompt or seed than now "
                            f"(--video-seed or --prompts changed?): move the folder away or use another --out")
    return known


def sample_cell(cell: CellPlan, rows, config: Table4Config, device: str, batch_size: int = 1,
                show_progress: bool = True) -> dict:
    """Sample the cell's missing videos (existing ones are kept); returns the sampling record."""
    import torch
    from tqdm.auto import tqdm

    from baselines.diffusers_sampler import DiffusersSampler

    videos, tmp = cell.folder / "videos", cell.folder / "tmp"
    device_dtype = cell.recipe.dtype if torch.device(device).type == "cuda" else "float32"
    fingerprint = _fingerprint(cell, config, device_dtype)
    known = _check_manifest(cell, fingerprint, rows)
    todo = [r for r in rows if not (videos / r.file).is_file()]
    record = {"videos": len(rows), "sampled_now": len(todo), "kept": len(rows) - len(todo), "fingerprint": fingerprint}
    sampler_json = cell.folder / "sampler.json"
    if not todo:
        if sampler_json.is_file():
            record["sampler"] = json.loads(sampler_json.read_text())
        return record
    started = time.perf_counter()
    sampler = DiffusersSampler(cell.recipe, device=device, weights_root=cell.sampler_root, batch_size=batch_size)
    if batch_size > 1:
        sampler.pipe.vae.enable_slicing()  # one clip decoded at a time: the same frames, a fraction of the memory
    describe = sampler.describe()
    load_seconds = time.perf_counter() - started
    videos.mkdir(parents=True, exist_ok=True)
    tmp.mkdir(parents=True, exist_ok=True)
    known.update({r.file: asdict(r) for r in rows})
    write_json_atomic(cell.folder / "manifest.json", {
        "cell": cell.key, "fingerprint": fingerprint, "recipe": cell.recipe.describe(), "prompts": config.prompts,
        "fps": FPS, "rows": sorted(known.values(), key=lambda r: (r["line"], r["index"]))})
    write_json_atomic(sampler_json, describe)
    bar = tqdm(total=len(rows), initial=len(rows) - len(todo), desc=cell.key, unit="video", disable=not show_progress,
               dynamic_ncols=True)
    started = time.perf_counter()
    for start in range(0, len(todo), batch_size):
        part = todo[start:start + batch_size]
        clips = sampler.sample([r.sampled_prompt for r in part], [r.seed for r in part])
        for row, clip in zip(part, clips):
            partial = tmp / row.file
            write_mp4(clip, partial, FPS)
            os.replace(partial, videos / row.file)
        bar.update(len(part))
    bar.close()
    shutil.rmtree(tmp, ignore_errors=True)
    seconds = time.perf_counter() - started
    record.update(sampler=describe, sampler_load_seconds=round(load_seconds, 2), sampling_seconds=round(seconds, 2),
                  seconds_per_video=round(seconds / len(todo), 3), nfe_per_video=sampler.last_nfe)
    del sampler
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
    return record


def evaluate_cell(cell: CellPlan, config: Table4Config, force: bool = False) -> tuple[int, dict]:
    """harness.vbench's `run` on the cell's videos (VBench in its environment, then the aggregation)."""
    from harness import vbench as driver

    args = argparse.Namespace(videos=str(cell.folder / "videos"), env=str(config.vbench_env),
                              dimensions=config.dimensions, out=str(cell.folder / "vbench"), mode="standard",
                              flicker_videos=None, no_static_filter=False, hub_weights=config.hub_weights,
                              force=force, dry_run=False)
    code = driver.cmd_run(args)
    return code, json.loads((cell.folder / "vbench" / "vbench.json").read_text())


def cell_record(cell: CellPlan, config: Table4Config, sampling: dict, report: dict, device: str) -> dict:
    """The cell's result: VBench Total, Quality and Semantic in percent (Table 4's scale) beside the paper's."""
    percent = report.get("percent") or {}
    metrics = {f"vbench_{k}": percent.get(k) for k in ("total", "quality", "semantic")}
    complete = not report.get("partial", True) and not report.get("failed")
    return {
        "table": "table4", "world": "real", "cell": cell.key, "row": cell.spec.row, "method": cell.spec.method,
        "backbone": "CogVideoX-2B", "steps": cell.steps, "nfe": cell.nfe, "metrics": metrics,
        "fractions": {k: report.get(k) for k in ("total", "quality", "semantic")}, "paper": cell.paper,
        "partial": not (complete and config.protocol), "complete": complete, "protocol": config.protocol,
        "dimensions_run": report.get("dimensions_run", []), "missing_dimensions": report.get("missing", []),
        "failed_dimensions": report.get("failed", []), "dimensions": report.get("dimensions", {}),
        "vbench_report": str(cell.folder / "vbench" / "vbench.json"), "vbench_env": report.get("vbench_env"),
        "videos": {"folder": str(cell.folder / "videos"), "manifest": str(cell.folder / "manifest.json"),
                   "n": sampling["videos"], "prompts": config.prompts, "samples_per_prompt": config.samples,
                   "flicker_samples": config.flicker_samples, "limit": config.limit, "seed": config.seed,
                   "frames": cell.frames, "height": cell.height, "width": cell.width, "fps": FPS},
        "sampling": {k: v for k, v in sampling.items() if k != "sampler"}, "sampler": sampling.get("sampler"),
        "recipe": cell.recipe.describe(), "source": cell.source, "notes": cell.notes,
        "provenance": provenance(device),
    }


def run(config: Table4Config, device: str = "cuda", batch_size: int = 1, evaluate: bool = True, force: bool = False,
        show_progress: bool = True) -> list[dict]:
    """Sample every cell of the config (resuming), run VBench on each, write <out>/<cell>.json.

    Everything needed is checked first (UserError, nothing written). `evaluate=False` only samples.
    A finished cell (its JSON complete) is not evaluated again unless `force`. Returns the cell records
    (for cells only sampled: their sampling records)."""
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")
    p = plan(config)
    _preflight(p, evaluate)
    import torch

    for cell in p.cells:  # a folder of another recipe or prompt list stops the run before any work
        dtype = cell.recipe.dtype if torch.device(device).type == "cuda" else "float32"
        _check_manifest(cell, _fingerprint(cell, config, dtype), p.prompts.rows)
    out = []
    for cell in p.cells:
        if evaluate and cell.status == "done" and not force:
            print(f"table4: {cell.key}: done ({cell.result}); kept (--force reevaluates)", file=sys.stderr)
            out.append(json.loads(cell.result.read_text()))
            continue
        sampling = sample_cell(cell, p.prompts.rows, config, device, batch_size, show_progress)
        print(f"table4: {cell.key}: {sampling['videos']} videos in {cell.folder / 'videos'} "
              f"({sampling['sampled_now']} sampled now)", file=sys.stderr)
        if not evaluate:
            out.append({"cell": cell.key, "sampling": sampling})
            continue
        # New videos make every finished dimension stale: harness.vbench keeps those unless forced.
        code, report = evaluate_cell(cell, config, force or sampling["sampled_now"] > 0)
        record = cell_record(cell, config, sampling, report, device)
        record["vbench_returncode"] = code
        write_json_atomic(cell.result, record)
        print(f"table4: wrote {cell.result}", file=sys.stderr)
        out.append(record)
    return out


def summary(records: list[dict]) -> str:
    lines = [f"{'cell':<28}{'total':>8}{'quality':>9}{'semantic':>10}   paper (total/quality/semantic)"]
    for r in records:
        if "metrics" not in r:
            lines.append(f"{r['cell']:<28}  sampled only ({r['sampling']['videos']} videos)")
            continue
        m, pp = r["metrics"], r["paper"]
        cells = "".join(f"{'-' if m[k] is None else f'{m[k]:.2f}':>{w}}"
                        for k, w in (("vbench_total", 8), ("vbench_quality", 9), ("vbench_semantic", 10)))
        lines.append(f"{r['cell']:<28}{cells}   {pp['vbench_total']:.2f}/{pp['vbench_quality']:.2f}/"
                     f"{pp['vbench_semantic']:.2f}" + ("  (partial)" if r["partial"] else ""))
    return "\n".join(lines)


# ---- command line --------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser, weights_root: bool = True) -> None:
    """Table 4's options (a caller with its own --weights-root passes weights_root=False)."""
    if weights_root:
        parser.add_argument("--weights-root", metavar="DIR",
                            help="weights laid out DIR/<owner>/<name>/<file> (default: the Hugging Face cache)")
    parser.add_argument("--vbench-root", metavar="DIR", help=f"a checkout of {VBENCH_URL} (the augmented prompts)")
    parser.add_argument("--vbench-env", metavar="DIR", default=str(DEFAULT_ENV),
                        help=f"VBench's environment (made by {VBENCH_SETUP}; default {DEFAULT_ENV})")
    parser.add_argument("--student", metavar="DIR", default=str(DEFAULT_STUDENT),
                        help="this project's trained student: the cogvideox-2b run folder or its student-K4 export")
    parser.add_argument("--out", metavar="DIR", default=str(DEFAULT_OUT),
                        help="videos and results (default %(default)s)")
    parser.add_argument("--cells", default=",".join(CELLS), help="comma-separated, of: " + ", ".join(CELLS))
    parser.add_argument("--prompts", default="augmented", choices=("augmented", "original"))
    parser.add_argument("--samples", type=int, default=SAMPLES, help="videos per prompt (VBench: 5)")
    parser.add_argument("--flicker-samples", type=int, default=FLICKER_SAMPLES,
                        help="videos per temporal-flickering prompt (VBench: 25, static-filtered to 5)")
    parser.add_argument("--video-seed", type=int, default=0, help="base of every video's seed")
    parser.add_argument("--dtype", default="float16", choices=("float16", "bfloat16", "float32"),
                        help="on a GPU (a CPU samples in float32)")
    parser.add_argument("--dimensions", default="all", help="VBench dimensions: all, or a comma-separated list")
    parser.add_argument("--limit", type=int, help="only the first N prompts (a smoke run, never the benchmark)")
    parser.add_argument("--clip", metavar="F,H,W", help="frames,height,width instead of 49,480,720 (smoke runs, tests)")
    parser.add_argument("--hub-weights", action="store_true", help="let VBench fetch CLIP and DINO from their hubs")


def config_from_args(args: argparse.Namespace) -> Table4Config:
    """A config from parsed options (add_arguments'); an option a caller did not add keeps its default.
    `results_dir` is never read from them (harness.reproduce's --results-dir means another folder)."""
    def get(name, default=None):
        value = getattr(args, name, None)
        return default if value is None else value

    clip = None
    if get("clip"):
        try:
            clip = tuple(int(v) for v in args.clip.split(","))
            assert len(clip) == 3 and min(clip) > 0
        except (ValueError, AssertionError):
            raise UserError(f"--clip expects frames,height,width, got {args.clip!r}") from None
    paths = {}
    for name, option in (("weights_root", "--weights-root"), ("vbench_root", "--vbench-root")):
        if get(name) is not None:
            paths[name] = Path(get(name))
            if not paths[name].is_dir():
                raise UserError(f"{option} {paths[name]} is not a folder")
    d = Table4Config()
    return Table4Config(
        out=Path(get("out", d.out)), vbench_env=Path(get("vbench_env", d.vbench_env)), student=Path(get("student", d.student)),
        cells=tuple(c.strip() for c in get("cells", ",".join(d.cells)).split(",") if c.strip()),
        prompts=get("prompts", d.prompts), samples=get("samples", d.samples),
        flicker_samples=get("flicker_samples", d.flicker_samples), seed=get("video_seed", d.seed),
        dtype=get("dtype", d.dtype), dimensions=get("dimensions", d.dimensions), limit=get("limit"), clip=clip,
        hub_weights=bool(get("hub_weights", False)), **paths)


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m harness.table4_real", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    plan_parser = commands.add_parser("plan", help="the cells, prompts, videos, cost and missing files; writes nothing")
    run_parser = commands.add_parser("run", help="sample the cells' videos, score them with VBench, write the results")
    for sub in (plan_parser, run_parser):
        add_arguments(sub)
    run_parser.add_argument("--device", default="cuda", choices=("cpu", "cuda"))
    run_parser.add_argument("--batch-size", type=int, default=1, help="videos per pipeline call")
    run_parser.add_argument("--no-vbench", action="store_true", help="only sample the videos")
    run_parser.add_argument("--force", action="store_true", help="rerun VBench on finished cells")
    run_parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
        if args.command == "plan":
            print(format_plan(plan(config)))
            return 0
        device = check_device(args.device)
        quiet_libraries()
        records = run(config, device, args.batch_size, evaluate=not args.no_vbench, force=args.force,
                      show_progress=not args.no_progress)
        print(summary(records))
        failed = [r["cell"] for r in records if r.get("vbench_returncode")]
        if failed:
            print(f"error: VBench failed on some dimensions of {', '.join(failed)}; see their vbench/logs",
                  file=sys.stderr)
            return 1
        return 0
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
