"""Every Table 1-2 row as a sampler recipe, each with the model card, README or script it is read
from. Facts the source does not state, or that could not be checked against it, are in `notes`.

Bases: SD-1.5 is `stable-diffusion-v1-5/stable-diffusion-v1-5`, the maintained copy of the
withdrawn `runwayml/stable-diffusion-v1-5` (same weights; the cards name the old id). Table 2's
LoRAs run on other bases through `recipe.on_base` (`NAME@dreamshaper-7`, see BASES).
"""
from __future__ import annotations

from .recipe import SamplerRecipe, Weights

SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SDXL = "stabilityai/stable-diffusion-xl-base-1.0"
PIXART_512 = "PixArt-alpha/PixArt-XL-2-512x512"
PIXART_1024 = "PixArt-alpha/PixArt-XL-2-1024-MS"

# Table 2's customised SD-1.5 models. The paper names "Realistic" and "Dreamshaper" without a
# version; these are the versions the released LoRAs were shown on (TDM: dreamshaper-7;
# PeRFlow: dreamshaper-8 and RealisticVision-v51).
BASES = {
    "sd15": SD15,
    "dreamshaper-7": "Lykon/dreamshaper-7",
    "dreamshaper-8": "Lykon/dreamshaper-8",
    "realistic-vision": "SG161222/Realistic_Vision_V5.1_noVAE",
}

DMD2_SD15_1STEP = ("model/sdv1.5/laion6.25_sd_baseline_8node_guidance1.75_lr5e-7_seed10_dfake10_diffusion1000_"
                   "gan1e-3_resume_fid8.35_checkpoint_model_041000/pytorch_model.bin")
TRAILING = (("timestep_spacing", "trailing"),)
FOUR_STEP_TIMESTEPS = (999, 749, 499, 249)


def _lora(repo: str, file: str, scale: float = 1.0, **kw) -> tuple[Weights, ...]:
    return (Weights("lora", repo, file, scale=scale, **kw),)


def _hyper_sd_lora(pipeline: str, steps: int) -> SamplerRecipe:
    """Hyper-SD's N-step LoRA (N = 2, 4, 8): DDIM with trailing timesteps, no CFG, fused at scale 1."""
    prefix, size = ("Hyper-SD15", 512) if pipeline == "sd15" else ("Hyper-SDXL", 1024)
    return SamplerRecipe(
        f"hyper-{pipeline}-{steps}step", "Hyper-SD", pipeline, SD15 if pipeline == "sd15" else SDXL,
        weights=_lora("ByteDance/Hyper-SD", f"{prefix}-{steps}steps-lora.safetensors"),
        scheduler="DDIMScheduler", scheduler_config=TRAILING, steps=steps, guidance=0.0, height=size, width=size,
        source="huggingface.co/ByteDance/Hyper-SD model card", notes="eta not passed by the card (0)")


def _sdxl_unet_and_lora(name: str, method: str, repo: str, unet_file: str, lora_file: str,
                        **sampling) -> list[SamplerRecipe]:
    """A release that ships its distilled SDXL UNet and the same as a LoRA: one recipe each
    (`name`, `name-lora`), sampled alike at 1024 px without guidance."""
    common = dict(guidance=0.0, height=1024, width=1024, **sampling)
    return [SamplerRecipe(name, method, "sdxl", SDXL, weights=(Weights("unet", repo, unet_file),), **common),
            SamplerRecipe(f"{name}-lora", method, "sdxl", SDXL, weights=_lora(repo, lora_file), **common)]


