"""The fake-score loss's importance weights at image dimensions (Sec. 3.1; methods/tdm/importance.py)."""
import pytest
import torch

from methods.common.schedule import NoiseSchedule
from methods.tdm import objective as obj
from methods.tdm.config import TDMConfig
from methods.tdm.importance import SD15_SCHEDULE, main, trainer_like_draws, weight_statistics

SCHEDULE = NoiseSchedule.from_config(SD15_SCHEDULE)


def _weight(draws, mode, log=False):
    """The weight (or its log) of trainer-like draws (x_tau, x_i, x0_hat, t_i, tau, noise)."""
    return (obj.log_importance_weight if log else obj.importance_weight)(SCHEDULE, *draws[:5], mode, draws[5])


def _draws(d, segment, seed=0, n=64):
    return trainer_like_draws(SCHEDULE, d, n, 4, segment, torch.Generator().manual_seed(seed))


def test_the_default_mode_is_the_one_that_works_at_image_dimensions():
    assert TDMConfig().importance_weights == "per_dim_mean"


@pytest.mark.parametrize("d", [1024, 16384])  # tiny-sd15's latents; SD-1.5's and PixArt's at 512 px
@pytest.mark.parametrize("segment", [1, 2, 3])
def test_default_weights_are_finite_of_order_one_and_not_all_equal(d, segment):
    w = _weight(_draws(d, segment), TDMConfig().importance_weights)
    assert torch.isfinite(w).all()
    assert w.min() > 0.3 and w.max() < 3.0, (w.min(), w.max())
    assert w.std() > 1e-3  # still a weight, not a constant


@pytest.mark.parametrize("d", [1024, 16384])
def test_the_exact_weights_are_degenerate_there(d):
    """Why "exact" is not the default: one sample carries nearly all the weight, most underflow."""
    log_w = _weight(_draws(d, 2), "exact", log=True)
    stats = weight_statistics(log_w)
    assert stats["ess"] < 0.05 and stats["zero"] > 0.5, stats
    assert torch.isfinite(log_w).all()  # computed in log space: the logs themselves are fine


def test_weights_keep_float64_and_upcast_bf16():
    draws = _draws(1024, 1)
    assert _weight([v.double() if v.is_floating_point() else v for v in draws], "per_dim_mean").dtype == torch.float64
    bf16 = [v.bfloat16() if v.is_floating_point() else v for v in draws]
    assert _weight(bf16, "per_dim_mean").dtype == torch.float32


def test_the_statistics_command_prints_every_mode(capsys):
    assert main(["--dims", "2", "64", "--batch", "16"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + 2 * 3 * 2  # header, then 2 dims x 3 segments x 2 modes
    assert main(["--dims", "0"]) == 2
