"""Named training presets: the paper's backbones (Appendix D) and every row of Tables 5-8 on
the two small worlds. A preset is a set of overrides of `TrainConfig`'s defaults, so the
dataclasses stay the one source of defaults and a preset says only what differs.

    sd15, sd15-unify, sdxl, pixart        Appendix D; pixart-official-script: the demo script
    cogvideox-2b                          Sec. 4.2 (Table 4), with the settings its comment gives
    dmd2-sd15, tiny-sd15-dmd2-4step       DMD2 re-trained as App. F.1 says (methods/dmd2)
    tiny-sd15-lcm-4step                   LCM on the world's captioned images (methods/lcm)
    {world}-{variant}                     world in tiny-sd15, gmm, tiny-cogvideox; variant in VARIANTS
                                          (tiny-cogvideox: those without step conditioning)
                                          ({world}-official-script: the demo script's recipe
                                          with the world's learning rates, guidance and budget)
"""
from __future__ import annotations

from methods.common.cli import apply_overrides
from methods.common.errors import UserError
from methods.common.method import get_method

from .config import TrainConfig

# Appendix D. Batch sizes are global; gradient clipping 1.0 and AdamW(0, 0.999) are defaults.
PAPER = {
    "sd15": dict(backbone="sd15", teacher="stable-diffusion-v1-5/stable-diffusion-v1-5", steps=(4,),
                 lr_student=2e-6, lr_fake=2e-5, batch_size=256, guidance=3.5, iterations=3000),
    "sd15-unify": dict(backbone="sd15", teacher="stable-diffusion-v1-5/stable-diffusion-v1-5", steps=(1, 2, 4),
                       lr_student=2e-6, lr_fake=2e-5, batch_size=256, guidance=3.5, iterations=20000),
    # SDXL: the paper trains 1k iterations at 512 px, then 1k at 1024 px (App. D). Run this preset
    # twice: resolution=512, then resolution=1024 student_init=<first run>/student-K4. The teacher
    # and the fake score start from SDXL both times; only the student continues.
    "sdxl": dict(backbone="sdxl", teacher="stabilityai/stable-diffusion-xl-base-1.0", steps=(4,),
                 lr_student=1e-6, lr_fake=5e-6, batch_size=64, guidance=8.0, iterations=1000, resolution=512),
    "pixart": dict(backbone="pixart", teacher="PixArt-alpha/PixArt-XL-2-512x512", steps=(4,),
                   lr_student=2e-6, lr_fake=2e-5, batch_size=32, guidance=3.5, iterations=500),
}

# CogVideoX-2B (Sec. 4.2, Table 4). The paper gives no hyper-parameters for it, so these are choices:
# - LoRA (the released Luo-Yihong/TDM_CogVideoX-2B_LoRA is one); rank 64: neither the paper nor the
#   TDM README states the released rank. Student and fake score both train LoRAs; lora_rank=0 trains
#   all 1.69 B weights of each (about 54 GB of fp32 weights, gradients and AdamW states together).
# - K = 4 on the released LoRA's timesteps [999, 856, 665, 399] (Luo-Yihong/TDM_CogVideoX-2B_LoRA,
#   whose README finds uniform spacing worse), not b_k = kT/K - 1 = [999, 749, 499, 249]
#   (timesteps= gives those). The segments and the paper's tau intervals follow the list:
#   [0, 399) for the clean sample, [399, 665), [665, 856), [856, 999). The exported folder's
#   stock CogVideoXDDIMScheduler cannot step along the list: its card says to sample with
#   baselines.cogvideox_scheduler.CogVideoXTimestepsDDIMScheduler and timesteps=[999, 856, 665, 399].
# - guidance 6: CogVideoXPipeline's default CFG scale, with which the teacher is sampled (Table 4's
#   teacher row); the student matches the teacher as it is used.
# - learning rates 10x App. D's full-weight ones (2e-6 / 2e-5, SD-1.5 and PixArt), the usual
#   LoRA-to-full ratio (a LoRA update moves the merged weights less than a full one at the same
#   rate: B starts at 0 and A's rows are small). Fake score 10x the student, as App. D. Not tuned.
# - batch 8 and 500 iterations (PixArt's budget, App. D): an iteration is about 10.5 forward passes
#   of 0.32 s per clip on an H100 GPU (reference compute.md), about 3.7 GPU-hours at this batch
#   before gradient checkpointing's recomputation.
# - gradient checkpointing: 17,550 video tokens and 226 text tokens per clip in full 3D attention.
PAPER["cogvideox-2b"] = dict(
    backbone="cogvideox", teacher="THUDM/CogVideoX-2b", steps=(4,), timesteps=(999, 856, 665, 399), lora_rank=64,
    guidance=6.0, lr_student=2e-5, lr_fake=2e-4, batch_size=8, iterations=500, checkpoint_every=100,
    gradient_checkpointing=True)

