"""TDM's configuration: one frozen dataclass, the single source of defaults.

Defaults follow the paper (Sec. 3, Appendix D for SD-1.5); each official-script choice that
differs is a value of some field, so the two can be compared.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from methods.common.config import ALLOWED_STEPS, LR_SCHEDULES, DistillConfig, check_choice  # noqa: F401 (re-exported)


@dataclass(frozen=True)
class TDMConfig(DistillConfig):
    """TDM's own settings beside those every method shares (methods/common/config.py: steps, guidance,
    learning rates, AdamW, clipping, schedule, batch, T, step conditioning, timesteps)."""

    name: ClassVar[str] = "tdm"          # the method (methods/common/method.py) this config belongs to
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
    fake_updates: int = 1                # fake-score steps per generator step (Alg. 1: 1; DMD2 uses 5)
    segments: str = "iid"                # how rows get their segment m (Alg. 1 line 4): "iid": uniform per row |
                                         # "stratified": every K consecutive rows of the batch take the K segments
                                         # in a random order (uniform per row, each segment 1/K of the batch: the
                                         # roll-out then needs 1.5 student calls per row at K = 4 in fixed shapes)

    def __post_init__(self):
        super().__post_init__()
        check_choice("solver", self.solver, SOLVERS)
        check_choice("interval", self.interval, INTERVALS)
        check_choice("loss", self.loss, LOSSES)
        check_choice("importance_weights", self.importance_weights, IMPORTANCE_WEIGHTS)
        check_choice("match", self.match, MATCHES)
        check_choice("loss_space", self.loss_space, LOSS_SPACES)
        check_choice("generator_segment", self.generator_segment, GENERATOR_SEGMENTS)
        check_choice("segments", self.segments, SEGMENT_DRAWS)
        if self.fake_updates < 1:
            raise ValueError(f"fake_updates must be at least 1, got {self.fake_updates}")
        if not (self.fake_snr_cap >= 0 and math.isfinite(self.fake_snr_cap)):
            raise ValueError(f"fake_snr_cap must be 0 or more, got {self.fake_snr_cap}")
        if self.loss == "fisher" and self.loss_space != "x_i":
            raise ValueError("loss='fisher' takes its gradient through x_tau; it has no loss_space other than 'x_i'")
        if self.interval == "script" and self.solver != "ddim":
            raise ValueError("interval='script' re-noises x0_hat to t_mid with DDIM, as the script does; "
                             "use solver='ddim'")
        if self.segments == "stratified" and any(self.batch_size % K for K in self.steps):
            raise ValueError(f"segments='stratified' gives each of the K segments batch_size / K rows: "
                             f"batch_size={self.batch_size} must be a multiple of every K in steps={list(self.steps)}")
        if not (self.fisher_alpha >= 0 and math.isfinite(self.fisher_alpha)):
            raise ValueError(f"fisher_alpha must be 0 or more, got {self.fisher_alpha}")
        if self.timesteps:
            self._check_intervals()

    def _check_timesteps(self) -> None:
        from . import objective

        super()._check_timesteps()
        objective.check_student_timesteps(self.timesteps, self.steps[0], self.num_train_timesteps)

    def _check_intervals(self) -> None:
        """Explicit student timesteps that leave every segment's tau interval non-empty."""
        from . import objective

        T = self.num_train_timesteps
        empty = objective.empty_tau_ranges(self.interval, objective.interval_bounds(self.steps[0], T, self.timesteps), T)
        if empty:
            m, lo, hi = empty[0]
            raise ValueError(f"timesteps={list(self.timesteps)} leave segment {m}'s tau range [{lo}, {hi}) empty under "
                             f"interval={self.interval!r}, which draws tau in [max(20, b_m + 1), b_(m+1) - 10): "
                             "space them further apart or use interval='paper'")


SOLVERS = ("ddim", "dpmpp")
INTERVALS = ("paper", "wide", "script")
LOSSES = ("pseudo_huber", "kl", "pseudo_huber_script", "fisher")
IMPORTANCE_WEIGHTS = ("exact", "per_dim_mean", "none")
MATCHES = ("noisy", "clean")
LOSS_SPACES = ("x_i", "x0_hat")
GENERATOR_SEGMENTS = ("shared", "fresh")
SEGMENT_DRAWS = ("iid", "stratified")
BACKBONES = ("sd15", "sdxl", "pixart", "cogvideox", "gmm")
EXECUTIONS = ("eager", "cuda_graph")
ROLLOUTS = ("auto", "every_row")
COMPILE_SCOPES = ("networks", "blocks")
MIXED_PRECISION = ("auto", "no", "fp16", "bf16")


@dataclass(frozen=True)
class TrainConfig:
    """A training run: what to distil, from what, with which method, for how long, and where to write.
    `method` holds the method's own settings (TDMConfig for "tdm", DMD2Config for "dmd2");
    `key=value` overrides on the command line reach either level."""

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
    algorithm: str = "tdm"               # the distillation method, a name in methods/common/method.py's METHODS:
                                         # "tdm" | "dmd2" (a preset picks it; `method` is of its config class)
    method: DistillConfig = TDMConfig()

    def __post_init__(self):
        from methods.common.method import METHODS

        check_choice("algorithm", self.algorithm, tuple(METHODS))
        if type(self.method).name != self.algorithm:
            raise ValueError(f"algorithm={self.algorithm!r} but method holds {type(self.method).__name__} "
                             f"(algorithm {type(self.method).name!r}): pick the method with a preset")
        check_choice("backbone", self.backbone, BACKBONES)
        check_choice("mixed_precision", self.mixed_precision, MIXED_PRECISION)
        check_choice("tracker", self.tracker, ("tensorboard", "none"))
        check_choice("execution", self.execution, EXECUTIONS)
        check_choice("rollout", self.rollout, ROLLOUTS)
        check_choice("compile_scope", self.compile_scope, COMPILE_SCOPES)
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
