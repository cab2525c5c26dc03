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

Modules: protocol (the facts: repositories, VBench's files and weights, the clip, the cost basis, the
paper's numbers, the cells), config (Table4Config), prompts (VBench's prompt files -> one row per
video), weights (what a cell's weights lack), planning (what a run would do: `plan`, `format_plan`), running
(sampling, VBench, the records), cli (the command line).
"""
from .cli import add_arguments, config_from_args, main
from .config import DEFAULT_ENV, DEFAULT_OUT, DEFAULT_STUDENT, Table4Config
from .planning import CellPlan, CostEstimate, Table4Plan, VBenchPlan, format_plan, plan, vbench_plan
from .prompts import PromptFile, PromptPlan, VideoRow, checkout_of_env, prompt_plan, vbench_package, video_seed
from .protocol import (AUGMENTED, CELLS, FULL_INFO, ORIGINAL, PAPER, TEACHER_FILES, TEACHER_REPO, LORA_REPO,
                       VBENCH_WEIGHTS, CellSpec)
from .running import cell_record, evaluate_cell, run, sample_cell, summary, video_backend, write_mp4
from .weights import lora_file, pipeline_missing, student_folder, teacher_missing

__all__ = [
    "AUGMENTED", "CELLS", "FULL_INFO", "LORA_REPO", "ORIGINAL", "PAPER", "TEACHER_FILES", "TEACHER_REPO",
    "VBENCH_WEIGHTS", "CellSpec",
    "DEFAULT_ENV", "DEFAULT_OUT", "DEFAULT_STUDENT", "Table4Config",
    "PromptFile", "PromptPlan", "VideoRow", "checkout_of_env", "prompt_plan", "vbench_package", "video_seed",
    "lora_file", "pipeline_missing", "student_folder", "teacher_missing",
    "CellPlan", "CostEstimate", "Table4Plan", "VBenchPlan", "format_plan", "plan", "vbench_plan",
    "cell_record", "evaluate_cell", "run", "sample_cell", "summary", "video_backend", "write_mp4",
    "add_arguments", "config_from_args", "main",
]
