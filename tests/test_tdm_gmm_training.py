"""Algorithm 1 end to end on the gmm world: a student initialised from the exact teacher moves
towards the teacher's distribution (sliced Wasserstein distance to true samples).

K = 4 is not covered: with these settings its distance grows (0.14 -> 0.20 in 400 iterations);
see the open trainer issue.
"""
import pytest
import torch

from harness.worlds.gmm import ExactDenoiser, GaussianMixture, ResidualStudent, sd15_schedule, sliced_wasserstein
from methods.common.solvers import sample, trailing_timesteps
from methods.tdm.config import TDMConfig
from methods.tdm.trainer import Roles, train_step

MIXTURE = GaussianMixture.default()
SCHEDULE = sd15_schedule()
TEACHER = ExactDenoiser(MIXTURE, SCHEDULE)


def distance_to_data(student, K, n=4000):
    g = torch.Generator().manual_seed(123)
    labels = torch.randint(0, 2, (n,), generator=g)
    noise = torch.randn(n, 2, generator=g, dtype=torch.float64)
    with torch.no_grad():
        x = sample(SCHEDULE, lambda x_t, t: student.x0(x_t, t, {"class": labels}), noise, trailing_timesteps(K))
    return sliced_wasserstein(x, MIXTURE.sample(labels, g))


@pytest.mark.parametrize("K, factor", [(1, 3.0), (2, 1.5)])
def test_tdm_cuts_the_distance_to_the_teacher_distribution(K, factor):
    torch.manual_seed(0)
    student = ResidualStudent(TEACHER, classes=2).double()
    fake_score = ResidualStudent(TEACHER, classes=2).double()
    cfg = TDMConfig(steps=(K,), guidance=1.0, lr_student=1e-3, lr_fake=1e-3, batch_size=256)
    optimisers = {
        "student": torch.optim.AdamW(student.parameters(), lr=cfg.lr_student, betas=cfg.adam_betas, weight_decay=0),
        "fake_score": torch.optim.AdamW(fake_score.parameters(), lr=cfg.lr_fake, betas=cfg.adam_betas, weight_decay=0),
    }
    roles = Roles(student, fake_score, TEACHER, SCHEDULE)
    before = distance_to_data(student, K)
    g = torch.Generator().manual_seed(1)
    for _ in range(300):
        labels = torch.randint(0, 2, (cfg.batch_size,), generator=g)
        noise = torch.randn(cfg.batch_size, 2, generator=g, dtype=torch.float64)
        train_step(cfg, roles, optimisers, noise, {"class": labels}, None, g, K)
    after = distance_to_data(student, K)
    assert after < before / factor, (before, after)