# The official demo script (train_tdm_demo.py of Luo-Yihong/TDM, run with its README's flags:
# --use_huber --use_separate, cosine_with_restarts with 50 warm-up steps, 10001 max steps) as
# config values; tests/test_tdm_official_recipe.py checks the trainer's arithmetic under them
# against the script's formulas. Not reproduced: its T = 900 trajectory (student timesteps
# 899, 674, 449, 224; here b_k of T = 1000), 8-bit AdamW (torch's AdamW), fp16 (bf16 here), and
# the teacher pass whose output it drops. The script has no step conditioning (K = 4 fixed).
OFFICIAL_SCRIPT = dict(
    interval="script",                 # x_i at t_mid = b_m + 1, tau in [max(20, t_mid), b_{m+1} - 10)
    loss="pseudo_huber_script",        # elementwise, c = 1e-3, over the DMD normaliser
    loss_space="x0_hat",               # the generator's loss on the x0 prediction at t_g
    importance_weights="per_dim_mean", # exp(-mean(mixed^2) / 2) / exp(-mean(xi^2) / 2)
    fake_snr_cap=5.0,                  # min(SNR_tau, 5) on the fake-score loss
    generator_segment="fresh",         # the generator update draws its own segment and tau
    fake_updates=1,                    # one fake-score step per generator step
    weight_decay=1e-2, adam_betas=(0.0, 0.95),
    grad_clip_fake=0.0,                # only the generator is clipped (max_grad_norm 1)
    lr_schedule="cosine_with_restarts", lr_warmup=50, lr_horizon=10001,  # the generator's only
    step_conditioning=False,
)
PAPER["pixart-official-script"] = dict(
    backbone="pixart", teacher="PixArt-alpha/PixArt-XL-2-512x512", steps=(4,), lr_student=4e-6, lr_fake=2e-5,
    batch_size=32, guidance=4.5, iterations=500, **OFFICIAL_SCRIPT)  # lr_G = lr / 5 at the README's lr 2e-5

# The rows of Tables 5-8 as differences from TDM-4step (the paper's SD-1.5 4-step TDM).
UNIFY_STEPS = (1, 2, 4)  # the paper evaluates TDM-unify at 1, 2 and 4 steps; its list is not stated
VARIANTS = {
    "4step": {},                                                        # Tables 5-8: TDM (4 steps)
    "unify": dict(steps=UNIFY_STEPS),                                   # Table 5: TDM-unify
    "unify-no-step-cond": dict(steps=UNIFY_STEPS, step_conditioning=False),  # Table 5
    "unify-no-surrogate": dict(steps=UNIFY_STEPS, loss="kl"),          # Table 5: w/o Pseudo-Huber
    "4step-no-is": dict(importance_weights="none"),                   # Table 5: TDM-4step w/o importance sampling
    "4step-dpmpp": dict(solver="dpmpp"),                                # Table 6: train with DPM-Solver
    "4step-clean": dict(match="clean"),                                 # Table 7: match clean samples
    "4step-fisher": dict(loss="fisher"),                                # Table 8
    "official-script": OFFICIAL_SCRIPT,                                 # Table 5's extra row: the script's recipe
}

