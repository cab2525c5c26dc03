"""Two few-step samplers that diffusers lacks, as ordinary diffusers schedulers.

Both run inside the stock `StableDiffusionPipeline` / `StableDiffusionXLPipeline` unchanged:

    pipe.scheduler = PeRFlowScheduler.from_config(pipe.scheduler.config, prediction_type="diff_eps")
    pipe.scheduler = RectifiedFlowEulerScheduler.from_config(pipe.scheduler.config)

Time runs as the pipeline's timesteps do, from noise (t = 1, timestep N = num_train_timesteps)
to data (t = 0); a timestep T is the point t = T / N. `step` is stateless: it finds the next
point from where `timestep` sits in `self.timesteps`, so every step must be one of them.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_ddpm import betas_for_alpha_bar
from diffusers.schedulers.scheduling_utils import SchedulerMixin, SchedulerOutput

__all__ = ["PeRFlowScheduler", "RectifiedFlowEulerScheduler"]


def ddpm_betas(num_train_timesteps: int, beta_start: float, beta_end: float, beta_schedule: str,
               trained_betas=None) -> torch.Tensor:
    """The teacher's DDPM betas, built as diffusers' DDPM/DDIM schedulers build them."""
    if trained_betas is not None:
        return torch.tensor(np.asarray(trained_betas), dtype=torch.float32)
    if beta_schedule == "linear":
        return torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float32)
    if beta_schedule == "scaled_linear":
        return torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float32) ** 2
    if beta_schedule == "squaredcos_cap_v2":
        return betas_for_alpha_bar(num_train_timesteps)
    raise ValueError(f"unknown beta_schedule {beta_schedule!r}; "
                     "use 'linear', 'scaled_linear', 'squaredcos_cap_v2' or pass trained_betas")


def _floor_timestep(n_train: int, t: float) -> int:
    # the 1e-9 keeps 1000 * (0.7 - 0.1 / 2), which comes out as 649.99999..., at 650
    return math.floor(n_train * t + 1e-9)


def _as_float(timestep) -> float:
    return float(timestep.item() if isinstance(timestep, torch.Tensor) else timestep)


def _position(timesteps: torch.Tensor | None, timestep) -> int:
    """Index of `timestep` in the schedule (to within 1e-3 of a train step: float32 round trips)."""
    if timesteps is None:
        raise ValueError("call set_timesteps before step")
    t = _as_float(timestep)
    gaps = (timesteps.detach().cpu().double() - t).abs()
    i = int(gaps.argmin())
    if gaps[i] > 1e-3:
        raise ValueError(f"timestep {t} is not in the schedule {timesteps.tolist()}; step only takes "
                         "the timesteps set_timesteps made")
    return i


def _strictly_decreasing(values) -> list[float]:
    values = [_as_float(v) for v in values]
    if not values or any(a <= b for a, b in zip(values, values[1:])):
        raise ValueError(f"timesteps must be a non-empty, strictly decreasing list (noise first); got {values}")
    return values


class PeRFlowScheduler(SchedulerMixin, ConfigMixin):
    """Piecewise rectified flow (PeRFlow; Yan et al. 2024, arXiv 2405.07510).

    The time axis from t_noise to t_clean is cut into `num_time_windows` (K) equal windows. Inside
    window [t_s, t_e] the student was trained on a straight line from x_s, the teacher's DDPM
    marginal at t_s, to x_e, where the teacher's probability-flow ODE takes x_s at t_e:

        x_t = x_s + (t - t_s) / (t_e - t_s) * (x_e - x_s),    velocity v = (x_e - x_s) / (t_e - t_s).

    Sampling is Euler on that velocity, window by window, the windows sharing the N-step budget
    (the first N mod K windows, nearest the noise, take one step more). A window's x_s and x_e are
    tied to the DDPM schedule through ᾱ at its ends, ᾱ(t) = alphas_cumprod[t N - 1] (index 0 at
    t = 0), and the prediction type says how the network's output gives v at (x_t, t):

    - "velocity": the output is v.
    - "diff_eps": the output is the noise ε of the DDPM transition from t_e to t_s,
      x_s = γ x_e + sqrt(1 - γ²) ε with γ = sqrt(ᾱ_s / ᾱ_e), so x_e = λ_s x_s + η_s ε with
      λ_s = 1 / γ, η_s = -sqrt(1 - γ²) / γ (what the SD-1.5 releases' scripts use).
    - "ddim_eps": the output is the noise ε of a deterministic DDIM step from x_s to x_e,
      λ_s = sqrt(ᾱ_e / ᾱ_s), η_s = sqrt(1 - ᾱ_e) - sqrt(ᾱ_e (1 - ᾱ_s) / ᾱ_s) (the SDXL releases').

    For the eps types, x_s is eliminated through the line (r = (t - t_s) / (t_e - t_s)):

        x̂_e = (λ_s x_t + (1 - r) η_s ε) / ((1 - r) + r λ_s),    v = (x̂_e - x_t) / (t_e - t).

    Read from magic-research/piecewise-rectified-flow (the code behind hansyan's released
    checkpoints), `src/scheduler_perflow.py`, and its training targets in
    `scripts/train_perflow.py`; written here from those equations.

    Deviations from that code:
    - It quietly raises `num_inference_steps` below `num_time_windows` to `num_time_windows`
      (printing a note), so "2 steps" with 4 windows samples 4. Here that is a ValueError: a true
      N-step sample needs `num_time_windows=N`.
    - The windows used in the step have their edges on the integer timestep grid, T_k = floor(N t_k)
      (the timesteps the schedule starts each window at), so a step lands exactly on a window
      end. For K dividing N (K = 1, 2, 4, 5, 8, ...) this changes nothing; otherwise (K = 3) a
      window's length differs from the original's by under 1/N. The timesteps and the ᾱ at the
      window ends are the original's, except that a float round-off in its truncation to an
      integer (649 for 1000 * 0.65) is not reproduced.
    - `timesteps=` is accepted when it includes every window's start, so that no step crosses a
      window edge.
    """

    order = 1
    prediction_types = ("diff_eps", "ddim_eps", "velocity")

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.00085,
        beta_end: float = 0.012,
        beta_schedule: str = "scaled_linear",
        trained_betas: np.ndarray | list[float] | None = None,
        prediction_type: str = "diff_eps",
        num_time_windows: int = 4,
        t_noise: float = 1.0,
        t_clean: float = 0.0,
    ):
        if prediction_type not in self.prediction_types:
            hint = (" ('epsilon' is the DDPM default that from_config copies from an SD scheduler config, and the"
                    " name early PeRFlow code gave 'diff_eps'; pass prediction_type= explicitly)"
                    if prediction_type == "epsilon" else "")
            raise ValueError(f"PeRFlowScheduler prediction_type must be one of {self.prediction_types}, "
                             f"got {prediction_type!r}{hint}")
        if not 0.0 <= t_clean < t_noise <= 1.0:
            raise ValueError(f"need 0 <= t_clean < t_noise <= 1, got t_clean={t_clean}, t_noise={t_noise}")
        self.betas = ddpm_betas(num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas)
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, dim=0)
        self.init_noise_sigma = 1.0
        self.window_edges = self._window_edges(num_train_timesteps, int(num_time_windows), t_noise, t_clean)
        self.num_inference_steps = None
        self.timesteps = None

    @staticmethod
    def _window_edges(n_train: int, k_windows: int, t_noise: float, t_clean: float) -> list[int]:
        """T_0 > T_1 > ... > T_K: the windows' ends t_k as integer timesteps floor(N t_k)."""
        if k_windows < 1:
            raise ValueError(f"num_time_windows must be >= 1, got {k_windows}")
        edges = [_floor_timestep(n_train, t_noise + (t_clean - t_noise) * k / k_windows) for k in range(k_windows + 1)]
        if any(a <= b for a, b in zip(edges, edges[1:])):
            raise ValueError(f"{k_windows} windows between t_noise={t_noise} and t_clean={t_clean} leave some "
                             f"window without a timestep of its own (edges {edges})")
        return edges

    def window_of(self, timestep) -> int:
        """k such that T_k >= timestep > T_{k+1}: a window holds its start, not its end."""
        t = _as_float(timestep)
        return sum(1 for edge in self.window_edges[1:-1] if edge >= t)

    def alpha_bar(self, timestep: int) -> float:
        # timestep T is DDPM index T - 1; the clean end T = 0 takes index 0, as the original does
        return float(self.alphas_cumprod[max(int(timestep) - 1, 0)])

    def window_end_coefficients(self, k: int) -> tuple[float, float]:
        """(λ_s, η_s) with x_e = λ_s x_s + η_s ε in window k, for the eps prediction types."""
        a_s, a_e = self.alpha_bar(self.window_edges[k]), self.alpha_bar(self.window_edges[k + 1])
        if self.config.prediction_type == "diff_eps":
            gamma = math.sqrt(a_s / a_e)
            return 1.0 / gamma, -math.sqrt(1.0 - gamma**2) / gamma
        return math.sqrt(a_e / a_s), math.sqrt(1.0 - a_e) - math.sqrt(a_e * (1.0 - a_s) / a_s)

    def set_timesteps(self, num_inference_steps: int | None = None, device: str | torch.device | None = None,
                      timesteps: list[int] | None = None):
        edges, k_windows = self.window_edges, self.config.num_time_windows
        if (num_inference_steps is None) == (timesteps is None):
            raise ValueError("pass exactly one of num_inference_steps and timesteps")
        if timesteps is not None:
            values = _strictly_decreasing(timesteps)
            if any(v != int(v) for v in values) or values[0] > edges[0] or values[-1] <= edges[-1]:
                raise ValueError(f"PeRFlow timesteps must be integers in ({edges[-1]}, {edges[0]}]; got {values}")
            missing = [T for T in edges[:-1] if T not in values]
            if missing:
                raise ValueError(f"timesteps {[int(v) for v in values]} lack the window starts {missing}: each of "
                                 f"the {k_windows} windows (edges {edges}) must begin with a step at its start, "
                                 "or a step would cross a window edge")
            schedule = [int(v) for v in values]
        else:
            n = int(num_inference_steps)
            if n < k_windows:
                raise ValueError(f"num_inference_steps={n} is fewer than num_time_windows={k_windows}: each window "
                                 f"needs a step of its own. For a true {n}-step sample build the scheduler with "
                                 f"num_time_windows={n} (e.g. from_config(config, num_time_windows={n}))")
            c = self.config
            t_k = [c.t_noise + (c.t_clean - c.t_noise) * k / k_windows for k in range(k_windows + 1)]
            schedule = []
            for k in range(k_windows):
                steps_k = n // k_windows + (1 if k < n % k_windows else 0)
                # j/n_k of the way along the window, floored to a timestep as the original does
                schedule += [_floor_timestep(c.num_train_timesteps, t_k[k] + (t_k[k + 1] - t_k[k]) * j / steps_k)
                             for j in range(steps_k)]
            if any(a <= b for a, b in zip(schedule, schedule[1:])):
                raise ValueError(f"{n} steps over {k_windows} windows repeat a timestep: {schedule}")
        self.num_inference_steps = len(schedule)
        self.timesteps = torch.tensor(schedule, dtype=torch.int64, device=device)

    def scale_model_input(self, sample: torch.Tensor, timestep=None) -> torch.Tensor:
        return sample

    def velocity(self, model_output: torch.Tensor, timestep, sample: torch.Tensor) -> torch.Tensor:
        """v at (x_t, t) from the network's output, by the prediction type."""
        if self.config.prediction_type == "velocity":
            return model_output
        n_train = self.config.num_train_timesteps
        k = self.window_of(timestep)
        t_s, t_e, t = self.window_edges[k] / n_train, self.window_edges[k + 1] / n_train, _as_float(timestep) / n_train
        lambda_s, eta_s = self.window_end_coefficients(k)
        r = (t - t_s) / (t_e - t_s)
        x_e = (lambda_s * sample + (1.0 - r) * eta_s * model_output) / ((1.0 - r) + r * lambda_s)
        return (x_e - sample) / (t_e - t)

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, generator=None,
             return_dict: bool = True):
        """One Euler step x_next = x_t + (t_next - t) v, to the next timestep or, last, to t_clean."""
        i = _position(self.timesteps, timestep)
        schedule = self.timesteps.tolist() + [self.window_edges[-1]]
        dt = (schedule[i + 1] - schedule[i]) / self.config.num_train_timesteps  # negative: towards the data
        prev_sample = sample + dt * self.velocity(model_output.to(sample.dtype), schedule[i], sample)
        return SchedulerOutput(prev_sample=prev_sample) if return_dict else (prev_sample,)

    def __len__(self) -> int:
        return self.config.num_train_timesteps


class RectifiedFlowEulerScheduler(SchedulerMixin, ConfigMixin):
    """InstaFlow's Euler sampler for a rectified-flow velocity network (Liu et al. 2024, arXiv 2309.06380).

    InstaFlow integrates dx/ds = v(x, s) from noise (s = 0) to data (s = 1) and conditions the UNet
    on timestep (1 - s) N, so an N-step sample evaluates v at timesteps (1 - i / steps) N,
    i = 0 .. steps - 1 (1000 first; floats), and steps x <- x + (1 / steps) v. One step from
    timestep N is x_noise + v. With explicit timesteps T_0 > ... > T_{n-1} > T_n = 0 the step is
    x <- x + (T_i - T_{i+1}) / N v.

    Read from gnobitab/InstaFlow `code/pipeline_rf.py` and huggingface/diffusers
    `examples/community/instaflow_one_step.py` (the same loop); written here from them.
    """

    order = 1

    @register_to_config
    def __init__(self, num_train_timesteps: int = 1000):
        self.init_noise_sigma = 1.0
        self.num_inference_steps = None
        self.timesteps = None
        self._points: list[float] = []

    def set_timesteps(self, num_inference_steps: int | None = None, device: str | torch.device | None = None,
                      timesteps: list[float] | None = None):
        n_train = self.config.num_train_timesteps
        if (num_inference_steps is None) == (timesteps is None):
            raise ValueError("pass exactly one of num_inference_steps and timesteps")
        if timesteps is not None:
            schedule = _strictly_decreasing(timesteps)
            if schedule[0] > n_train or schedule[-1] <= 0:
                raise ValueError(f"timesteps must lie in (0, {n_train}]; got {schedule}")
        else:
            n = int(num_inference_steps)
            if n < 1:
                raise ValueError(f"num_inference_steps must be >= 1, got {n}")
            schedule = [(1.0 - i / n) * n_train for i in range(n)]
        self.num_inference_steps = len(schedule)
        self._points = schedule  # float64, so that the step sizes sum to exactly 1
        self.timesteps = torch.tensor(schedule, dtype=torch.float32, device=device)

    def scale_model_input(self, sample: torch.Tensor, timestep=None) -> torch.Tensor:
        return sample

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, generator=None,
             return_dict: bool = True):
        """x <- x + ds v, ds = (T_i - T_{i+1}) / N > 0: the velocity points from noise to data."""
        i = _position(self.timesteps, timestep)
        points = self._points + [0.0]
        ds = (points[i] - points[i + 1]) / self.config.num_train_timesteps
        prev_sample = sample + ds * model_output.to(sample.dtype)
        return SchedulerOutput(prev_sample=prev_sample) if return_dict else (prev_sample,)

    def __len__(self) -> int:
        return self.config.num_train_timesteps
