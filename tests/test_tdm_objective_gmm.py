"""The TDM objective checked against exact answers on Gaussian (gmm-world) distributions."""
import pytest
import torch

from harness.worlds.gmm import sd15_schedule
from methods.tdm import objective as obj

SCHEDULE = sd15_schedule()
DIM = 2


def gaussian_student(n, generator, t_i, mean=(0.5, -0.3), std=0.7):
    """A deterministic one-step student: z ~ N(0, I), x0_hat = mean + std z, and its trajectory
    sample x_i = alpha_i x0_hat + sigma_i z, whose implied noise is z itself (as a DDIM step's
    is), not fresh noise. So (x0_hat, x_i) is not a forward-diffusion pair."""
    z = torch.randn(n, DIM, generator=generator, dtype=torch.float64)
    x0_hat = torch.tensor(mean, dtype=torch.float64) + std * z
    t_i = torch.full((n,), t_i)
    alpha_i, sigma_i = obj._alpha_sigma(SCHEDULE, t_i, x0_hat)
    return x0_hat, alpha_i * x0_hat + sigma_i * z, t_i


def test_interval_bounds_are_the_papers_t_i():
    assert obj.interval_bounds(4) == [obj.CLEAN, 249, 499, 749, 999]
    assert obj.interval_bounds(1) == [obj.CLEAN, 999]


def test_tau_stays_inside_its_interval():
    g = torch.Generator().manual_seed(0)
    lo, hi = torch.full((10000,), 249), torch.full((10000,), 499)
    tau = obj.sample_tau(lo, hi, torch.rand(lo.shape, generator=g))
    assert tau.min() == 249 and tau.max() == 498
    tau0 = obj.sample_tau(torch.full((10000,), obj.CLEAN), torch.full((10000,), 249), torch.rand(10000, generator=g))
    assert tau0.min() == 0 and tau0.max() == 248


@pytest.mark.parametrize("t_i, tau", [(249, 749), (499, 900), (obj.CLEAN, 400)])
def test_exact_importance_weights_are_unbiased(t_i, tau):
    g = torch.Generator().manual_seed(1)
    n = 200_000
    x0_hat, x_i, t_i_ = gaussian_student(n, g, t_i)
    tau_ = torch.full((n,), tau)
    x_tau = obj.diffuse_from(SCHEDULE, x_i, t_i_, tau_, torch.randn(x0_hat.shape, generator=g, dtype=x0_hat.dtype))
    w = obj.importance_weight(SCHEDULE, x_tau, x_i, x0_hat, t_i_, tau_, "exact")
    standard_error = w.std() / n ** 0.5
    assert abs(w.mean() - 1) <= 3 * standard_error, (w.mean(), standard_error)  # clean x_i: w == 1
    assert standard_error < 0.01  # the test has power: a 3% bias would fail


def test_diffuse_from_has_the_marginal_of_direct_diffusion():
    """Diffusing x_i (level t_i) to tau gives the same distribution as diffusing x0_hat to tau."""
    g = torch.Generator().manual_seed(2)
    n = 200_000
    x0_hat = torch.tensor([0.5, -0.3], dtype=torch.float64) + 0.7 * torch.randn(n, DIM, generator=g, dtype=torch.float64)
    t_i, tau = torch.full((n,), 249), torch.full((n,), 749)
    alpha_i, sigma_i = obj._alpha_sigma(SCHEDULE, t_i, x0_hat)
    x_i = alpha_i * x0_hat + sigma_i * torch.randn(x0_hat.shape, generator=g, dtype=x0_hat.dtype)
    x_tau = obj.diffuse_from(SCHEDULE, x_i, t_i, tau, torch.randn(x0_hat.shape, generator=g, dtype=x0_hat.dtype))
    alpha_tau, sigma_tau = SCHEDULE.alpha_sigma(tau[:1], x0_hat)
    expected_var = alpha_tau.item() ** 2 * 0.49 + sigma_tau.item() ** 2
    assert x_tau.var(0).sub(expected_var).abs().max() < 0.01
    torch.testing.assert_close(x_tau.mean(0), alpha_tau.flatten() * torch.tensor([0.5, -0.3], dtype=torch.float64),
                               atol=0.01, rtol=0)


