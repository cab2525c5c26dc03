"""A sampler recipe: one frozen record that fixes what a published few-step model outputs.

Every Table 1-2 baseline is a base pipeline plus attached weights (a whole pipeline, a UNet or
transformer state dict, a LoRA with its scale, or delta weights), sampled by one scheduler
with its config overrides, a step count or explicit timesteps, a guidance scale and mode, and
sometimes eta or a negative prompt. `baselines/recipes.py` holds one recipe per published
checkpoint; `baselines/diffusers_sampler.py` runs any of them through the stock pipeline.

Weights are named by their Hugging Face repository and file, and found on disk only
(`baselines/weights.py`): under a weights folder laid out as `<root>/<owner>/<name>/<file>`,
or in the Hugging Face cache.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from methods.common.errors import UserError

PIPELINES = ("sd15", "sdxl", "pixart", "cogvideox", "sd3")
ATTACH = ("pipeline", "unet", "transformer", "lora", "delta")
GUIDANCE_MODES = ("cfg", "embedded", "none")


@dataclass(frozen=True)
class Weights:
    """One file (or diffusers model folder) attached to the base pipeline."""
    attach: str                  # "unet" | "transformer" (state dict or model folder), "lora", "delta"
    repo: str                    # Hugging Face repository id, e.g. "tianweiy/DMD2"
    file: str | None = None      # file in the repository; None: a diffusers model folder (config.json + weights)
    subfolder: str | None = None
    variant: str | None = None   # diffusers weight variant of a model folder, e.g. PeRFlow's "v0-1"
    scale: float = 1.0           # LoRA scale
    fuse: bool = True            # fuse the LoRA into the weights (as the model cards do) or keep it as an adapter

    def __post_init__(self):
        if self.attach not in ATTACH[1:]:
            raise ValueError(f"Weights.attach must be one of {ATTACH[1:]}, got {self.attach!r}")

    @property
    def path_in_repo(self) -> str:
        parts = [p for p in (self.subfolder, self.file) if p]
        return "/".join(parts) if parts else "(the repository's diffusers model folder)"


@dataclass(frozen=True)
class SamplerRecipe:
    name: str                    # registry key, e.g. "dmd2-sdxl-4step"
    method: str                  # the paper's row label, e.g. "DMD2"
    pipeline: str                # which stock pipeline runs it: see PIPELINES
    base: str                    # Hugging Face id of the base pipeline (or a project-trained export, "project/<name>")
    base_variant: str | None = None  # diffusers weight variant of the base's files, e.g. PeRFlow-SDXL's "v0-fix"
    weights: tuple[Weights, ...] = ()
    scheduler: str = "DPMSolverMultistepScheduler"      # diffusers class, or one in baselines/schedulers.py
    scheduler_config: tuple[tuple[str, object], ...] = ()  # from_config overrides on the base's scheduler config
    steps: int = 4
    timesteps: tuple[int, ...] | None = None            # explicit timesteps, passed as the pipeline's `timesteps=`
    guidance: float = 1.0
    guidance_mode: str = "none"  # "cfg": two evaluations per step; "embedded": w enters through time_cond_proj_dim; "none"
    eta: float | None = None     # passed to the scheduler's step whenever it takes eta (TCD gamma, DDIM eta)
    negative_prompt: str | None = None
    height: int = 512
    width: int = 512
    frames: int | None = None    # video pipelines: frames per sample
    dtype: str = "float16"       # on a GPU; a CPU samples in float32
    assemble: bool = False       # build the pipeline from its component folders (model_index names a class diffusers lacks)
    source: str = ""             # model card, README or script the recipe is read from
    notes: str = ""              # facts not confirmed from a model card or the release's code, deviations

    def __post_init__(self):
        if self.pipeline not in PIPELINES:
            raise ValueError(f"{self.name}: pipeline must be one of {PIPELINES}, got {self.pipeline!r}")
        if self.guidance_mode not in GUIDANCE_MODES:
            raise ValueError(f"{self.name}: guidance_mode must be one of {GUIDANCE_MODES}, got {self.guidance_mode!r}")
        if self.guidance_mode == "cfg" and self.guidance <= 1:
            raise ValueError(f"{self.name}: guidance_mode 'cfg' needs guidance > 1, got {self.guidance}")
        if self.guidance_mode != "cfg" and self.guidance_mode != "embedded" and self.guidance > 1:
            raise ValueError(f"{self.name}: guidance {self.guidance} > 1 would switch on CFG; set guidance_mode='cfg'")
        if self.timesteps is not None and len(self.timesteps) != self.steps:
            raise ValueError(f"{self.name}: {len(self.timesteps)} timesteps for {self.steps} steps")
        if self.steps < 1:
            raise ValueError(f"{self.name}: steps must be at least 1")

    @property
    def nfe(self) -> int:
        """Network evaluations per sample: one per step, two with real classifier-free guidance."""
        return self.steps * (2 if self.guidance_mode == "cfg" else 1)

    @property
    def is_project_trained(self) -> bool:
        return self.base.startswith("project/")

    def on_base(self, base: str, label: str | None = None) -> "SamplerRecipe":
        """The same recipe on another base pipeline (Table 2: the LoRAs on Realistic Vision, Dreamshaper)."""
        return replace(self, name=f"{self.name}@{label or base}", base=base)

    def with_steps(self, steps: int) -> "SamplerRecipe":
        if self.timesteps is not None:
            raise UserError(f"{self.name} fixes its timesteps {list(self.timesteps)}; it samples {self.steps} steps only")
        return replace(self, steps=steps)

    def describe(self) -> dict:
        out = asdict(self)
        out["scheduler_config"] = dict(self.scheduler_config)
        out["timesteps"] = list(self.timesteps) if self.timesteps is not None else None
        out["weights"] = [asdict(w) for w in self.weights]
        out["nfe"] = self.nfe
        return out