# The small worlds. Their networks are so small that Python and kernel launches, not arithmetic,
# bound an eager iteration on a GPU: tiny-sd15 captures whole iterations as CUDA graphs there
# (eager on a CPU). Each budget is the same for every variant (App. F.1), where TDM-4step's
# convergence curve levels off (results/sweeps/budget-{4step,unify}, 2 seeds).
#
# tiny-sd15: the paper's CFG 3.5, batch 256, one fake-score step per generator step (Alg. 1) and
#   ratio lr_fake = 10 lr_student. The rates come from a 2 x 2 sweep of 4-step runs with the
#   per-dimension importance weights (results/sweeps/lr-per-dim, 700 iterations, seed 0):
#   5e-6 / 5e-5 scored best on fd_teacher, fd_data and coverage (20.8 against 21.7-42.4); the
#   earlier choice of lr_fake 2e-4 was made with the collapsed "exact" weights.
#   Budget 500: TDM-4step's fd_teacher is 21.2 +- 0.3 at 250, 22.0 +- 0.9 at 500, 22.0 +- 1.9 at
#   1000 and 23.7 +- 1.1 at 2000 iterations (fd_data drifts up, 154 to 163). TDM-unify has not
#   converged by then (52, 90, 79, 50, 45 at 250 to 4000 iterations, at 4 steps); the paper, too,
#   trains TDM-unify longer than TDM-4step for its main results (20k against 3k, App. D).
# gmm: an exact teacher, so no guidance. 5 fake-score steps per generator step, against Alg. 1's
#   one, because on gmm that measured better: sliced Wasserstein 0.083 +- 0.024 against
#   0.183 +- 0.014 for TDM-4step over 5 seeds, 0.155 against 0.218 for TDM-unify over 3
#   (results/sweeps/fake-updates*). Budget 4500: TDM-4step's sliced Wasserstein is 0.185 at 500,
#   0.096 at 1500, 0.056 at 4500 and 0.056 at 9000 iterations.
WORLDS = {
    "tiny-sd15": dict(backbone="sd15", teacher="tiny-sd15", prompts="tiny-sd15", lr_student=5e-6, lr_fake=5e-5,
                      batch_size=256, guidance=3.5, iterations=500, checkpoint_every=100, execution="cuda_graph"),
    "gmm": dict(backbone="gmm", lr_student=3e-4, lr_fake=1e-3, batch_size=256, guidance=1.0,
                fake_updates=5, iterations=4500, checkpoint_every=1500, tracker="none"),
}

# tiny-cogvideox (Table 4 on the small video world): the cogvideox backbone on the world's teacher, a
# CogVideoXPipeline whose transformer has 2.5 M weights at 9 frames of 64 px (latents 3 x 8 x 8 x 8,
# 48 video tokens beside 32 text tokens). A first guess, NOT yet measured for convergence (no budget
# or learning-rate sweep has been run on this world):
# - full weights (lora_rank 0), not the 2B preset's LoRA: at 2.5 M weights a LoRA saves nothing, and
#   tiny-sd15's presets train full weights too;
# - guidance 3: the CFG the world's teacher is sampled and judged with (tiny_cogvideox/evaluate.py's
#   default, Table 4's teacher rows), so the student matches the teacher as it is used;
# - lr_student 5e-6, lr_fake 5e-5: tiny-sd15's measured best (results/sweeps/lr-per-dim), for a network
#   of the same size trained on full weights with the same AdamW(0, 0.999); the paper's ratio
#   lr_fake = 10 lr_student (App. D);
# - batch 128 x 1000 iterations: the same 128 k student samples as tiny-sd15's budget (256 x 500), where
#   its TDM-4step curve levels off. A first run on one H200 (eager, bf16, 4 data workers; not a committed
#   record) took 0.16-0.17 s per iteration at a peak of 8.2 GiB, about 3 minutes per run;
# - K = 4 on b_k = kT/K - 1 = [999, 749, 499, 249] (timesteps=()), the trailing DDIM timesteps at which
#   the world's teacher is sampled at 4 steps, so the student and Table 4's 4-step teacher row share them;
# - eager execution: CUDA graphs are captured for the UNet backbones only.
WORLDS["tiny-cogvideox"] = dict(
    backbone="cogvideox", teacher="tiny-cogvideox", prompts="tiny-cogvideox", lora_rank=0, guidance=3.0,
    lr_student=5e-6, lr_fake=5e-5, batch_size=128, iterations=1000, checkpoint_every=250)


