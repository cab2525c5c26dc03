"""One sampler for every recipe: the stock diffusers pipeline, the recipe's weights attached,
its scheduler swapped in, one generator per seed.

    sampler = DiffusersSampler(get_recipe("dmd2-sdxl-4step"), device="cuda", weights_root=Path("weights"))
    images = sampler.sample(["a red cube"], seeds=[0])     # uint8 (1, 1024, 1024, 3)

What a recipe does to the pipeline, in order: load the base (or assemble it from its component
folders), attach each `Weights` (replace the UNet/transformer from a state dict or model folder,
add delta weights, load a LoRA and fuse it at its scale), set the scheduler from the base's
scheduler config with the recipe's overrides, then call the pipeline with the recipe's steps or
timesteps, guidance, eta and negative prompt. `describe()` records the recipe, the resolved
timesteps, the network evaluations per sample, the full scheduler config and the sha256 of
every attached file.
"""
from __future__ import annotations

import copy
import inspect
from pathlib import Path

import numpy as np
import torch

from methods.common.errors import UserError, did_you_mean
from methods.common.provenance import file_sha256

from . import weights as weight_files
from .recipe import SamplerRecipe, Weights

PIPELINE_CLASSES = {"sd15": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline",
                    "pixart": "PixArtAlphaPipeline", "cogvideox": "CogVideoXPipeline",
                    "sd3": "StableDiffusion3Pipeline"}
DENOISER = {"sd15": "unet", "sdxl": "unet", "pixart": "transformer", "cogvideox": "transformer", "sd3": "transformer"}
VIDEO = ("cogvideox",)


def scheduler_class(name: str):
    """A diffusers scheduler class by name, or one of the project's (baselines/schedulers.py)."""
    import diffusers

    cls = getattr(diffusers, name, None) if name.endswith("Scheduler") else None
    if cls is not None:
        return cls
    from . import cogvideox_scheduler, schedulers

    project = [schedulers, cogvideox_scheduler]
    for module in project:
        cls = getattr(module, name, None)
        if isinstance(cls, type) and hasattr(cls, "from_config"):
            return cls
    known = [n for n in dir(diffusers) if n.endswith("Scheduler")]
    known += [n for module in project for n in dir(module) if n.endswith("Scheduler")]
    raise UserError(f"unknown scheduler {name!r}{did_you_mean(name, known)}")



def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    return torch.load(str(path), map_location="cpu", weights_only=True)


