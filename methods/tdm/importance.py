"""What the importance weights of the fake-score loss (Sec. 3.1) look like at a given dimension.

    python -m methods.tdm.importance [--dims 2 1024 16384] [--batch 256] [--steps 4] [--seed 0]

Draws as the trainer makes them: a clean prediction x0_hat and a sample x_i = alpha_i x0_hat +
sigma_i eps at each segment's start b_i, tau uniform in the segment [b_i, b_{i+1}), x_tau from
q(x_tau | x_i). x0_hat is standard normal, as the latents of the SD-family VAEs are after
scaling. For each dimension, segment and weight mode it prints the share of weights that are
exactly 0, their minimum, median and maximum, and the effective sample size over the batch
((sum w)^2 / (n sum w^2); 1 when all weights are equal, 1/n when one sample holds them all).
"""
from __future__ import annotations

import argparse
import sys

import torch

from methods.common.schedule import NoiseSchedule

from . import objective as obj
from .config import IMPORTANCE_WEIGHTS


def trainer_like_draws(schedule: NoiseSchedule, d: int, n: int, K: int, segment: int, generator: torch.Generator):
    """(x_tau, x_i, x0_hat, t_i, tau, noise) for `n` samples of dimension `d` on segment `segment` of K;
    `noise` drew x_tau from x_i (the trainer passes it to the weight, as the official script does)."""
    bounds = obj.interval_bounds(K, len(schedule.alphas_cumprod))
    t_i, hi = torch.full((n,), bounds[segment]), torch.full((n,), bounds[segment + 1])
    tau = obj.sample_tau(t_i, hi, torch.rand(n, generator=generator))
    x0_hat = torch.randn(n, d, generator=generator)
    alpha_i, sigma_i = obj._alpha_sigma(schedule, t_i, x0_hat)
    x_i = alpha_i * x0_hat + sigma_i * torch.randn(n, d, generator=generator)
    noise = torch.randn(n, d, generator=generator)
    return obj.diffuse_from(schedule, x_i, t_i, tau, noise), x_i, x0_hat, t_i, tau, noise


def weight_statistics(log_w: torch.Tensor) -> dict:
    """Of w = exp(log_w) as the trainer uses it (float32); the effective sample size from log_w,
    so that it stays defined when every w underflows."""
    w, log_w = log_w.float().exp(), log_w.double()
    log_ess = 2 * torch.logsumexp(log_w, 0) - torch.logsumexp(2 * log_w, 0)
    return {"zero": (w == 0).float().mean().item(), "min": w.min().item(), "median": w.median().item(),
            "max": w.max().item(), "ess": log_ess.exp().item() / len(w)}


# SD-1.5's training schedule (its scheduler_config.json), which every world of the project shares.
SD15_SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m methods.tdm.importance", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 1024, 16384])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4, help="K: the segments are those of a K-step student")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if min(args.dims) < 1 or args.batch < 2 or args.steps < 1:
        print("error: --dims must be positive, --batch at least 2, --steps at least 1", file=sys.stderr)
        return 2
    schedule, generator = NoiseSchedule.from_config(SD15_SCHEDULE), torch.Generator().manual_seed(args.seed)
    modes = [m for m in IMPORTANCE_WEIGHTS if m != "none"]
    print(f"{'d':>6} {'segment':>7} {'mode':>13} {'zero':>6} {'min':>10} {'median':>10} {'max':>10} {'ess':>6}")
    for d in args.dims:
        for segment in range(1, args.steps):  # segment 0 starts at the clean sample, where w = 1
            draws = trainer_like_draws(schedule, d, args.batch, args.steps, segment, generator)
            # the same draws for every mode
            for mode in modes:
                s = weight_statistics(obj.log_importance_weight(schedule, *draws[:5], mode, draws[5]))
                print(f"{d:>6} {segment:>7} {mode:>13} {s['zero']:>6.2f} {s['min']:>10.3g} {s['median']:>10.3g} "
                      f"{s['max']:>10.3g} {s['ess']:>6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