def _trainable_on(world: str, changes: dict) -> bool:
    """CogVideoX's transformer has no input for K: no TDM-unify with step conditioning on the video world."""
    unify = len(changes.get("steps", (4,))) > 1
    return not (world == "tiny-cogvideox" and unify and changes.get("step_conditioning", True))


PRESETS = dict(PAPER)
for _world, _base in WORLDS.items():
    for _variant, _changes in VARIANTS.items():
        if _trainable_on(_world, _changes):
            PRESETS[f"{_world}-{_variant}"] = {**_base, **_changes}


# DMD2 (methods/dmd2), the paper's direct comparator, on the same loop. TDM App. F.1 re-trains it for
# Table 1's 4-step SD-1.5 row with "the fake score updated 10 times per iteration; other hyper-parameters
# consistent with our configuration": TDM's learning rates, AdamW(0, 0.999), clipping, batch and CFG.
# One DMD2 iteration is one fake-score update (the generator's every `generator_every`), so a budget
# of N generator updates is 10 N iterations. App. F.1 gives none: these match TDM's (App. D: 3k for
# SD-1.5; tiny-sd15's 500), not tuned, and no DMD2 run has been measured on them yet.
DMD2 = dict(algorithm="dmd2", steps=(4,), generator_every=10)
PRESETS["dmd2-sd15"] = {**{k: v for k, v in PAPER["sd15"].items() if k != "iterations"}, **DMD2,
                        "iterations": 30_000, "checkpoint_every": 1000}
# Other methods' rows of the small worlds, by variant as VARIANTS' (tiny-sd15 only: the gmm world's and
# the video world's evaluations sample with ODE solvers, not as DMD2 samples).
# LCM (methods/lcm) learns from the world's captioned images, so it has a small-world preset only. The
# world's teacher is sampled at CFG 3.5, so w (scale w + 1) is drawn around it, in [1, 5], and its
# export samples at 3.5 as TDM's students match; the student's rate is TDM-4step's on the world; AdamW
# (0.9, 0.999), EMA 0.95, pseudo-Huber c = 0.001 and the 50-step skeleton are diffusers' script's.
# Budget 2,000 iterations (the cost estimate of the baselines' reference). None of it tuned or measured.
LCM = dict(algorithm="lcm", steps=(4,), w_min=1.0, w_max=5.0, sample_guidance=3.5)
METHOD_VARIANTS = {"tiny-sd15": {
    "dmd2-4step": dict(DMD2, iterations=5000, checkpoint_every=1000,
                       execution="eager"),  # DMD2's graphs are not yet checked against eager (methods/dmd2)
    "lcm-4step": dict(LCM, lr_student=5e-6, iterations=2000, checkpoint_every=500, execution="eager"),
}}
for _world, _variants in METHOD_VARIANTS.items():
    for _variant, _changes in _variants.items():
        PRESETS[f"{_world}-{_variant}"] = {**WORLDS[_world], **_changes}


def resolve(preset: str, overrides: list[str] | dict = ()) -> TrainConfig:
    """TrainConfig defaults (with the preset's method's config), then the preset, then command-line overrides."""
    if preset not in PRESETS:
        close = [name for name in PRESETS if preset.split("-")[0] in name][:6]
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UserError(f"unknown preset {preset!r}{hint} (python -m methods.tdm.train --list shows all)")
    changes = dict(PRESETS[preset])
    algorithm = changes.pop("algorithm", "tdm")  # the method fixes the class of `method`, so it comes first
    config = apply_overrides(TrainConfig(algorithm=algorithm, method=get_method(algorithm).config_class()), changes)
    config = apply_overrides(config, overrides)
    if not config.output_dir:
        config = apply_overrides(config, {"output_dir": f"runs/{preset}"})
    return config
