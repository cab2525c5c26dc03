"""The facts Table 4 at real size rests on: the checkpoints' repositories and files, VBench's prompt
files, dimensions and weights, CogVideoX-2B's clip, the measured sampling cost, the paper's numbers,
and the three cells."""
from __future__ import annotations

from dataclasses import dataclass


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
