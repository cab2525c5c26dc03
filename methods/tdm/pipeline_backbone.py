"""What every diffusers-pipeline backbone shares: finding and loading the teacher's folder,
the trainable copies (Algorithm 1, line 1) with step conditioning and LoRA, batches of
prompts, and the export of a trained student as a pipeline folder.

A subclass names its pipeline class, the component TDM distils (`unet`, `transformer`), the
denoiser adapter, its text encoders, and how it encodes prompts into the adapter's `cond`
dict. `SDBackbone` (backbones.py), `SDXLBackbone` (backbones_sdxl.py), `PixArtBackbone`
(backbones_pixart.py) and `CogVideoXBackbone` (backbones_cogvideox.py) are the subclasses.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from methods.common.adapters import UNetAdapter
from methods.common.errors import UserError
from methods.common.method import get_method
from methods.common.pipeline_io import SD_COMPONENTS, check_pipeline_folder
from methods.common.schedule import NoiseSchedule
from methods.common.worlds import provides, world

from .config import TrainConfig
from .randomness import BatchRandom
from .step_conditioning import fold_condition, fold_step_conditioning, with_step_conditioning
from .trainer import Roles

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]  # attention projections: UNet and PixArt alike


def resolve_teacher(name: str, components=SD_COMPONENTS) -> Path:
    """A local pipeline folder for `name`: a folder, a world's name ("tiny-sd15", "tiny-cogvideox"),
    or a Hugging Face id already cached."""
    if provides(name, "PIPELINE"):
        return check_pipeline_folder(world(name).PIPELINE, components)
    if not name:
        raise UserError("no teacher given: set teacher=<pipeline folder or Hugging Face id>")
    if Path(name).exists():
        return check_pipeline_folder(name, components)
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(name, local_files_only=True)
    except Exception:  # huggingface_hub raises several types for "not cached" and "bad id"
        raise UserError(f"teacher {name!r} is neither a local folder nor in the Hugging Face cache; "
                        f"download it on a connected machine (huggingface-cli download {name}) "
                        "or pass teacher=<local pipeline folder>") from None
    return check_pipeline_folder(folder, components)


class PipelineBackbone:
    """A diffusers pipeline folder: the frozen denoiser is the teacher, float32 copies of it the
    student and the fake score. Text encoders stay frozen in `weight_dtype`."""

    PIPELINE = "StableDiffusionPipeline"  # diffusers class that loads and exports the folder
    COMPONENTS = SD_COMPONENTS            # sub-folders the teacher's folder must have
    DENOISER = "unet"                     # the component TDM distils
    ADAPTER = UNetAdapter                 # how the trainer talks to it (methods.common.adapters)
    TEXT_ENCODERS = ("text_encoder",)
    LOAD_KWARGS: dict = {}
    STEP_CONDITIONING = True              # the denoiser takes K through `time_cond_proj_dim` (Eq. 8)
    LORA_HOW_TO_LOAD = "pipe.load_lora_weights(<student folder>/lora) on the teacher's pipeline"

    def __init__(self, config: TrainConfig, device: torch.device, weight_dtype: torch.dtype):
        self._check_method(config)
        self.config, self.device = config, device
        self.prompts = prompt_source(config)
        # A method that learns from data (LCM) gets captioned images instead of captions alone.
        self.images = image_source(config) if get_method(config.algorithm).needs_data else None
        self.folder = resolve_teacher(config.teacher, self.COMPONENTS)
        self.pipe = pipe = self._load()
        denoiser = getattr(pipe, self.DENOISER)
        self.resolution = self._resolution(denoiser)
        self.latent_shape = self._latent_shape(denoiser)
        torch.manual_seed(config.seed)  # LoRA's random init: from the config, not the process's history
        # Copies first, from the weights as loaded, so that a bf16 teacher does not round them.
        self.modules = {"student": self._trainable(self._initial_student(denoiser)),
                        "fake_score": self._trainable(denoiser)}
        teacher = denoiser.to(device, weight_dtype).requires_grad_(False).eval()
        for name in self.TEXT_ENCODERS:
            getattr(pipe, name).to(device, weight_dtype).requires_grad_(False).eval()
        if self.images is not None:  # in float32: the exported folder keeps this VAE as it was loaded
            pipe.vae.to(device).requires_grad_(False).eval()
        adapter = lambda model: self.ADAPTER.from_scheduler(model, pipe.scheduler)  # noqa: E731
        self.roles = Roles(adapter(self.modules["student"]), adapter(self.modules["fake_score"]), adapter(teacher),
                           NoiseSchedule.from_scheduler(pipe.scheduler))
        with torch.no_grad():
            self.uncond = self._encode_uncond()  # computed once: the same for every row

    # --- what a subclass says about its pipeline -------------------------------------------------

    def _encode(self, prompts: list[str]) -> dict:
        """The adapter's cond dict for these prompts, one row each."""
        raise NotImplementedError

    def _tokenize(self, prompts: list[str]):
        """The part of encoding that runs on the CPU; by default none (the prompts themselves)."""
        return prompts

    def _encode_tokens(self, tokens) -> dict:
        """The cond dict from `_tokenize`'s output."""
        return self._encode(tokens)

    def _encode_uncond(self) -> dict:
        """The unconditional cond dict (one row) that the teacher's pipeline uses for CFG."""
        return self._encode([""])

    def _latent_shape(self, denoiser) -> tuple[int, ...]:
        """One sample's latents: (C, H, W) of a square image at `self.resolution`."""
        latent = self.resolution // self.pipe.vae_scale_factor
        return (denoiser.config.in_channels, latent, latent)

    def _latent_multiple(self, denoiser) -> int:
        """Latent sizes the denoiser takes are multiples of this (a UNet pads odd sizes itself)."""
        return 1

    def _save_lora(self, model, lora_dir: Path) -> None:
        """The LoRA weights, where the teacher's `pipe.load_lora_weights` finds them."""
        from peft.utils import get_peft_model_state_dict

        # With the "unet." key prefix diffusers' loaders look for (bare keys are skipped with a warning).
        type(self.pipe).save_lora_weights(
            str(lora_dir), unet_lora_layers=get_peft_model_state_dict(model),
            unet_lora_adapter_metadata=model.peft_config["default"].to_dict())

    # --- shared ------------------------------------------------------------------------------------

    def _check_method(self, config: TrainConfig) -> None:
        method = config.method
        if method.unify and method.step_conditioning and not self.STEP_CONDITIONING:
            raise UserError(f"backbone={config.backbone} cannot be told the step count K (its {self.DENOISER} has "
                            "no time_cond_proj_dim input), so TDM-unify's step conditioning (Eq. 8) is unavailable: "
                            "train one K (steps=4, as the paper does) or set step_conditioning=false")

    def _load(self):
        import diffusers

        try:
            pipe = getattr(diffusers, self.PIPELINE).from_pretrained(
                str(self.folder), local_files_only=True, **self.LOAD_KWARGS)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise UserError(f"cannot load the pipeline in {self.folder} as {self.PIPELINE}: "
                            f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def _resolution(self, denoiser) -> int:
        """Pixels per side: config.resolution, or the teacher's native size."""
        scale = self.pipe.vae_scale_factor
        size = self.config.resolution or denoiser.config.sample_size * scale
        multiple = scale * self._latent_multiple(denoiser)
        if size % multiple:
            raise UserError(f"resolution {size} does not suit this {self.DENOISER}: use a multiple of {multiple} "
                            f"(the VAE's factor {scale} times the {self.DENOISER}'s {multiple // scale})")
        return size

    def _trainable(self, denoiser, device=None):
        """Algorithm 1, line 1: a float32 copy of the teacher; with step conditioning and LoRA when asked."""
        model = copy.deepcopy(denoiser).float().to(device or self.device)
        if self.config.method.conditioned:
            model = with_step_conditioning(model)
        if self.config.lora_rank:
            add_lora(model, self.config.lora_rank)
        return model.requires_grad_(True) if not self.config.lora_rank else model.train()

    def _initial_student(self, denoiser):
        """Algorithm 1, line 1 starts the student from the teacher; `student_init` names an earlier run's
        exported student instead (SDXL's second stage, App. D: the teacher and the fake score still
        start from the teacher; or an LCM student, folded at its guidance scale: Fig. 8)."""
        if not self.config.student_init:
            return denoiser
        folder = Path(self.config.student_init)
        try:
            student = type(denoiser).from_pretrained(str(folder), subfolder=self.DENOISER, local_files_only=True)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise UserError(f"student_init={folder}: cannot load {folder / self.DENOISER} as {type(denoiser).__name__}"
                            f" ({str(err).splitlines()[0] if str(err) else type(err).__name__}); give an exported "
                            "student folder such as <output_dir>/student-K4") from None
        student = _without_guidance_input(student, folder)
        shapes = lambda model: {k: tuple(v.shape) for k, v in model.state_dict().items()}  # noqa: E731
        if shapes(student) != shapes(denoiser):
            raise UserError(f"student_init={folder}: its {self.DENOISER} is not the teacher's architecture")
        return student

    def trainable_copy(self, device):
        """A network of the student's architecture (its weights to be loaded), e.g. to gather FSDP shards into."""
        return self._trainable(self.roles.teacher.model, device)

    def host_batch(self, rng: BatchRandom, step: int) -> dict:
        """What the CPU prepares for this process's rows of the global batch of `step` (in a data
        loader's worker when there is one): the noise and the prompts' tokens; for a method that
        learns from data, its captioned images ("images", in [-1, 1])."""
        if self.images is not None:
            captions, images = self.images(self.config.seed, step, rng.global_size)
            return {"noise": rng.randn(*self.latent_shape), "text": self._tokenize(list(captions[rng.rows])),
                    "images": images[rng.rows]}
        prompts = list(self.prompts(self.config.seed, step, rng.global_size)[rng.rows])
        return {"noise": rng.randn(*self.latent_shape), "text": self._tokenize(prompts)}

    @torch.no_grad()
    def device_data(self, host: dict) -> torch.Tensor:
        """The images of `host_batch` as the denoiser's latents x0, on the training device: the VAE
        posterior's mean (not a sample, so that an iteration's data depends on its step alone)."""
        vae = self.pipe.vae
        latents = vae.encode(host["images"].to(self.device, vae.dtype, non_blocking=True)).latent_dist.mean
        latents = latents * vae.config.scaling_factor
        if tuple(latents.shape[1:]) != tuple(self.latent_shape):
            raise UserError(f"the data's latents are {tuple(latents.shape[1:])}, the trained ones {self.latent_shape}: "
                            "train at the images' resolution (resolution=0)")
        return latents

    def device_batch(self, host: dict):
        """Noise, cond and uncond on the training device, from `host_batch`'s output."""
        with torch.no_grad():
            cond = _float(self._encode_tokens(host["text"]))
        n = len(host["noise"])
        uncond = _float({k: v.expand(n, *v.shape[1:]) for k, v in self.uncond.items()})
        return host["noise"].to(self.device, non_blocking=True), cond, uncond

    def batch(self, rng: BatchRandom, step: int):
        """Noise, cond and uncond for this process's rows of the global batch of `step`."""
        return self.device_batch(self.host_batch(rng, step))

    def export(self, student, out: Path, K: int) -> Path:
        """A pipeline folder of the teacher's class whose denoiser is the student for K steps (CFG baked in).

        Its scheduler is the method's (TDM: DPM-Solver++ with trailing spacing, K steps on b_k = kT/K - 1;
        DMD2: LCMScheduler). A student trained on explicit timesteps (DistillConfig.timesteps; DMD2's
        always) is sampled on them with `pipe(..., timesteps=[...])`, which these schedulers take (their
        config cannot hold a list): the card records the list and says so."""
        algorithm = get_method(self.config.algorithm)
        model = copy.deepcopy(student).to("cpu").float()
        lora_dir = None
        if self.config.lora_rank:
            lora_dir = out / "lora"
            self._save_lora(model, lora_dir)
            merge_lora(model)
        if getattr(model.config, "time_cond_proj_dim", None) is not None and algorithm.folds_condition:
            model = fold_step_conditioning(model, K)
        scheduler = algorithm.export_scheduler(self.pipe.scheduler.config)
        components = {**self.pipe.components, self.DENOISER: model, "scheduler": scheduler}
        settings = {k: v for k, v in self.pipe.config.items() if not k.startswith("_") and k not in components}
        type(self.pipe)(**components, **settings).save_pretrained(str(out))
        explicit = algorithm.sampling_timesteps(self.config.method, K)
        scheduler.set_timesteps(K)
        own = [int(t) for t in scheduler.timesteps]  # num_inference_steps=K alone samples on these
        if explicit:
            scheduler.set_timesteps(timesteps=explicit)
        timesteps = [int(t) for t in scheduler.timesteps]
        write_student_card(out, self.config, K, timesteps, lora_dir, self.LORA_HOW_TO_LOAD if lora_dir else None)
        if explicit:
            add_to_card(out, sampling=f"pipe(prompt, timesteps={timesteps}, guidance_scale=1) with the folder's "
                                      f"{type(scheduler).__name__}; num_inference_steps alone samples on its own "
                                      f"spacing, {own}, not this student's timesteps")
        return out


def _without_guidance_input(student, folder: Path):
    """An LCM student (a guidance-scale input through time_cond_proj_dim) as a plain UNet at the guidance
    scale its card samples with, so that TDM can start from it (Fig. 8); any other student as it is."""
    card = folder / "tdm_student.json"
    if getattr(student.config, "time_cond_proj_dim", None) is None or not card.is_file():
        return student
    card = json.loads(card.read_text())
    if card.get("method") != "LCM":
        return student
    from methods.lcm.objective import guidance_embedding

    w = torch.tensor([float(card["guidance_scale"]) - 1])  # pipelines embed guidance_scale - 1
    return fold_condition(student, guidance_embedding(w, student.config.time_cond_proj_dim))


def _float(cond: dict) -> dict:
    """Floating tensors in float32 (accelerate's autocast picks the compute dtype); masks as they are."""
    return {k: v.float() if v.is_floating_point() else v for k, v in cond.items()}


def add_lora(model, rank: int) -> None:
    """LoRA of rank r on the attention projections (peft, in place); only adapters train, and the
    step-condition projection when there is one."""
    from peft import LoraConfig, inject_adapter_in_model

    model.requires_grad_(False)
    inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                                       target_modules=LORA_TARGETS), model)
    cond_proj = getattr(getattr(model, "time_embedding", None), "cond_proj", None)
    if cond_proj is not None:
        cond_proj.requires_grad_(True)