def _perflow_sd15(steps: int) -> SamplerRecipe:
    """PeRFlow's SD-1.5 delta weights sampled with one Euler step per time window."""
    return SamplerRecipe(
        f"perflow-sd15-{steps}step", "PeRFlow", "sd15", SD15,
        weights=(Weights("delta", "hansyan/perflow-sd15-delta-weights", variant="v0-1"),),
        scheduler="PeRFlowScheduler", scheduler_config=(("prediction_type", "diff_eps"), ("num_time_windows", steps)),
        steps=steps, guidance=4.5, guidance_mode="cfg",
        source="magic-research/piecewise-rectified-flow (hansyan): README.md, scripts/sd15_t2i_merged.py, "
               "src/scheduler_perflow.py",
        notes="num_time_windows = steps: the released scheduler silently raises fewer steps than windows to its "
              "4 windows, so this is the only true 1- or 2-step sample; how the paper sampled 2 steps is not "
              "stated. 'diff_eps' is what the delta weights were trained for ('epsilon' fails the released "
              "scheduler's assertion). CFG 4.5 is the release's 4-step demo value; the demo's negative prompt "
              "is not used (the paper does not say it used one)")


RECIPES: dict[str, SamplerRecipe] = {r.name: r for r in [
    # ---------------------------------------------------------------- teachers (Tables 1-2's base rows)
    SamplerRecipe("sd15-teacher-25", "Base Model", "sd15", SD15, scheduler="DPMSolverMultistepScheduler",
                  steps=25, guidance=7.5, guidance_mode="cfg", source="TDM paper, Table 1 (25 steps)",
                  notes="the paper gives neither the solver nor the CFG scale of SD-1.5's 25-step row; "
                        "DPM-Solver++ and 7.5 (SDXL's stated scale) are this project's choice"),
    SamplerRecipe("sdxl-teacher-25", "Base Model-1024 (CFG=7.5)", "sdxl", SDXL, scheduler="DPMSolverMultistepScheduler",
                  steps=25, guidance=7.5, guidance_mode="cfg", height=1024, width=1024,
                  source="TDM paper, Table 1 (25 steps, CFG 7.5)", notes="solver not stated in the paper"),
    SamplerRecipe("pixart-teacher-25", "Base Model-1024 (CFG=3.5)", "pixart", PIXART_1024,
                  scheduler="DPMSolverMultistepScheduler", steps=25, guidance=3.5, guidance_mode="cfg",
                  height=1024, width=1024, source="TDM paper, Table 1 (25 steps, CFG 3.5)",
                  notes="DPM-Solver is PixArt-alpha's own scheduler; the paper does not name one"),

    # ---------------------------------------------------------------- SD-1.5 (Table 1)
    SamplerRecipe("instaflow-0.9b", "InstaFlow", "sd15", "XCLiu/instaflow_0_9B_from_sd_1_5", assemble=True,
                  scheduler="RectifiedFlowEulerScheduler", steps=1, guidance=0.0, dtype="float32",
                  source="gnobitab/InstaFlow code/README.md; diffusers examples/community/instaflow_one_step.py",
                  notes="model_index.json names RectifiedFlowPipeline (not in diffusers), so the pipeline is "
                        "assembled from unet/vae/text_encoder/tokenizer; 1 step only, no CFG, no negative "
                        "prompt; float32 as the README recommends; weights CC-BY-NC-4.0"),
    _perflow_sd15(2),
    _perflow_sd15(4),
    _perflow_sd15(1),
    SamplerRecipe("perflow-sd15-dreamshaper", "PeRFlow", "sd15", "hansyan/perflow-sd15-dreamshaper",
                  scheduler="PeRFlowScheduler",
                  scheduler_config=(("prediction_type", "diff_eps"), ("num_time_windows", 4)),
                  steps=4, guidance=4.5, guidance_mode="cfg",
                  source="magic-research/piecewise-rectified-flow (hansyan): README.md (merged DreamShaper-8 pipeline)",
                  notes="the delta weights already merged into DreamShaper-8; not a paper row"),
    SamplerRecipe("hyper-sd15-1step", "Hyper-SD", "sd15", SD15,
                  weights=_lora("ByteDance/Hyper-SD", "Hyper-SD15-1step-lora.safetensors"),
                  scheduler="TCDScheduler", steps=1, guidance=0.0, eta=1.0,
                  source="huggingface.co/ByteDance/Hyper-SD model card (unified 1-step LoRA with TCD)",
                  notes="at 1 step TCD adds no noise, so eta does not change the image; the LoRA file's key "
                        "format (diffusers or kohya) is not confirmed"),
    *(_hyper_sd_lora("sd15", n) for n in (4, 2, 8)),
    SamplerRecipe("lcm-dreamshaper-v7", "LCM-dreamshaper", "sd15", "SimianLuo/LCM_Dreamshaper_v7",
                  scheduler="LCMScheduler", steps=4, guidance=8.0, guidance_mode="embedded",
                  source="huggingface.co/SimianLuo/LCM_Dreamshaper_v7; luosiallen/latent-consistency-model README",
                  notes="the base is Dreamshaper-7, not SD-1.5; guidance enters through the UNet's "
                        "time_cond_proj_dim (one evaluation per step); 8.0 is the card's example value"),
    SamplerRecipe("tcd-sd15", "TCD", "sd15", SD15,
                  weights=_lora("h1t/TCD-SD15-LoRA", "pytorch_lora_weights.safetensors"),
                  scheduler="TCDScheduler", steps=4, guidance=0.0, eta=0.3,
                  source="huggingface.co/h1t/TCD-SD15-LoRA model card",
                  notes="eta (the card's gamma) 0.3 is passed explicitly: the pipeline's default is 0"),
    SamplerRecipe("dmd2-sd15-4step", "DMD2", "sd15", "project/dmd2-sd15-4step",
                  scheduler="LCMScheduler", timesteps=FOUR_STEP_TIMESTEPS, steps=4, guidance=0.0,
                  source="TDM paper App. F.1 (re-trained); tianweiy/DMD2 README (4-step sampling, SDXL)",
                  notes="DMD2 released no 4-step SD-1.5 model (DMD2 issue 36): the row is a student this "
                        "project trains (python -m methods.tdm.train --preset dmd2-sd15, methods/dmd2; its "
                        "student-K4 folder goes here), sampled as DMD2's 4-step SDXL model is"),
    SamplerRecipe("dmd2-sd15-1step", "DMD2", "sd15", SD15,
                  weights=(Weights("unet", "tianweiy/DMD2", DMD2_SD15_1STEP),),
                  scheduler="LCMScheduler", timesteps=(999,), steps=1, guidance=0.0,
                  source="tianweiy/DMD2 experiments/sdv1.5/README.md; main/test_folder_sd.py",
                  notes="DMD2 takes the x0 prediction at t=999; LCMScheduler's 1-step output differs from it "
                        "by c_skip(999) ~ 3e-9 of the noise. Not a paper row (Table 1's DMD2 is 4-step)"),
    SamplerRecipe("lcm-lora-sd15", "LCM", "sd15", SD15,
                  weights=_lora("latent-consistency/lcm-lora-sdv1-5", "pytorch_lora_weights.safetensors"),
                  scheduler="LCMScheduler", steps=4, guidance=1.0,
                  source="huggingface.co/latent-consistency/lcm-lora-sdv1-5 model card",
                  notes="the card allows guidance 1-2; 1 (no CFG) is used here"),
    SamplerRecipe("tdm-dreamshaper-lora", "TDM", "sd15", "Lykon/dreamshaper-7",
                  weights=_lora("Luo-Yihong/TDM_dreamshaper_LoRA", "tdm_dreamshaper.pt"),
                  scheduler="DPMSolverMultistepScheduler", scheduler_config=(("timestep_spacing", "linspace"),),
                  steps=4, guidance=1.0,
                  source="Luo-Yihong/TDM README.md (released LoRA)",
                  notes="the README builds DPM-Solver from SD-1.5's scheduler config (linspace spacing: "
                        "timesteps 999, 749, 500, 250); the .pt file's key format is not confirmed"),

    # ---------------------------------------------------------------- SDXL (Table 1)
    SamplerRecipe("lcm-lora-sdxl", "LCM", "sdxl", SDXL,
                  weights=_lora("latent-consistency/lcm-lora-sdxl", "pytorch_lora_weights.safetensors"),
                  scheduler="LCMScheduler", steps=4, guidance=1.0, height=1024, width=1024,
                  source="huggingface.co/latent-consistency/lcm-lora-sdxl model card"),
    SamplerRecipe("tcd-sdxl", "TCD", "sdxl", SDXL,
                  weights=_lora("h1t/TCD-SDXL-LoRA", "pytorch_lora_weights.safetensors"),
                  scheduler="TCDScheduler", steps=4, guidance=0.0, eta=0.3, height=1024, width=1024,
                  source="huggingface.co/h1t/TCD-SDXL-LoRA model card"),
    SamplerRecipe("sdxl-turbo-512", "SDXL-Turbo-512", "sdxl", "stabilityai/sdxl-turbo",
                  scheduler="EulerAncestralDiscreteScheduler", scheduler_config=TRAILING, steps=4, guidance=0.0,
                  height=512, width=512,
                  source="huggingface.co/stabilityai/sdxl-turbo (scheduler_config.json, card); TDM Table 1",
                  notes="stochastic sampler: images depend on the per-seed generators"),
    *_sdxl_unet_and_lora("sdxl-lightning-4step", "SDXL-Lightning", "ByteDance/SDXL-Lightning",
                         "sdxl_lightning_4step_unet.safetensors", "sdxl_lightning_4step_lora.safetensors",
                         scheduler="EulerDiscreteScheduler", scheduler_config=TRAILING, steps=4,
                         source="huggingface.co/ByteDance/SDXL-Lightning model card"),
    SamplerRecipe("sdxl-lightning-1step", "SDXL-Lightning", "sdxl", SDXL,
                  weights=(Weights("unet", "ByteDance/SDXL-Lightning", "sdxl_lightning_1step_unet_x0.safetensors"),),
                  scheduler="EulerDiscreteScheduler",
                  scheduler_config=(("timestep_spacing", "trailing"), ("prediction_type", "sample")),
                  steps=1, guidance=0.0, height=1024, width=1024,
                  source="huggingface.co/ByteDance/SDXL-Lightning model card (1-step x0 UNet)"),
    *(_hyper_sd_lora("sdxl", n) for n in (4, 2, 8)),
    SamplerRecipe("perflow-sdxl-dreamshaper", "PeRFlow", "sdxl", "hansyan/perflow-sdxl-dreamshaper",
                  base_variant="v0-fix", scheduler="PeRFlowScheduler",
                  scheduler_config=(("prediction_type", "ddim_eps"), ("num_time_windows", 4)),
                  steps=4, guidance=2.0, guidance_mode="cfg", height=1024, width=1024,
                  source="magic-research/piecewise-rectified-flow (hansyan): README.md (SDXL, variant v0-fix)",
                  notes="the README's SDXL demo uses 6 steps at CFG 2.0; 4 steps (one per window) here; not a "
                        "paper row"),
    SamplerRecipe("hyper-sdxl-1step", "Hyper-SD", "sdxl", SDXL,
                  weights=_lora("ByteDance/Hyper-SD", "Hyper-SDXL-1step-lora.safetensors"),
                  scheduler="TCDScheduler", steps=1, guidance=0.0, eta=1.0, height=1024, width=1024,
                  source="huggingface.co/ByteDance/Hyper-SD model card (unified 1-step LoRA with TCD)"),
    SamplerRecipe("hyper-sdxl-1step-unet", "Hyper-SD", "sdxl", SDXL,
                  weights=(Weights("unet", "ByteDance/Hyper-SD", "Hyper-SDXL-1step-Unet.safetensors"),),
                  scheduler="LCMScheduler", timesteps=(800,), steps=1, guidance=0.0, height=1024, width=1024,
                  source="huggingface.co/ByteDance/Hyper-SD model card ('set start timesteps to 800')"),
    *_sdxl_unet_and_lora("dmd2-sdxl-4step", "DMD2", "tianweiy/DMD2", "dmd2_sdxl_4step_unet_fp16.bin",
                         "dmd2_sdxl_4step_lora_fp16.safetensors", scheduler="LCMScheduler",
                         timesteps=FOUR_STEP_TIMESTEPS, steps=4,
                         source="tianweiy/DMD2 README.md (4-step UNet; LoRA with fuse_lora(lora_scale=1.0))"),
    SamplerRecipe("dmd2-sdxl-1step", "DMD2", "sdxl", SDXL,
                  weights=(Weights("unet", "tianweiy/DMD2", "dmd2_sdxl_1step_unet_fp16.bin"),),
                  scheduler="LCMScheduler", timesteps=(399,), steps=1, guidance=0.0, height=1024, width=1024,
                  source="tianweiy/DMD2 README.md (1-step UNet, timesteps=[399])"),

    # ---------------------------------------------------------------- PixArt-alpha (Table 1)
    SamplerRecipe("yoso-pixart-512", "YOSO-512", "pixart", PIXART_512,
                  weights=(Weights("transformer", "Luo-Yihong/yoso_pixart512"),),
                  scheduler="LCMScheduler", scheduler_config=(("prediction_type", "v_prediction"),),
                  steps=4, guidance=1.0, height=512, width=512,
                  source="Luo-Yihong/YOSO README.md; TDM Table 1 (YOSO-512, 4 steps)",
                  notes="v-prediction LCM sampling is read from a copy of the model card, not the card itself"),
    SamplerRecipe("pixart-lcm-1024", "LCM-1024", "pixart", "PixArt-alpha/PixArt-LCM-XL-2-1024-MS",
                  scheduler="LCMScheduler", steps=4, guidance=0.0, height=1024, width=1024,
                  source="huggingface.co/PixArt-alpha/PixArt-LCM-XL-2-1024-MS model card (bundled LCMScheduler)"),
]}


