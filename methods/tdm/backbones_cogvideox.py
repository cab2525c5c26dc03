"""CogVideoX (CogVideoXPipeline): text-to-video with a CogVideoXTransformer3DModel that predicts v
on latents (n, F, C, H, W), conditioned on T5 embeddings.

The schedule is the teacher's CogVideoXDDIMScheduler (CogVideoX-2b: v-prediction, zero terminal
SNR, SNR shift 3), so alpha is 0 at t = 999: the adapter converts v to x0 and eps without dividing
by alpha, and the trainer's formulas divide only by sigma or by alpha at the sample's own level,
which is below 999 (DPM-Solver++'s log(alpha / sigma) is -inf there: its step from 999 is DDIM's,
and a second-order term through 999 vanishes). Every per-sample reduction of the objective
flattens all non-batch dimensions, frames included.

Text: T5-XXL is 4.7 B weights that training never needs once the prompts are encoded. The prompts
of every iteration are a pure function of (seed, step) (randomness.py), so at start-up each distinct
prompt the run will draw, and "" (the pipeline's unconditional prompt), is encoded once at the
transformer's `max_text_seq_length` (226 for CogVideoX-2b, as the pipeline); the embeddings stay on
the CPU in the frozen networks' dtype (226 x 4096 x 2 bytes = 1.85 MB per prompt in bf16), and the
encoder is freed. A batch then indexes the cache. There is no attention mask: the pipeline passes
the padded embeddings.

Size: the transformer's native clip (CogVideoX-2b: 49 frames of 480 x 720, latents 13 x 16 x 60 x 90);
the 2B model's position embeddings are 3D sin-cos, the 5B's rotary (the adapter builds them).
The transformer has no input for the step count K, so TDM-unify with step conditioning is refused.

Export: a CogVideoXPipeline folder with the student's transformer (LoRA merged), the teacher's
VAE, T5 and tokenizer files copied as they are, and CogVideoXDDIMScheduler with trailing spacing,
whose 4-step timesteps [999, 749, 499, 249] are the student's training timesteps b_k = kT/K - 1;
with LoRA, also <folder>/lora/pytorch_lora_weights.safetensors for the teacher's `load_lora_weights`.
A student trained on explicit timesteps (TDMConfig.timesteps; the `cogvideox-2b` preset's are the
released LoRA's [999, 856, 665, 399]) cannot be sampled by that scheduler, which steps t -> t - T/K
whatever the list: the card's `timesteps` are the trained ones, and its `sampling` line says how to
sample on them (baselines.cogvideox_scheduler.CogVideoXTimestepsDDIMScheduler with timesteps=...).
"""
from __future__ import annotations

import copy
import gc
import json
import shutil
from pathlib import Path

import torch

from methods.common.adapters import CogVideoXAdapter
from methods.common.errors import UserError

from .config import TrainConfig
from .objective import student_timesteps
from .pipeline_backbone import PipelineBackbone, add_to_card, merge_lora, write_student_card

COMPONENTS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
COPIED = ("vae", "text_encoder", "tokenizer")  # exported as the teacher's folder holds them
ENCODE_CHUNK = 16  # prompts per T5 forward while caching
RELEASED_TIMESTEPS = (999, 856, 665, 399)  # Luo-Yihong/TDM_CogVideoX-2B_LoRA's (its README); see the card


