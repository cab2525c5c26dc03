"""One TDM iteration, as Algorithm 1 reads: roll the student out, update the fake score,
update the generator. Networks enter through the denoiser contract (`x0(x_t, t, cond, step_cond)`),
so the same step trains the gmm world's exact-teacher students and diffusers backbones.

Every random number comes in an `IterationDraws`, drawn for the global batch before the
iteration starts, so one process and several compute the same thing (see `randomness.py`),
and an iteration reads nothing back from the GPU: it can be captured as a CUDA graph
(`graphs.py`). With micro-batches (gradient accumulation) each role's gradient is summed
over the rows before its one optimiser step, which is the same update in less memory.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from methods.common.adapters import classifier_free_guidance

from . import objective as obj
from .config import TDMConfig
from .randomness import IterationDraws
from .trajectory import RolloutState, TrajectorySample, rollout_segments, script_level, segment_step


@dataclass
class Roles:
    student: object      # denoiser with trainable parameters, initialised from the teacher
    fake_score: object   # denoiser with trainable parameters, initialised from the teacher
    teacher: object      # frozen denoiser; real score
    schedule: object


def teacher_x0(roles: Roles, x_tau, tau, cond, uncond, guidance: float, grad: bool = False):
    """Real score with classifier-free guidance (conditional and unconditional rows in one batch).

    `grad=True` lets gradients reach x_tau (never the teacher's weights): the Fisher loss needs it.
    """
    with contextlib.nullcontext() if grad else torch.no_grad():
        if guidance == 1.0 or uncond is None:
            return roles.teacher.x0(x_tau, tau, cond)
        return classifier_free_guidance(roles.teacher, x_tau, tau, cond, uncond, guidance)


def _tau(cfg: TDMConfig, sample: TrajectorySample, u: torch.Tensor):
    return obj.sample_tau(*obj.tau_range(cfg.interval, sample.t_i, sample.t_next, cfg.num_train_timesteps), u)


def segment_sample(cfg: TDMConfig, roles: Roles, state: RolloutState, cond, step_cond) -> TrajectorySample:
    """The student's step on each row's segment (with gradient where grad is enabled), at the level
    the objective diffuses from: b_m, or the script's t_mid = b_m + 1 (`interval="script"`)."""
    sample = segment_step(roles.student, roles.schedule, state, cond, cfg.solver, step_cond, cfg.num_train_timesteps)
    return script_level(roles.schedule, state, sample) if cfg.interval == "script" else sample


def fake_score_step(cfg: TDMConfig, roles: Roles, sample: TrajectorySample, cond, step_cond, u, noise) -> torch.Tensor:
    """Eq. 7 with the importance weights of Sec. 3.1 (or without, for the ablation), each sample's
    loss weighted by omega_tau = min(SNR_tau, fake_snr_cap) when a cap is set (the script's 5)."""
    x_i, x0_hat = sample.x_i.detach(), sample.x0_hat.detach()
    tau = _tau(cfg, sample, u)
    noise = noise.to(x_i.dtype)
    if cfg.importance_weights == "none":
        x_tau, weight = roles.schedule.add_noise(x0_hat, noise, tau), None
    else:
        x_tau = obj.diffuse_from(roles.schedule, x_i, sample.t_i, tau, noise)
        weight = obj.importance_weight(roles.schedule, x_tau, x_i, x0_hat, sample.t_i, tau, cfg.importance_weights,
                                       noise)
    omega = obj.snr_cap_weight(roles.schedule, tau, cfg.fake_snr_cap, x_tau) if cfg.fake_snr_cap > 0 else None
    return obj.fake_score_loss(roles.fake_score.x0(x_tau, tau, cond, step_cond), x0_hat, weight, omega)


def generator_step(cfg: TDMConfig, roles: Roles, sample: TrajectorySample, cond, uncond, step_cond, u,
                   noise) -> torch.Tensor:
    """Eq. 6 / Eq. 11 on the trajectory sample x_i (or on x0_hat, for the Table 7 ablation).

    x_tau is always diffused from the matched sample; with loss_space="x0_hat" (the script) the loss
    is then taken on x0_hat instead of x_i: the same target shift delta, but the gradient reaches
    the student through x0_hat alone, not through the DDIM step that made x_i from it."""
    x = sample.x_i if cfg.match == "noisy" else sample.x0_hat
    t_x = sample.t_i if cfg.match == "noisy" else torch.full_like(sample.t_i, obj.CLEAN)
    tau = _tau(cfg, sample, u)
    noise = noise.to(x.dtype)
    if cfg.loss == "fisher":
        return _fisher_step(cfg, roles, sample, x, t_x, tau, noise, cond, uncond, step_cond)
    x_tau = obj.diffuse_from(roles.schedule, x.detach(), t_x, tau, noise)
    x0_real = teacher_x0(roles, x_tau, tau, cond, uncond, cfg.guidance)
    with torch.no_grad():
        x0_fake = roles.fake_score.x0(x_tau, tau, cond, step_cond)
    delta = obj.score_difference(x0_real, x0_fake)
    if cfg.loss_space == "x0_hat":
        x = sample.x0_hat
    if cfg.loss == "pseudo_huber":
        return obj.pseudo_huber_loss(x, delta)
    normaliser = obj.dmd_normaliser(sample.x0_hat, x0_real)
    if cfg.loss == "kl":
        return obj.reverse_kl_loss(x, delta, normaliser)
    return obj.pseudo_huber_script_loss(x, delta, normaliser)


def _fisher_step(cfg, roles, sample, x, t_x, tau, noise, cond, uncond, step_cond) -> torch.Tensor:
    """Table 8: the Fisher divergence, whose gradient reaches the student through x_tau and
    both score networks' inputs (their weights are not updated here)."""
    x_tau = obj.diffuse_from(roles.schedule, x, t_x, tau, noise)
    x0_real = teacher_x0(roles, x_tau, tau, cond, uncond, cfg.guidance, grad=True)
    x0_fake = roles.fake_score.x0(x_tau, tau, cond, step_cond)
    normaliser = obj.dmd_normaliser(sample.x0_hat, x0_real.detach())
    return obj.fisher_loss(x0_real, x0_fake, sample.x0_hat, cfg.fisher_alpha, normaliser=normaliser)


@dataclass(frozen=True)
class StepOptions:
    """How an iteration is executed; none of these changes what it computes."""
    rollout: str = "every_row"   # "every_row": every row to the deepest segment (fixed shapes) | "per_row": only
                                 # the rows that need each step, planned on the host (fewer calls, shapes vary) |
                                 # "strata": the same rows in fixed shapes (needs segments="stratified")
    micro_batches: int = 1       # gradient accumulation: the rows in this many passes per update
    keep_grads: bool = False     # zero gradients in place instead of freeing them (CUDA graphs need fixed addresses)


def train_step(cfg: TDMConfig, roles: Roles, optimisers: dict, noise, cond, uncond, draws: IterationDraws, K: int,
               step_cond=None, accelerator=None, options: StepOptions = StepOptions()) -> dict:
    """Algorithm 1, lines 3-13, for one batch and one step count K; the losses of this process's rows.

    With a fresh segment for the generator (the script's choice) one roll-out serves both
    updates' segments; the fake score's sample is then taken without gradient, the generator's with."""
    fresh = draws.m_generator is not None
    ms = [draws.m, draws.m_generator] if fresh else [draws.m]
    hosts = [draws.m_host, draws.m_generator_host] if fresh else [draws.m_host]
    states = rollout_segments(roles.student, roles.schedule, noise, cond, K, ms, cfg.solver, step_cond,  # lines 3-4
                              cfg.num_train_timesteps, draws.depth, hosts if options.rollout == "per_row" else None,
                              cfg.timesteps, strata=options.rollout == "strata")
    if options.micro_batches > 1:
        return _accumulated_step(cfg, roles, optimisers, states[0], states[-1], cond, uncond, draws, step_cond,
                                 accelerator, options)
    with torch.no_grad() if fresh else contextlib.nullcontext():
        sample = segment_sample(cfg, roles, states[0], cond, step_cond)
    losses = {}
    for u, eps in draws.fake:  # lines 7-10
        loss = fake_score_step(cfg, roles, sample, cond, step_cond, u, eps)
        losses["fake_score"] = update(optimisers["fake_score"], loss, cfg.grad_clip_fake, accelerator, options)
    if fresh:
        sample = segment_sample(cfg, roles, states[-1], cond, step_cond)
    loss = generator_step(cfg, roles, sample, cond, uncond, step_cond, *draws.generator)  # lines 11-13
    losses["student"] = update(optimisers["student"], loss, cfg.grad_clip, accelerator, options)
    return losses


def _accumulated_step(cfg, roles, optimisers, state, generator_state, cond, uncond, draws, step_cond, accelerator,
                      options) -> dict:
    """Lines 7-13 over micro-batches: every role's gradient is summed over all rows before its step.

    Each micro-batch's loss is back-propagated as soon as it is made, so only one micro-batch's
    activations are alive at a time. The fake score learns from the student's samples taken
    without gradient; the generator pass then takes the student's step again, with gradient:
    that second student call is the price of the memory saved.
    """
    n, N = len(state.m), options.micro_batches
    if n % N:
        raise ValueError(f"{n} rows per process do not split into {N} micro-batches")
    parts = [slice(i, i + n // N) for i in range(0, n, n // N)]

    def sample(of: RolloutState, part):
        return segment_sample(cfg, roles, of.rows(part), _rows(cond, part), _rows(step_cond, part))

    losses = {}
    with torch.no_grad():
        samples = [sample(state, part) for part in parts]
    for update in range(len(draws.fake)):
        _zero(optimisers["fake_score"], options)
        total = 0.0
        for part, s in zip(parts, samples):
            u, eps = draws.rows(part).fake[update]
            loss = fake_score_step(cfg, roles, s, _rows(cond, part), _rows(step_cond, part), u, eps) / N
            _backward(loss, accelerator)
            total = total + loss.detach()
        losses["fake_score"] = _step(optimisers["fake_score"], total, cfg.grad_clip_fake, accelerator, options)
    _zero(optimisers["student"], options)
    total = 0.0
    for part in parts:
        loss = generator_step(cfg, roles, sample(generator_state, part), _rows(cond, part), _rows(uncond, part),
                              _rows(step_cond, part), *draws.rows(part).generator) / N
        _backward(loss, accelerator)
        total = total + loss.detach()
    losses["student"] = _step(optimisers["student"], total, cfg.grad_clip, accelerator, options)
    return losses


def _rows(value, part: slice):
    """Rows `part` of a tensor, or of every tensor in a cond dict."""
    if isinstance(value, dict):
        return {k: _rows(v, part) for k, v in value.items()}
    return None if value is None else value[part]


def update(optimiser, loss: torch.Tensor, grad_clip: float, accelerator=None,
            options: StepOptions | None = None) -> torch.Tensor:
    """One clipped AdamW step on one role's loss (through accelerate when it is there: DDP, scaling).

    Returns the detached loss of this process's rows; no `.item()`, which would wait for the GPU
    every iteration. Under DDP the gradient is averaged over processes before clipping, so the
    clip sees the global batch's gradient norm, as one process would.
    """
    options = options or StepOptions()
    _zero(optimiser, options)
    _backward(loss, accelerator)
    return _step(optimiser, loss.detach(), grad_clip, accelerator, options)


def _zero(optimiser, options: StepOptions) -> None:
    optimiser.zero_grad(set_to_none=not options.keep_grads)


def _backward(loss: torch.Tensor, accelerator=None) -> None:
    if accelerator is None:
        loss.backward()
    else:
        accelerator.backward(loss)


def _step(optimiser, loss: torch.Tensor, grad_clip: float, accelerator, options: StepOptions) -> torch.Tensor:
    params = [p for g in optimiser.param_groups for p in g["params"]]
    if not grad_clip:
        pass  # 0: no clipping (the official script's fake score)
    elif accelerator is None or accelerator.is_fsdp2:  # torch's clip handles sharded (DTensor) gradients;
        torch.nn.utils.clip_grad_norm_(params, grad_clip)  # accelerate's would compare lists elementwise
    else:
        accelerator.clip_grad_norm_(params, grad_clip)
    optimiser.step()
    # Within one autocast region torch caches the low-precision copy of every trainable weight
    # it casts. The iteration runs in one region, so without this the generator pass (and every
    # later fake-score update) would compute with the fake score's weights from before this step.
    torch.clear_autocast_cache()
    if not options.keep_grads:  # free them now: the other role's passes come next and want the memory
        optimiser.zero_grad(set_to_none=True)
    return loss
