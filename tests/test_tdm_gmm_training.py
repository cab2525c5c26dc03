"""Algorithm 1 end to end on the gmm world: a student initialised from the exact teacher moves
towards the teacher's distribution (sliced Wasserstein distance to true samples)."""
import pytest
import torch

from harness.worlds.gmm import ExactDenoiser, GaussianMixture, ResidualStudent, sd15_schedule, sliced_wasserstein
from methods.common.solvers import sample, trailing_timesteps
from methods.tdm.config import TDMConfig
from methods.tdm.randomness import BatchRandom, draw_iteration, step_generator
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


def train(cfg: TDMConfig, iterations: int):
    torch.manual_seed(0)
    student = ResidualStudent(TEACHER, classes=2).double()
    fake_score = ResidualStudent(TEACHER, classes=2).double()
    optimisers = {
        "student": torch.optim.AdamW(student.parameters(), lr=cfg.lr_student, betas=cfg.adam_betas, weight_decay=0),
        "fake_score": torch.optim.AdamW(fake_score.parameters(), lr=cfg.lr_fake, betas=cfg.adam_betas, weight_decay=0),
    }
    roles = Roles(student, fake_score, TEACHER, SCHEDULE)
    for step in range(iterations):
        rng = BatchRandom(step_generator(0, step), cfg.batch_size)
        labels = rng.randint(2)
        noise = rng.randn(2, dtype=torch.float64)
        draws = draw_iteration(rng, cfg.steps[0], cfg.fake_updates, (2,), dtype=torch.float64)
        train_step(cfg, roles, optimisers, noise, {"class": labels}, None, draws, cfg.steps[0])
    return student


FAST = dict(lr_student=1e-3, lr_fake=1e-3, iterations=300)
# K = 4 starts much closer to the data (the exact teacher's 4-step samples: 0.139, against a
# floor of 0.025 between two true samples) and needs the gmm preset's settings: with
# pseudo_huber or one fake step per student step its distance rises before it falls.
GMM_PRESET = dict(loss="kl", fake_updates=5, lr_student=3e-4, lr_fake=1e-3, iterations=1500)


@pytest.mark.parametrize("K, settings, factor", [
    (1, dict(FAST, loss="pseudo_huber"), 3.0),   # 1.17 -> 0.30
    (2, dict(FAST, loss="pseudo_huber"), 1.5),   # 0.54 -> 0.26
    (1, dict(FAST, loss="fisher"), 2.0),
    pytest.param(4, GMM_PRESET, 1.5, marks=pytest.mark.slow),  # 0.139 -> 0.083; 95 s on 2 cores
])
def test_tdm_cuts_the_distance_to_the_teacher_distribution(K, settings, factor):
    settings = dict(settings)
    iterations = settings.pop("iterations")
    cfg = TDMConfig(steps=(K,), guidance=1.0, batch_size=256, **settings)
    before = distance_to_data(ResidualStudent(TEACHER, classes=2).double(), K)
    after = distance_to_data(train(cfg, iterations), K)
    assert after < before / factor, (before, after)