class CogVideoXBackbone(PipelineBackbone):
    PIPELINE = "CogVideoXPipeline"
    COMPONENTS = COMPONENTS
    DENOISER = "transformer"
    ADAPTER = CogVideoXAdapter
    STEP_CONDITIONING = False
    LORA_HOW_TO_LOAD = "pipe.load_lora_weights(<student folder>/lora) on the teacher's CogVideoXPipeline"

    def __init__(self, config: TrainConfig, device: torch.device, weight_dtype: torch.dtype):
        super().__init__(config, device, weight_dtype)
        with torch.no_grad():
            self.prompt_rows, self.prompt_embeds = self._cache_prompts()
        self.pipe.text_encoder = None  # the encoder is not resident during training
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # --- loading and shapes -------------------------------------------------------------------------

    def _load(self):
        index = json.loads((self.folder / "model_index.json").read_text())
        kind = (index.get("transformer") or [None, None])[1]
        if kind != "CogVideoXTransformer3DModel":
            raise UserError(f"{self.folder} is not a CogVideoX pipeline: its transformer is {kind} "
                            f"({index.get('_class_name', 'no _class_name')}); pass a CogVideoXPipeline folder")
        pipe = super()._load()
        c = pipe.transformer.config
        if c.in_channels != c.out_channels or getattr(c, "ofs_embed_dim", None):
            raise UserError(f"{self.folder} holds an image-to-video CogVideoX (in_channels {c.in_channels}, "
                            f"out_channels {c.out_channels}); backbone=cogvideox trains text-to-video models")
        return pipe

    def _resolution(self, denoiser) -> tuple[int, int, int]:
        """(frames, height, width) in pixels: the transformer's native clip (its sample_frames counts pixel frames)."""
        if self.config.resolution:
            raise UserError(f"resolution={self.config.resolution} is a square image size; backbone=cogvideox trains "
                            "at the transformer's native clip (CogVideoX-2b: 49 frames at 480x720): set resolution=0")
        c, spatial = denoiser.config, self.pipe.vae_scale_factor_spatial
        return c.sample_frames, c.sample_height * spatial, c.sample_width * spatial

    def _latent_shape(self, denoiser) -> tuple[int, int, int, int]:
        """(F, C, H, W), as CogVideoXPipeline.prepare_latents makes them."""
        frames, height, width = self.resolution
        spatial, temporal = self.pipe.vae_scale_factor_spatial, self.pipe.vae_scale_factor_temporal
        shape = ((frames - 1) // temporal + 1, denoiser.config.in_channels, height // spatial, width // spatial)
        p, p_t = denoiser.config.patch_size, denoiser.config.patch_size_t
        if shape[2] % p or shape[3] % p or (p_t and shape[0] % p_t):
            raise UserError(f"latents {shape} do not split into the transformer's patches "
                            f"({p_t or 1} frames x {p} x {p}); the pipeline would pad them, the trainer does not")
        return shape

    # --- text: encoded once, then looked up -----------------------------------------------------------

    def _encode(self, prompts: list[str]) -> dict:
        embeds, _ = self.pipe.encode_prompt(prompts, do_classifier_free_guidance=False, device=self.device,
                                            max_sequence_length=self.pipe.transformer.config.max_text_seq_length)
        return {"encoder_hidden_states": embeds}

    def _cache_prompts(self) -> tuple[dict[str, int], torch.Tensor]:
        """Each distinct prompt of the run's global batches (iterations 0 .. iterations - 1, so every
        process holds the same cache) -> its row of one (N, L, D) CPU tensor of T5 embeddings."""
        seed, n = self.config.seed, self.config.method.batch_size
        distinct = list(dict.fromkeys(p for step in range(self.config.iterations) for p in self.prompts(seed, step, n)))
        embeds = [self._encode(distinct[i:i + ENCODE_CHUNK])["encoder_hidden_states"].cpu()
                  for i in range(0, len(distinct), ENCODE_CHUNK)]
        return {prompt: row for row, prompt in enumerate(distinct)}, torch.cat(embeds)

    def _tokenize(self, prompts: list[str]) -> torch.Tensor:
        """The cached embeddings of these prompts (on the CPU: this runs in `host_batch`)."""
        missing = [p for p in prompts if p not in self.prompt_rows]
        if missing:
            raise RuntimeError(f"prompt {missing[0]!r} was not cached: the cache holds the prompts of iterations "
                               f"0..{self.config.iterations - 1} only")
        return self.prompt_embeds.index_select(0, torch.tensor([self.prompt_rows[p] for p in prompts]))

    def _encode_tokens(self, embeds: torch.Tensor) -> dict:
        return {"encoder_hidden_states": embeds.to(self.device, non_blocking=True)}

    # --- export ---------------------------------------------------------------------------------------

    def _save_lora(self, model, lora_dir: Path) -> None:
        """pytorch_lora_weights.safetensors with "transformer." keys, as CogVideoXPipeline.load_lora_weights reads."""
        from peft.utils import get_peft_model_state_dict

        type(self.pipe).save_lora_weights(
            str(lora_dir), transformer_lora_layers=get_peft_model_state_dict(model),
            transformer_lora_adapter_metadata=model.peft_config["default"].to_dict())

    def export(self, student, out: Path, K: int) -> Path:
        """A CogVideoXPipeline folder whose transformer is the student for K steps (CFG baked in).

        Written from files rather than a pipeline object: T5 was freed after caching, and copying its
        files keeps them as the teacher stores them."""
        from diffusers import CogVideoXDDIMScheduler

        model = copy.deepcopy(student).to("cpu").float()
        lora_dir = None
        if self.config.lora_rank:
            lora_dir = out / "lora"
            self._save_lora(model, lora_dir)
            merge_lora(model)
        out.mkdir(parents=True, exist_ok=True)
        for name in COPIED:
            shutil.copytree(self.folder / name, out / name, dirs_exist_ok=True)
        model.save_pretrained(str(out / self.DENOISER))
        # Trailing DDIM: for K dividing T its steps t -> t - T/K land on b_k = kT/K - 1 exactly. CogVideoX's
        # DDIM cannot step along other lists (diffusers PR #13125), explicit timesteps included: the card
        # says what samples the student's timesteps exactly.
        scheduler = CogVideoXDDIMScheduler.from_config(self.pipe.scheduler.config, timestep_spacing="trailing")
        scheduler.save_pretrained(str(out / "scheduler"))
        index = json.loads((self.folder / "model_index.json").read_text())
        index["scheduler"] = ["diffusers", type(scheduler).__name__]
        (out / "model_index.json").write_text(json.dumps(index, indent=2))
        method = self.config.method
        timesteps = student_timesteps(K, method.num_train_timesteps, method.timesteps)
        write_student_card(out, self.config, K, timesteps, lora_dir, self.LORA_HOW_TO_LOAD if lora_dir else None)
        self._add_to_card(out, timesteps, scheduler)
        return out

    def _add_to_card(self, out: Path, timesteps: list[int], scheduler) -> None:
        """The clip size and how to sample on the card's timesteps, beside the shared fields."""
        frames, height, width = self.resolution
        if self.config.method.timesteps:
            scheduler.set_timesteps(len(timesteps))
            same = "these" if list(timesteps) == list(RELEASED_TIMESTEPS) else "these, not this student's"
            note = (f"Luo-Yihong/TDM_CogVideoX-2B_LoRA was trained on {same}; this student was trained on the explicit "
                    f"`timesteps` (TDMConfig.timesteps), which the folder's {type(scheduler).__name__} cannot step "
                    f"along (num_inference_steps={len(timesteps)} samples {[int(t) for t in scheduler.timesteps]}): "
                    "sample as `sampling` says")
        else:
            note = ("Luo-Yihong/TDM_CogVideoX-2B_LoRA was trained on these; this student was trained on `timesteps` "
                    "(the trainer's b_k = kT/K - 1): sample on those")
        add_to_card(
            out, frames=frames, height=height, width=width,
            sampling=("pipe.scheduler = baselines.cogvideox_scheduler.CogVideoXTimestepsDDIMScheduler.from_config("
                      f"pipe.scheduler.config); pipe(prompt, timesteps={timesteps}, guidance_scale=1)"),
            released_timesteps=list(RELEASED_TIMESTEPS), released_timesteps_note=note)