def merge_lora(model) -> None:
    """Fold every LoRA adapter into its base layer and put the base layer back (in place)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, BaseTunerLayer):
            module.merge()
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, module.get_base_layer())
    model.__dict__.pop("peft_config", None)


def add_to_card(out: Path, **fields) -> None:
    """Fields added to an exported student's tdm_student.json."""
    path = out / "tdm_student.json"
    card = json.loads(path.read_text())
    card.update(fields)
    path.write_text(json.dumps(card, indent=2, default=list))


def write_student_card(out: Path, config: TrainConfig, K: int, timesteps, lora_dir, lora_how_to_load=None) -> None:
    from dataclasses import asdict

    algorithm = get_method(config.algorithm)
    guidance = algorithm.sampling_guidance(config.method)
    note = ("CFG is distilled into the student: sample with guidance_scale=1" if guidance == 1.0 else
            f"the student takes the guidance scale as an input (time_cond_proj_dim), not by CFG: sample with "
            f"guidance_scale={guidance:g}")
    card = {"method": algorithm.title, "steps": K, "timesteps": timesteps, "guidance_scale": guidance, "note": note,
            "lora": None if lora_dir is None else str(lora_dir.name), "config": asdict(config)}
    if lora_how_to_load:
        card["lora_how_to_load"] = lora_how_to_load
    out.mkdir(parents=True, exist_ok=True)
    (out / "tdm_student.json").write_text(json.dumps(card, indent=2, default=list))