class DiffusersSampler:
    def __init__(self, recipe: SamplerRecipe, device: str = "cpu", weights_root: str | Path | None = None,
                 batch_size: int = 16):
        self.recipe = self.spec = recipe
        self.device = torch.device(device)
        self.root = Path(weights_root) if weights_root is not None else None
        self.batch_size = batch_size
        weight_files.require(recipe, self.root)  # one line naming every missing file, before any heavy load
        self.dtype = getattr(torch, recipe.dtype) if self.device.type == "cuda" else torch.float32
        self.attached: list[dict] = []
        self.pipe = self._load_base()
        for w in recipe.weights:
            self._attach(w)
        self.pipe.scheduler = scheduler_class(recipe.scheduler).from_config(
            self.pipe.scheduler.config, **dict(recipe.scheduler_config))
        self._check_guidance()
        self.pipe.to(self.device)
        self.pipe.set_progress_bar_config(disable=True)
        self.denoiser = getattr(self.pipe, DENOISER[recipe.pipeline])
        self._rows = 0
        self.denoiser.register_forward_pre_hook(self._count, with_kwargs=True)
        self.last_nfe: float | None = None

    # -- building the pipeline -------------------------------------------------------------
    def _load_base(self):
        import diffusers

        folder = weight_files.locate(self.recipe.base, None, self.root)
        cls = getattr(diffusers, PIPELINE_CLASSES[self.recipe.pipeline])
        try:
            if self.recipe.assemble:
                return self._assemble(cls, folder)
            extra = ({"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
                     if self.recipe.pipeline == "sd15" else {})
            return cls.from_pretrained(str(folder), dtype=self.dtype, local_files_only=True,
                                       variant=self.recipe.base_variant, **extra)
        except (OSError, ValueError, KeyError) as err:
            raise UserError(f"{self.recipe.name}: cannot load the base pipeline {folder}: {err}") from None

    def _assemble(self, cls, folder: Path):
        """A Stable Diffusion pipeline from component folders, for repositories whose model_index.json
        names a pipeline class diffusers lacks (InstaFlow's RectifiedFlowPipeline)."""
        from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        scheduler_folder = folder / "scheduler"
        scheduler = (DDIMScheduler.from_pretrained(str(folder), subfolder="scheduler")
                     if scheduler_folder.is_dir() else DDIMScheduler())
        return cls(unet=UNet2DConditionModel.from_pretrained(str(folder), subfolder="unet", dtype=self.dtype),
                   vae=AutoencoderKL.from_pretrained(str(folder), subfolder="vae", dtype=self.dtype),
                   text_encoder=CLIPTextModel.from_pretrained(str(folder), subfolder="text_encoder",
                                                              dtype=self.dtype),
                   tokenizer=CLIPTokenizer.from_pretrained(str(folder), subfolder="tokenizer"),
                   scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False)

    def _attach(self, w: Weights) -> None:
        path = weight_files.locate(w.repo, weight_files.weights_path(w), self.root)
        record = {"attach": w.attach, "repo": w.repo, "path_in_repo": w.path_in_repo, "local_path": str(path)}
        if path.is_file():
            record["sha256"] = file_sha256(path)
        else:  # a model folder: every weight file in it
            record["sha256"] = {str(f.relative_to(path)): file_sha256(f) for f in sorted(path.rglob("*"))
                                if f.suffix in (".safetensors", ".bin", ".pt")}
        if w.attach == "lora":
            self._attach_lora(w, path)
        else:
            component = "unet" if w.attach in ("unet", "delta") and hasattr(self.pipe, "unet") else "transformer"
            if w.attach == "unet" and not hasattr(self.pipe, "unet"):
                raise UserError(f"{self.recipe.name}: a UNet state dict for a {self.recipe.pipeline} pipeline")
            model = getattr(self.pipe, component)
            if w.attach == "delta":
                self._add_delta(model, w, path)
            else:
                setattr(self.pipe, component, self._replacement(model, w, path))
        self.attached.append(record)

    def _model_state(self, model, w: Weights, path: Path) -> dict[str, torch.Tensor]:
        if path.is_file():
            return _read_state_dict(path)
        return type(model).from_pretrained(str(path), variant=w.variant, dtype=torch.float32).state_dict()

    def _replacement(self, model, w: Weights, path: Path):
        """The component rebuilt from the base's config with the checkpoint's weights (strict: a key
        mismatch means the checkpoint is for another architecture)."""
        state = self._model_state(model, w, path)
        fresh = type(model).from_config(model.config)
        try:
            fresh.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise UserError(f"{self.recipe.name}: {path} does not fit the base's {type(model).__name__}: "
                            f"{str(err).splitlines()[0]}") from None
        return fresh.to(self.dtype).eval()

    def _add_delta(self, model, w: Weights, path: Path) -> None:
        """W = W_base + delta W, key by key (PeRFlow's delta weights)."""
        delta = self._model_state(model, w, path)
        base = model.state_dict()
        if set(delta) != set(base):
            extra, lost = sorted(set(delta) - set(base))[:3], sorted(set(base) - set(delta))[:3]
            raise UserError(f"{self.recipe.name}: delta weights {path} do not match the base's keys "
                            f"(unexpected {extra}, missing {lost})")
        model.load_state_dict({k: (base[k].float() + delta[k].float()).to(base[k].dtype) for k in base})

    def _attach_lora(self, w: Weights, path: Path) -> None:
        folder, weight_name = (path.parent, path.name) if path.is_file() else (path, None)
        adapter = f"lora{len(self.attached)}"
        try:
            self.pipe.load_lora_weights(str(folder), weight_name=weight_name, adapter_name=adapter)
        except (ValueError, KeyError, RuntimeError) as err:
            raise UserError(f"{self.recipe.name}: cannot load the LoRA {path}: {err}") from None
        if w.fuse:
            self.pipe.fuse_lora(lora_scale=w.scale, adapter_names=[adapter])
            self.pipe.unload_lora_weights()  # keeps the fused weights, drops the adapter layers
        else:
            self.pipe.set_adapters([adapter], adapter_weights=[w.scale])

    def _check_guidance(self) -> None:
        """Embedded guidance needs a UNet with a guidance embedding; real CFG must not have one
        (the stock pipeline would silently embed w instead of running two branches)."""
        denoiser = getattr(self.pipe, DENOISER[self.recipe.pipeline])
        embedded = getattr(denoiser.config, "time_cond_proj_dim", None) is not None
        mode = self.recipe.guidance_mode
        if mode == "embedded" and not embedded:
            raise UserError(f"{self.recipe.name}: guidance_mode 'embedded' but the base's UNet has no time_cond_proj_dim")
        if mode == "cfg" and embedded:
            raise UserError(f"{self.recipe.name}: guidance_mode 'cfg' but the UNet embeds guidance (time_cond_proj_dim)")

    # -- sampling ---------------------------------------------------------------------------
    def _count(self, module, args, kwargs):
        sample = args[0] if args else kwargs.get("sample", kwargs.get("hidden_states"))
        self._rows += sample.shape[0]

    def _call_kwargs(self) -> dict:
        r = self.recipe
        kwargs = {"guidance_scale": r.guidance, "height": r.height, "width": r.width}
        kwargs.update({"timesteps": list(r.timesteps)} if r.timesteps is not None else {"num_inference_steps": r.steps})
        accepted = inspect.signature(self.pipe.__call__).parameters
        if r.eta is not None:
            if "eta" not in accepted or "eta" not in inspect.signature(self.pipe.scheduler.step).parameters:
                raise UserError(f"{r.name}: eta {r.eta} given but {r.scheduler} or the pipeline takes no eta")
            kwargs["eta"] = r.eta
        if r.frames is not None:
            kwargs["num_frames"] = r.frames
        if "use_resolution_binning" in accepted:  # the recipe's size exactly, not the nearest aspect bin
            kwargs["use_resolution_binning"] = False
        return kwargs

    @torch.no_grad()
    def sample(self, prompts: list[str], seeds: list[int]) -> np.ndarray:
        """uint8 images (n, H, W, 3), or frames (n, F, H, W, 3) for a video pipeline."""
        if len(prompts) != len(seeds):
            raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
        kwargs, out, rows = self._call_kwargs(), [], 0
        for start in range(0, len(prompts), self.batch_size):
            batch = prompts[start:start + self.batch_size]
            generators = [torch.Generator("cpu").manual_seed(s) for s in seeds[start:start + self.batch_size]]
            if self.recipe.negative_prompt is not None:
                kwargs["negative_prompt"] = [self.recipe.negative_prompt] * len(batch)
            self._rows = 0
            result = self.pipe(prompt=batch, generator=generators, output_type="np", **kwargs)
            rows += self._rows
            images = result.frames if self.recipe.pipeline in VIDEO else result.images
            out.append((np.clip(np.asarray(images, dtype=np.float32), 0, 1) * 255).round().astype(np.uint8))
        self.last_nfe = rows / len(prompts)
        return np.concatenate(out)

    def resolved_timesteps(self) -> list[float]:
        scheduler = copy.deepcopy(self.pipe.scheduler)
        if self.recipe.timesteps is not None:
            scheduler.set_timesteps(timesteps=list(self.recipe.timesteps))
        else:
            scheduler.set_timesteps(self.recipe.steps)
        return [round(float(t), 4) for t in scheduler.timesteps]

    def describe(self) -> dict:
        import diffusers

        return {**self.recipe.describe(), "resolved_timesteps": self.resolved_timesteps(),
                "scheduler_class": type(self.pipe.scheduler).__name__,
                "scheduler_full_config": {k: (list(v) if isinstance(v, tuple) else v)
                                          for k, v in dict(self.pipe.scheduler.config).items()},
                "base_path": str(weight_files.locate(self.recipe.base, None, self.root)),
                "attached": self.attached, "dtype": str(self.dtype).replace("torch.", ""),
                "diffusers": diffusers.__version__}
