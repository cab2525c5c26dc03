"""TDM's configuration: one frozen dataclass, the single source of defaults.

Defaults follow the paper (Sec. 3, Appendix D for SD-1.5); each official-script choice that
differs is a value of some field, so the two can be compared.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class TDMConfig:
    steps: tuple[int, ...] = (4,)        # K; several values = TDM-unify, K drawn uniformly (Eq. 8)
    solver: str = "ddim"                 # student's ODE solver in training: "ddim" | "dpmpp" (Table 6)
    interval: str = "paper"              # "paper": tau in [b_i, b_{i+1}) (Eq. 5) | "wide": tau in [b_i, T) (the
                                         # script's default) | "script": the script with --use_separate (its README's
                                         # command): x_i taken at t_mid = b_i + 1, tau in [max(20, t_mid), b_{i+1} - 10)
    loss: str = "pseudo_huber"           # "pseudo_huber" (Eq. 11) | "kl" (Eq. 6 + DMD normaliser) |
                                         # "pseudo_huber_script" (elementwise c=1e-3 / normaliser) | "fisher" (Table 8)
    importance_weights: str = "per_dim_mean"  # "per_dim_mean": the script's tempered weights, of order one at
                                         # image dimensions | "exact": Sec. 3.1's density ratio, unbiased but
                                         # degenerate beyond a few dimensions (objective.log_importance_weight)
                                         # | "none" (Table 5 ablation)
    fisher_alpha: float = 1.0            # Table 8's Fisher loss: weight of -||f_phi - f_psi||^2. The paper gives
                                         # none; SiD's 1.2 diverged on gmm (results/sweeps/fisher-alpha)
    match: str = "noisy"                 # "noisy": match x_{t_i} (TDM) | "clean": match x0_hat (Table 7)
    loss_space: str = "x_i"              # what the generator's loss is taken on: "x_i", the trajectory sample (Eq. 6,
                                         # 11) | "x0_hat", its clean prediction (script; diffusion still from x_i)
    generator_segment: str = "shared"    # "shared": the generator update trains the segment m the fake score just
                                         # learnt from (Alg. 1) | "fresh": it draws its own m and tau (script)
    fake_snr_cap: float = 0.0            # omega_tau of Eq. 7: 0: 1 for every tau | c > 0: min(SNR_tau, c) (script: 5)
    guidance: float = 3.5                # teacher CFG scale (App. D: 3.5 for SD-1.5 and PixArt, 8 for SDXL)
    lr_student: float = 2e-6             # App. D, SD-1.5
    lr_fake: float = 2e-5                # App. D, SD-1.5
    adam_betas: tuple[float, float] = (0.0, 0.999)  # App. D: beta1 = 0
    grad_clip: float = 1.0               # the student's gradient-norm clip (App. D); 0: none
    grad_clip_fake: float = 1.0          # the fake score's (App. D: both networks); 0: none (script)
    weight_decay: float = 0.0            # AdamW's decoupled weight decay, both networks (App. D names none; script 1e-2)
    lr_schedule: str = "constant"        # the student's learning rate: "constant" | "cosine_with_restarts" (script;
                                         # diffusers' get_scheduler, one cycle); the fake score's stays constant
    lr_warmup: int = 0                   # the student's linear warm-up from 0, in iterations (script: 50)
    lr_horizon: int = 0                  # iterations the schedule spans; 0: the run's (script: its max_train_steps, 10001)
    fake_updates: int = 1                # fake-score steps per generator step (Alg. 1: 1; DMD2 uses 5)
    batch_size: int = 256                # App. D, SD-1.5
    num_train_timesteps: int = 1000      # T
    step_conditioning: bool = True       # inject K into student and fake score (Eq. 8); False: Table 5 ablation
    segments: str = "iid"                # how rows get their segment m (Alg. 1 line 4): "iid": uniform per row |
                                         # "stratified": every K consecutive rows of the batch take the K segments
                                         # in a random order (uniform per row, each segment 1/K of the batch: the
                                         # roll-out then needs 1.5 student calls per row at K = 4 in fixed shapes)
    timesteps: tuple[int, ...] = ()      # the student's K timesteps, noise first, strictly decreasing in [1, T - 1]
                                         # (one K only, not TDM-unify); (): b_k = kT/K - 1, e.g. 999, 749, 499, 249.
                                         # The segments' bounds and tau intervals follow them (objective.interval_bounds)

    def __post_init__(self):
        _check_choice("solver", self.solver, SOLVERS)
        _check_choice("interval", self.interval, INTERVALS)
        _check_choice("loss", self.loss, LOSSES)
        _check_choice("importance_weights", self.importance_weights, IMPORTANCE_WEIGHTS)
        _check_choice("match", self.match, MATCHES)
        _check_choice("loss_space", self.loss_space, LOSS_SPACES)
        _check_choice("generator_segment", self.generator_segment, GENERATOR_SEGMENTS)
        _check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _check_choice("segments", self.segments, SEGMENT_DRAWS)
        bad = [K for K in self.steps if K not in ALLOWED_STEPS]
        if not self.steps or bad:
            raise ValueError(f"steps must be a non-empty list drawn from {list(ALLOWED_STEPS)}, got {list(self.steps)}")
        if self.fake_updates < 1:
            raise ValueError(f"fake_updates must be at least 1, got {self.fake_updates}")
        for name in ("lr_student", "lr_fake"):
            _check_positive(name, getattr(self, name))
        for name in ("grad_clip", "grad_clip_fake", "weight_decay", "fake_snr_cap"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be 0 or more, got {value}")
        for name in ("lr_warmup", "lr_horizon"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more, got {getattr(self, name)}")
        if self.loss == "fisher" and self.loss_space != "x_i":
            raise ValueError("loss='fisher' takes its gradient through x_tau; it has no loss_space other than 'x_i'")
        if self.interval == "script" and self.solver != "ddim":
            raise ValueError("interval='script' re-noises x0_hat to t_mid with DDIM, as the script does; "
                             "use solver='ddim'")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.segments == "stratified" and any(self.batch_size % K for K in self.steps):
            raise ValueError(f"segments='stratified' gives each of the K segments batch_size / K rows: "
                             f"batch_size={self.batch_size} must be a multiple of every K in steps={list(self.steps)}")
        if not (self.guidance >= 0 and math.isfinite(self.guidance)):
            raise ValueError(f"guidance must be 0 or more (1: no guidance), got {self.guidance}")
        if not (self.fisher_alpha >= 0 and math.isfinite(self.fisher_alpha)):
            raise ValueError(f"fisher_alpha must be 0 or more, got {self.fisher_alpha}")
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            raise ValueError(f"adam_betas must be two numbers in [0, 1), got {list(self.adam_betas)}")
        if self.num_train_timesteps < 8 * max(self.steps):
            raise ValueError(f"num_train_timesteps must be at least 8 K = {8 * max(self.steps)}, "
                             f"got {self.num_train_timesteps}")
        if self.timesteps:
            self._check_timesteps()

    def _check_timesteps(self) -> None:
        """Explicit student timesteps: one list for the one K, usable by the chosen intervals."""
        from . import objective

        if not isinstance(self.timesteps, tuple):  # a list from Python code: stored as the field's tuple
            object.__setattr__(self, "timesteps", tuple(self.timesteps))
        if self.unify:
            raise ValueError(f"timesteps={list(self.timesteps)} fixes the timesteps of one step count, but "
                             f"steps={list(self.steps)} trains several (TDM-unify): set one K or timesteps=()")
        T = self.num_train_timesteps
        objective.check_student_timesteps(self.timesteps, self.steps[0], T)
        empty = objective.empty_tau_ranges(self.interval, objective.interval_bounds(self.steps[0], T, self.timesteps), T)
        if empty:
            m, lo, hi = empty[0]
            raise ValueError(f"timesteps={list(self.timesteps)} leave segment {m}'s tau range [{lo}, {hi}) empty under "
                             f"interval={self.interval!r}, which draws tau in [max(20, b_m + 1), b_(m+1) - 10): "
                             "space them further apart or use interval='paper'")

    @property
    def unify(self) -> bool:
        """TDM-unify: several step counts, drawn uniformly per iteration (Eq. 8)."""
        return len(self.steps) > 1


SOLVERS = ("ddim", "dpmpp")
INTERVALS = ("paper", "wide", "script")
LOSSES = ("pseudo_huber", "kl", "pseudo_huber_script", "fisher")
IMPORTANCE_WEIGHTS = ("exact", "per_dim_mean", "none")
MATCHES = ("noisy", "clean")
LOSS_SPACES = ("x_i", "x0_hat")
GENERATOR_SEGMENTS = ("shared", "fresh")
LR_SCHEDULES = ("constant", "cosine_with_restarts")
SEGMENT_DRAWS = ("iid", "stratified")
ALLOWED_STEPS = (1, 2, 3, 4, 5, 6, 8)  # K must divide the schedule into intervals of >= 125 timesteps


def _check_positive(name: str, value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive number, got {value}")


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


BACKBONES = ("sd15", "sdxl", "pixart", "cogvideox", "gmm")
EXECUTIONS = ("eager", "cuda_graph")
ROLLOUTS = ("auto", "every_row")
COMPILE_SCOPES = ("networks", "blocks")
MIXED_PRECISION = ("auto", "no", "fp16", "bf16")


@dataclass(frozen=True)
class TrainConfig:
    """A training run: what to distil, from what, for how long, and where to write. `method`
    holds TDM's own settings; `key=value` overrides on the command line reach either level."""

    backbone: str = "sd15"               # "sd15" | "sdxl" | "pixart" | "cogvideox" (diffusers pipelines) | "gmm"
    teacher: str = ""                    # pipeline folder or Hugging Face cache id; "tiny-sd15": the shipped world
    prompts: str = ""                    # "tiny-sd15": the world's training captions | a text file, one per line
    student_init: str = ""               # "": the student starts from the teacher (Alg. 1); an exported student
                                         # folder (<output_dir>/student-K4) to continue from (SDXL's stage 2)
    resolution: int = 0                  # pixels; 0: the teacher's native size
    iterations: int = 3000               # App. D: 3k for 4-step SD-1.5, 20k for TDM-unify, 500 for PixArt
    seed: int = 0
    lora_rank: int = 0                   # 0: train all weights; r > 0: LoRA (peft) of rank r on attention
    mixed_precision: str = "auto"        # "auto": bf16 on GPU, fp32 on CPU
    checkpoint_every: int = 500          # 0: never (a benchmark run; no resume)
    keep_checkpoints: int = 2
    log_every: int = 10
    tracker: str = "tensorboard"         # "tensorboard" | "none"
    output_dir: str = ""                 # "": runs/<preset>
    export: bool = True                  # write the student as pipeline folders at the end
    # How iterations execute (see train.py); none of these changes what is computed.
    execution: str = "eager"             # "eager" | "cuda_graph": whole iterations captured (one CUDA
                                         # process; eager elsewhere)
    rollout: str = "auto"                # "auto": roll out only the rows that need each step: in fixed shapes
                                         # with segments="stratified" (every execution), else in varying shapes
                                         # (eager single-process runs only); "every_row": every row, fixed shapes
    compile: bool = False                # torch.compile the three networks (inductor's default mode)
    compile_scope: str = "networks"      # "networks": each whole network; "blocks": only the repeated blocks
                                         # (resnets, transformer blocks), compiled once for all three networks
    grad_accumulation: int = 1           # micro-batches per update: the same update in less memory
    gradient_checkpointing: bool = False # recompute the trained networks' activations in backward
    channels_last: bool = False          # UNets in channels-last memory layout (faster bf16 convolutions)
    cudnn_benchmark: bool = False        # let cuDNN time its convolution algorithms once per shape and keep the
                                         # fastest (pays with fixed shapes: compiled, graphed or stratified runs)
    data_workers: int = -1               # processes making inputs ahead of the GPU; -1: 4 on CUDA, 0 on CPU
    method: TDMConfig = TDMConfig()

    def __post_init__(self):
        _check_choice("backbone", self.backbone, BACKBONES)
        _check_choice("mixed_precision", self.mixed_precision, MIXED_PRECISION)
        _check_choice("tracker", self.tracker, ("tensorboard", "none"))
        _check_choice("execution", self.execution, EXECUTIONS)
        _check_choice("rollout", self.rollout, ROLLOUTS)
        _check_choice("compile_scope", self.compile_scope, COMPILE_SCOPES)
        if self.grad_accumulation < 1 or self.method.batch_size % self.grad_accumulation:
            raise ValueError(f"grad_accumulation must be a positive divisor of batch_size={self.method.batch_size}, "
                             f"got {self.grad_accumulation}")
        if self.data_workers < -1:
            raise ValueError(f"data_workers must be -1 (automatic), 0 or positive, got {self.data_workers}")
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be 0 (never) or positive, got {self.checkpoint_every}")
        for name in ("iterations", "keep_checkpoints", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("resolution", "seed"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more, got {getattr(self, name)}")
        if self.lora_rank < 0:
            raise ValueError(f"lora_rank must be 0 (full training) or positive, got {self.lora_rank}")
        if self.method.timesteps and self.backbone == "gmm":
            raise ValueError(f"timesteps={list(self.method.timesteps)}: backbone=gmm's students are sampled on "
                             "b_k = kT/K - 1 (harness/worlds/gmm/evaluate.py), not on a list; set timesteps=()")