def image_source(config: TrainConfig):
    """images(seed, step, n) -> (n captions, n images in [-1, 1]) of the global batch of `step`: a
    world's captioned training images (a pure function)."""
    if not provides(config.prompts, "training_images"):
        raise UserError(f"{get_method(config.algorithm).title} learns from captioned images: prompts= must name a "
                        f"world that provides them (tiny-sd15), got prompts={config.prompts!r}")
    images = world(config.prompts).training_images
    return lambda seed, step, n: images(seed * 1_000_003 + step, n)


def prompt_source(config: TrainConfig):
    """prompts(seed, step, n) -> the n prompts of the global batch of `step` (a pure function)."""
    import numpy as np

    if provides(config.prompts, "training_prompts"):  # a world's captions: "tiny-sd15", "tiny-cogvideox"
        captions = world(config.prompts).training_prompts
        return lambda seed, step, n: np.array(captions(seed * 1_000_003 + step, n), dtype=object)
    path = Path(config.prompts)
    if not config.prompts or not path.is_file():
        raise UserError(f"prompts={config.prompts!r}: expected 'tiny-sd15', 'tiny-cogvideox' or a text file with "
                        "one prompt per line")
    lines = np.array([line.strip() for line in path.read_text().splitlines() if line.strip()], dtype=object)
    if not len(lines):
        raise UserError(f"prompt file {path} holds no prompts")

    def prompts(seed, step, n):
        rng = np.random.default_rng([seed, step])
        return lines[rng.integers(0, len(lines), n)]
    return prompts
