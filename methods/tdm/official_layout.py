"""The official TDM demo script's pass structure, replayed on this project's backbones: the
reference that `python -m methods.tdm.bench` measures the project's trainer against.

One iteration of the script (train_tdm_demo.py of the authors' repository, Luo-Yihong/TDM), per sample:

1. roll-out: the student runs all K = 4 steps from noise at b_K without CFG and without grad,
   DDIM (eta 0), keeping the state x_{t_k} at every student timestep t_k;     4 forwards
2. fake-score update: a segment k per sample; the student (no grad) at x_{t_k}, the teacher
   at x_tau (its output unused), the fake score forward and backward;         5 forwards
3. generator update: a fresh segment and tau; the student with grad at x_{t_k}, the teacher
   conditional and unconditional as two passes, the fake score without grad; 6 forwards

counting a backward as two forwards: 15 forward-equivalents per sample and iteration, where
the same mathematics needs about 10.5 (roll-out to the sampled step, batched CFG, no unused pass).

Precision as the script's fp16 training: trainable student and fake score in fp32 under fp16
autocast with a gradient scaler, frozen teacher and text encoder in fp16; fp32 throughout on
CPU. Not reproduced: the script's 8-bit AdamW (plain torch AdamW here), its T = 900 trajectory
(the project's b_k for T = 1000, or the config's explicit `timesteps`), its learning-rate schedule
(no compute), xformers attention (the backbone's default attention).

With explicit student timesteps (TDMConfig.timesteps, four of them) the layout runs on those: the
roll-out visits them, and a segment k starts at t_mid = b_{k-1} + 1 (0 for k = 1), the script's
(k - 1) T / K moved to the given bounds.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from methods.common.errors import UserError
from methods.common.schedule import x0_to_eps

from . import objective as obj
from .backbones import load_backbone
from .config import TrainConfig
from .randomness import BatchRandom, step_generator

K = 4                         # the script hardcodes four student steps
SNR_CAP = 5.0                 # fake-score loss weight min(SNR_tau, 5)
MAX_GRAD_NORM = 1.0           # the student's gradient is clipped; the fake score's is not
ADAM_BETAS = (0.0, 0.95)      # the script's AdamW settings (both networks)
ADAM_WEIGHT_DECAY = 1e-2
ADAM_EPS = 1e-8

NOT_REPRODUCED = [
    "8-bit AdamW from bitsandbytes: plain torch.optim.AdamW (betas (0, 0.95), weight decay 0.01)",
    "the T = 900 trajectory: the project's student timesteps b_k for T = 1000 (999, 749, 499, 249)",
    "the generator's cosine-with-restarts learning-rate schedule (no compute): constant learning rates",
    "xformers attention: the backbone's default attention",
]


def not_reproduced(setup: "ScriptSetup") -> list[str]:
    """NOT_REPRODUCED, its trajectory line naming the student timesteps this layout ran on."""
    if not setup.timesteps:
        return list(NOT_REPRODUCED)
    line = f"the T = 900 trajectory: the config's explicit student timesteps {tuple(setup.timesteps)}"
    return [line if item.startswith("the T = 900 trajectory") else item for item in NOT_REPRODUCED]


@dataclass
class ScriptSetup:
    """What one iteration of the script needs: the backbone (its roles and trainable modules),
    one AdamW and one gradient scaler per trainable role, the CFG scale, the device."""

    backbone: object
    optimisers: dict
    scalers: dict
    guidance: float
    device: torch.device
    T: int = 1000
    timesteps: tuple[int, ...] = ()  # the student's explicit timesteps, noise first; (): b_k = kT/K - 1

    @property
    def bounds(self) -> list[int]:
        """[b_0 = CLEAN, b_1, ..., b_K] of the student's trajectory."""
        return obj.interval_bounds(K, self.T, self.timesteps)

    @property
    def segment_starts(self) -> list[int]:
        """t_mid of segments k = 1..K: the script's (k - 1) T / K, or b_{k-1} + 1 on explicit timesteps."""
        if not self.timesteps:
            return [(k - 1) * self.T // K for k in range(1, K + 1)]
        return [b + 1 for b in self.bounds[:K]]  # CLEAN + 1 = 0 for k = 1

    @property
    def roles(self):
        return self.backbone.roles

    def autocast(self):
        """fp16 autocast on a GPU, as the script's fp16 training; nothing on CPU (fp32)."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", torch.float16)
        return contextlib.nullcontext()


@dataclass
class Segment:
    """Per sample: the segment k in 1..K, its student timestep t_k, its start t_mid, and tau."""

    k: torch.Tensor
    t_k: torch.Tensor
    t_mid: torch.Tensor
    tau: torch.Tensor


def prepare(config: TrainConfig, device: torch.device | str) -> ScriptSetup:
    """The backbone with frozen networks in fp16 on a GPU (fp32 on CPU), and the optimisers."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    method = config.method
    if method.timesteps and len(method.timesteps) != K:
        raise UserError(f"the official script's layout runs K = {K} student steps; timesteps="
                        f"{list(method.timesteps)} has {len(method.timesteps)}: give {K} or timesteps=()")
    backbone = load_backbone(config, device, torch.float16 if cuda else torch.float32)
    optimisers = {
        name: torch.optim.AdamW([p for p in backbone.modules[name].parameters() if p.requires_grad], lr=lr,
                                betas=ADAM_BETAS, weight_decay=ADAM_WEIGHT_DECAY, eps=ADAM_EPS)
        for name, lr in (("student", method.lr_student), ("fake_score", method.lr_fake))}
    scalers = {name: torch.amp.GradScaler(device.type, enabled=cuda) for name in optimisers}
    return ScriptSetup(backbone, optimisers, scalers, method.guidance, device, method.num_train_timesteps,
                       tuple(method.timesteps))


# --- the script's steps --------------------------------------------------------------------------

def _levels(n: int, t, like: torch.Tensor) -> torch.Tensor:
    return torch.full((n,), int(t), device=like.device, dtype=torch.long)


def ddim_to(schedule, x_t, x0_hat, t, t_next) -> torch.Tensor:
    """DDIM (eta 0) as the script writes it: re-noise x0_hat with the implied noise to t_next."""
    alpha, sigma = schedule.alpha_sigma(t, x_t)
    return schedule.add_noise(x0_hat, x0_to_eps(x_t, x0_hat, alpha, sigma), t_next)


def rollout(setup: ScriptSetup, noise: torch.Tensor, cond: dict) -> torch.Tensor:
    """Step 1: states[k] = x_{t_k} for k = K..1 (states[0]: the generated sample), no CFG, no grad.

    All K student calls run over the whole batch, whatever segments are drawn afterwards."""
    roles, bounds = setup.roles, setup.bounds
    n, x = len(noise), noise
    states = [None] * (K + 1)
    with torch.no_grad(), setup.autocast():
        for k in range(K, 0, -1):
            states[k] = x
            t_k = _levels(n, bounds[k], x)
            x0_hat = roles.student.x0(x, t_k, cond)
            x = x0_hat if k == 1 else ddim_to(roles.schedule, x, x0_hat, t_k, _levels(n, bounds[k - 1], x))
        states[0] = x
    return torch.stack(states)


def draw_segment(setup: ScriptSetup, rng: BatchRandom) -> Segment:
    """k ~ U{1..K} per sample; t_mid = (k - 1) T / K, the segment's start (0 for k = 1), as the
    script sets it (b_{k-1} + 1 on explicit timesteps); tau ~ U[max(20, t_mid), T - 10), the
    script's range without --use_separate."""
    bounds = torch.tensor(setup.bounds, device=rng.device)
    k = rng.randint(K) + 1
    t_mid = torch.tensor(setup.segment_starts, device=rng.device)[k - 1]
    low, high = obj.SCRIPT_TAU_MARGINS  # [max(20, t_mid), T - 10): the script without --use_separate
    tau = obj.sample_tau(t_mid.clamp(min=low), torch.full_like(t_mid, setup.T - high), rng.rand())
    return Segment(k, bounds[k], t_mid, tau)


def student_at_segment(setup: ScriptSetup, states: torch.Tensor, segment: Segment, cond: dict):
    """x0_hat = G(x_{t_k}, t_k) and x_mid, its DDIM step to the segment's start t_mid."""
    x_tk = states[segment.k, torch.arange(states.shape[1], device=states.device)]
    with setup.autocast():
        x0_hat = setup.roles.student.x0(x_tk, segment.t_k, cond)
    return x0_hat, ddim_to(setup.roles.schedule, x_tk, x0_hat, segment.t_k, segment.t_mid)


def fake_score_update(setup: ScriptSetup, states: torch.Tensor, cond: dict, rng: BatchRandom) -> torch.Tensor:
    """Step 2: mean((F_x0(x_tau, tau) - x0_hat)^2) * min(SNR_tau, 5) * w_IS, one AdamW step, no clipping."""
    roles = setup.roles
    segment = draw_segment(setup, rng)
    with torch.no_grad():
        x0_hat, x_mid = student_at_segment(setup, states, segment, cond)
        xi = rng.randn(*x_mid.shape[1:], dtype=x_mid.dtype)
        x_tau = obj.diffuse_from(roles.schedule, x_mid, segment.t_mid, segment.tau, xi)
        with setup.autocast():
            roles.teacher.x0(x_tau, segment.tau, cond)  # the script calls the teacher here and drops its output
        w_is = obj.importance_weight(roles.schedule, x_tau, x_mid, x0_hat, segment.t_mid, segment.tau,
                                     mode="per_dim_mean")
    with setup.autocast():
        x0_fake = roles.fake_score.x0(x_tau, segment.tau, cond)
    loss = obj.fake_score_loss(x0_fake, x0_hat, w_is, obj.snr_cap_weight(roles.schedule, segment.tau, SNR_CAP, x_tau))
    return update(setup, "fake_score", loss, max_grad_norm=None)


def generator_update(setup: ScriptSetup, states: torch.Tensor, cond: dict, uncond: dict,
                     rng: BatchRandom) -> torch.Tensor:
    """Step 3: target x0_hat + (R_c - F_c) + (cfg - 1)(R_c - R_u); elementwise Pseudo-Huber (c = 1e-3)
    over the DMD normaliser; the student's gradient clipped to norm 1, one AdamW step."""
    roles = setup.roles
    segment = draw_segment(setup, rng)  # fresh k, t_mid and tau
    x0_hat, x_mid = student_at_segment(setup, states, segment, cond)  # with grad, through x0_hat only
    with torch.no_grad():
        xi = rng.randn(*x_mid.shape[1:], dtype=x_mid.dtype)
        x_tau = obj.diffuse_from(roles.schedule, x_mid.detach(), segment.t_mid, segment.tau, xi)
        with setup.autocast():
            # Two teacher passes, not one batched CFG pass: the script's layout.
            x0_real_c = roles.teacher.x0(x_tau, segment.tau, cond)
            x0_real_u = roles.teacher.x0(x_tau, segment.tau, uncond)
            x0_fake_c = roles.fake_score.x0(x_tau, segment.tau, cond)
        x0_real = x0_real_u + setup.guidance * (x0_real_c - x0_real_u)
    # x0_real - x0_fake_c = (R_c - F_c) + (cfg - 1)(R_c - R_u)
    delta = obj.score_difference(x0_real, x0_fake_c)
    loss = obj.pseudo_huber_script_loss(x0_hat, delta, obj.dmd_normaliser(x0_hat, x0_real))
    return update(setup, "student", loss, max_grad_norm=MAX_GRAD_NORM)


def update(setup: ScriptSetup, role: str, loss: torch.Tensor, max_grad_norm: float | None) -> torch.Tensor:
    """One AdamW step on one role through its gradient scaler (a pass-through on CPU); the
    backward runs outside autocast. Returns the detached loss (no host sync)."""
    optimiser, scaler = setup.optimisers[role], setup.scalers[role]
    optimiser.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if max_grad_norm is not None:
        scaler.unscale_(optimiser)  # clip the true gradient, not the scaled one
        torch.nn.utils.clip_grad_norm_([p for g in optimiser.param_groups for p in g["params"]], max_grad_norm)
    scaler.step(optimiser)
    scaler.update()
    return loss.detach()


def official_iteration(setup: ScriptSetup, noise: torch.Tensor, cond: dict, uncond: dict,
                       rng: BatchRandom) -> dict:
    """One iteration of the script: roll-out, fake-score update, generator update (1:1)."""
    states = rollout(setup, noise, cond)
    return {"fake_score": fake_score_update(setup, states, cond, rng),
            "student": generator_update(setup, states, cond, uncond, rng)}


# --- measurement ----------------------------------------------------------------------------------

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _forward_flops_per_sample(setup: ScriptSetup, noise: torch.Tensor, cond: dict) -> int:
    """FLOPs of one denoiser forward per sample (the teacher's: the three networks share an architecture)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad(), setup.autocast():
        setup.roles.teacher.x0(noise, _levels(len(noise), setup.T - 1, noise), cond)
    return counter.get_total_flops() // len(noise)


def measure_official_layout(config: TrainConfig, device: torch.device | str | None = None,
                            iterations: int | None = None) -> dict:
    """Speed, peak memory and FLOPs of the script's layout over `iterations` (default: the config's).

    Each iteration draws its batch like the project's trainer (BatchRandom of (seed, step)). The
    first iteration is warm-up: it is not timed, and its FLOPs are counted (batch encoding
    outside the count, as in the trainer)."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    iterations = config.iterations if iterations is None else iterations
    cuda = device.type == "cuda"
    allocated_before = torch.cuda.memory_allocated(device) / 2 ** 30 if cuda else None
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    setup = prepare(config, device)
    batch_size = config.method.batch_size
    wall_start = time.perf_counter()
    timed_from, flops, losses = None, None, {}
    for step in range(iterations):
        rng = BatchRandom(step_generator(config.seed, step), batch_size, device=device)
        noise, cond, uncond = setup.backbone.batch(rng, step)
        counter = FlopCounterMode(display=False) if step == 0 else contextlib.nullcontext()
        with counter:
            losses = official_iteration(setup, noise, cond, uncond, rng)
        if step == 0:
            flops = counter.get_total_flops()
            _sync(device)
            timed_from = time.perf_counter()
    _sync(device)
    timed = iterations - 1
    seconds = (time.perf_counter() - timed_from) / timed if timed > 0 else None
    peak_memory = torch.cuda.max_memory_allocated(device) / 2 ** 30 if cuda else None
    forward_flops = _forward_flops_per_sample(setup, noise, cond)
    return {
        "what": "the official TDM demo script's pass structure on the same pipeline, batch and iterations",
        "passes_per_sample": "roll-out 4 student (no grad); fake-score step: student 1, teacher 1 (output unused), "
                             "fake score forward + backward; generator step: student forward + backward, teacher "
                             "conditional 1 + unconditional 1, fake score 1",
        "precision": ("student and fake score fp32 under fp16 autocast with a GradScaler each; teacher and text "
                      "encoder fp16") if cuda else "fp32 (CPU: no autocast, no scaler)",
        "optimiser": "torch.optim.AdamW, betas (0, 0.95), weight decay 0.01, learning rates from the config",
        "not_reproduced": not_reproduced(setup),
        "iterations": iterations, "timed_iterations": max(timed, 0), "batch_size": batch_size,
        "seconds_per_iteration": seconds,
        "samples_per_second": batch_size / seconds if seconds else None,
        "ms_per_sample_iteration": 1000 * seconds / batch_size if seconds else None,
        "peak_memory_gib": peak_memory,
        "memory_allocated_before_gib": allocated_before,  # what the process still held when the layout started
        "wall_seconds": time.perf_counter() - wall_start,
        "flops_per_iteration": flops,
        "flops_per_forward_per_sample": forward_flops,
        "forward_equivalents_per_sample": flops / (batch_size * forward_flops) if flops and forward_flops else None,
        "final_losses": {role: float(loss) for role, loss in losses.items()},
        # From 65536, each halving is one update skipped for overflowing fp16 gradients.
        "final_grad_scales": {role: scaler.get_scale() for role, scaler in setup.scalers.items()} if cuda else None,
        "device": str(device),
    }