# ---------------------------------------------------------------- the released TDM models beyond SD-1.5
RECIPES.update({r.name: r for r in [
    SamplerRecipe("tdm-cogvideox-2b-lora", "TDM", "cogvideox", "THUDM/CogVideoX-2b",
                  weights=_lora("Luo-Yihong/TDM_CogVideoX-2B_LoRA", "pytorch_lora_weights.safetensors"),
                  scheduler="CogVideoXTimestepsDDIMScheduler", timesteps=(999, 856, 665, 399), steps=4,
                  guidance=1.0, height=480, width=720, frames=49, dtype="bfloat16",
                  source="Luo-Yihong/TDM README.md; huggingface.co/Luo-Yihong/TDM_CogVideoX-2B_LoRA",
                  notes="trained and sampled on the timesteps [999, 856, 665, 399] with guidance 1; diffusers' "
                        "CogVideoX DDIM cannot step along them, so the project's DDIM on the list is used; "
                        "the LoRA's file name is not confirmed"),
    SamplerRecipe("tdm-sd3-lora", "TDM", "sd3", "stabilityai/stable-diffusion-3-medium-diffusers",
                  weights=_lora("Luo-Yihong/TDM_sd3_lora", "pytorch_lora_weights.safetensors", scale=0.125),
                  scheduler="DPMSolverMultistepScheduler",
                  scheduler_config=(("algorithm_type", "dpmsolver++"), ("solver_order", 2),
                                    ("prediction_type", "flow_prediction"), ("use_flow_sigmas", True),
                                    ("flow_shift", 6.0)),
                  steps=4, guidance=1.0, height=1024, width=1024,
                  source="Luo-Yihong/TDM README.md (SD3 LoRA at scale 0.125, DPM-Solver with Sana's config)",
                  notes="not a paper row; the base (SD3-medium or 3.5), the LoRA's file name and the guidance "
                        "are not confirmed; Sana's DPM-Solver config is written out as overrides"),
]})


def table2_recipes() -> list[SamplerRecipe]:
    """Table 2: the SD-1.5 4-step LoRAs and delta weights on the customised bases."""
    out = []
    for base in ("realistic-vision", "dreamshaper-7"):
        for name in ("lcm-lora-sd15", "perflow-sd15-4step", "tcd-sd15", "hyper-sd15-4step"):
            out.append(RECIPES[name].on_base(BASES[base], label=base))
    return out