def _fit_linear_fake_score(x_tau, x0_hat, weight):
    """Minimise Eq. 7 over a linear fake score f(x) = a x + b (the true optimum is linear here)."""
    a = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(DIM, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([a, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = obj.fake_score_loss(a * x_tau + b, x0_hat, weight)
        loss.backward()
        return loss

    opt.step(closure)
    return a.detach(), b.detach()


def test_importance_weighted_fake_score_converges_to_the_true_student_score():
    """Trained on x_tau ~ q(.|x_i) with weights, the fake score matches E[x0_hat | x_tau] under
    q(.|x0_hat): the denoiser of the student's distribution, the denoising score-matching
    optimum that the importance weights keep unbiased (Sec. 3.1). Without them it does not."""
    g = torch.Generator().manual_seed(3)
    n, mean, std = 400_000, torch.tensor([0.5, -0.3], dtype=torch.float64), 0.7
    x0_hat, x_i, t_i = gaussian_student(n, g, 249, mean=mean.tolist(), std=std)
    tau = torch.full((n,), 749)
    x_tau = obj.diffuse_from(SCHEDULE, x_i, t_i, tau, torch.randn(x0_hat.shape, generator=g, dtype=x0_hat.dtype))
    alpha, sigma = (v.item() for v in SCHEDULE.alpha_sigma(tau[:1], x0_hat))
    true_a = alpha * std ** 2 / (alpha ** 2 * std ** 2 + sigma ** 2)  # E[x0|x_tau] = mean + a (x_tau - alpha mean)
    true_b = mean - true_a * alpha * mean
    a, b = _fit_linear_fake_score(x_tau, x0_hat, obj.importance_weight(SCHEDULE, x_tau, x_i, x0_hat, t_i, tau, "exact"))
    assert abs(a.item() - true_a) < 0.02 * true_a
    torch.testing.assert_close(b, true_b, atol=0.01, rtol=0)
    a_plain, _ = _fit_linear_fake_score(x_tau, x0_hat, None)
    assert abs(a_plain.item() - true_a) > 0.1 * true_a  # the weights matter


def _kl_gaussians(m1, v1, m2, v2, d=DIM):
    return 0.5 * (d * v1 / v2 + (m2 - m1).square().sum() / v2 - d + d * torch.log(v2 / v1))


def test_generator_gradient_matches_the_analytic_reverse_kl_gradient():
    """With exact real and fake scores, Eq. 6's gradient for a Gaussian generator x = mu + s z is
    parallel to the gradient of KL(p_theta,tau || p_phi,tau) (cosine >= 0.99), at several tau."""
    g = torch.Generator().manual_seed(4)
    mu_phi, s_phi = torch.tensor([1.0, 2.0], dtype=torch.float64), 0.5
    for tau_value in (100, 400, 800):
        mu = torch.tensor([0.2, -0.4], dtype=torch.float64, requires_grad=True)
        log_s = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
        alpha, sigma = (v.item() for v in SCHEDULE.alpha_sigma(torch.tensor([tau_value]), mu_phi[None]))
        kl = _kl_gaussians(alpha * mu, alpha ** 2 * log_s.exp() ** 2 + sigma ** 2,
                           alpha * mu_phi, torch.tensor(alpha ** 2 * s_phi ** 2 + sigma ** 2, dtype=torch.float64))
        analytic = torch.cat([t.flatten() for t in torch.autograd.grad(kl, [mu, log_s])])

        n = 400_000
        x = mu + log_s.exp() * torch.randn(n, DIM, generator=g, dtype=torch.float64)  # the generator's output
        x_tau = alpha * x.detach() + sigma * torch.randn(n, DIM, generator=g, dtype=torch.float64)
        x0_real = _gaussian_denoiser(x_tau, mu_phi, s_phi, alpha, sigma)
        x0_fake = _gaussian_denoiser(x_tau, mu.detach(), log_s.exp().item(), alpha, sigma)
        loss = obj.reverse_kl_loss(x, obj.score_difference(x0_real, x0_fake))
        estimate = torch.cat([t.flatten() for t in torch.autograd.grad(loss, [mu, log_s])])
        cosine = torch.nn.functional.cosine_similarity(estimate, analytic, dim=0)
        assert cosine >= 0.99, (tau_value, estimate, analytic)


def _gaussian_denoiser(x_tau, mean, std, alpha, sigma):
    gain = alpha * std ** 2 / (alpha ** 2 * std ** 2 + sigma ** 2)
    return mean + gain * (x_tau - alpha * mean)


def test_pseudo_huber_gradient_is_the_normalised_score_difference():
    x = torch.randn(3, 4, 8, 8, dtype=torch.float64, requires_grad=True)
    delta = torch.randn(3, 4, 8, 8, dtype=torch.float64)
    c = obj.pseudo_huber_c(4 * 8 * 8)
    assert c == pytest.approx(0.00054 * 16)
    (grad,) = torch.autograd.grad(obj.pseudo_huber_loss(x, delta) * 3, x)
    norm = (delta.flatten(1).square().sum(1) + c ** 2).sqrt().view(-1, 1, 1, 1)
    torch.testing.assert_close(grad, -delta / norm)
    (grad_kl,) = torch.autograd.grad(obj.reverse_kl_loss(x, delta) * 3, x)
    torch.testing.assert_close(grad_kl, -delta)
