"""The official script's recipe as config values (`presets.OFFICIAL_SCRIPT`) computes what the
script computes.

`Script` below is an independent re-implementation of one iteration of train_tdm_demo.py
(Luo-Yihong/TDM, with its README's --use_huber --use_separate), written from the script's
equations, not from methods/tdm: its own roll-out, segments, x_mid, importance weight, Min-SNR
weight, target and loss. On identical networks, noise and uniform draws, in float64, the
trainer under the recipe must agree with it to 1e-5 (relative) in the tau ranges, the
fake-score loss, the generator's loss and gradient, and the weights after a whole iteration
(both AdamW steps, weight decay, the generator's clipping and the fake score's none).
"""
import copy
import json

import pytest
import torch

from methods.common.schedule import NoiseSchedule
from methods.tdm import objective as obj
from methods.tdm.config import TDMConfig
from methods.tdm.presets import OFFICIAL_SCRIPT, resolve
from methods.tdm.randomness import IterationDraws
from methods.tdm.trainer import Roles, StepOptions, fake_score_step, generator_step, segment_sample, train_step
from methods.tdm.trajectory import rollout_segments

T, K, CFG = 1000, 4, 4.5
N, SHAPE = 12, (4, 8, 8)
TOL = dict(rtol=1e-5, atol=1e-10)
# PixArt-alpha's DDPM schedule (linear betas 1e-4 to 0.02), as the script's scheduler.
ALPHAS_CUMPROD = torch.cumprod(1 - torch.linspace(1e-4, 0.02, T, dtype=torch.float64), 0)


class Net(torch.nn.Module):
    """A small smooth x0-predictor, conditioned on t and a per-row prompt value."""

    def __init__(self, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        C = SHAPE[0]
        self.w = torch.nn.Parameter(torch.eye(C, dtype=torch.float64) + 0.2 * torch.randn(C, C, generator=g,
                                                                                      dtype=torch.float64))
        self.b = torch.nn.Parameter(0.3 * torch.randn(C, generator=g, dtype=torch.float64))

    def x0(self, x, t, cond, step_cond=None):
        scale = (1 - t.to(x.dtype) / (2 * T)).view(-1, 1, 1, 1)
        h = torch.einsum("oc,nchw->nohw", self.w, x) * scale + self.b.view(1, -1, 1, 1) * cond["c"]
        return torch.tanh(h)


def _ab(t):
    """alpha_t, sigma_t for integer timesteps t (n,), shaped (n, 1, 1, 1)."""
    ac = ALPHAS_CUMPROD[t].view(-1, 1, 1, 1)
    return ac.sqrt(), (1 - ac).sqrt()


class Script:
    """One iteration of the script, from its equations. Segments k in 1..K, t_g = kT/4 - 1."""

    def __init__(self, G, F, R):
        self.G, self.F, self.R = G, F, R

    def rollout(self, noise, cond):
        """generate_new: four DDIM steps (eta 0) from T - 1, no CFG; states[k] = x_{t_g(k)}."""
        states, x = {}, noise
        with torch.no_grad():
            for k in range(K, 0, -1):
                t_g = torch.full((len(x),), k * T // K - 1)
                states[k] = x
                x0 = self.G.x0(x, t_g, cond)
                a, s = _ab(t_g)
                eps = (x - a * x0) / s
                if k > 1:
                    a_next, s_next = _ab(t_g - T // K)
                    x = a_next * x0 + s_next * eps
        return states

    @staticmethod
    def tau_range(k):
        t_g = k * T // K - 1
        t_mid = t_g - T // K + 1
        return t_mid.clamp(min=20), t_g - 10

    def segment(self, states, k, u, xi, cond):
        """x0_hat = G(x_{t_g}, t_g) (with grad where enabled), eps_hat, x_mid at t_mid, tau and x_tau."""
        rows = torch.arange(len(k))
        x_tg = torch.stack([states[int(k[i])][i] for i in rows])
        t_g = k * T // K - 1
        t_mid = t_g - T // K + 1
        lo, hi = self.tau_range(k)
        tau = lo + (u * (hi - lo)).long()  # a uniform integer in [lo, hi), as torch.randint(lo, hi)
        x0 = self.G.x0(x_tg, t_g, cond)
        a_g, s_g = _ab(t_g)
        eps = (x_tg - a_g * x0) / s_g
        a_mid, s_mid = _ab(t_mid)
        a_tau, s_tau = _ab(tau)
        x_mid = a_mid * x0 + s_mid * eps
        beta = (s_tau ** 2 - (a_tau / a_mid * s_mid) ** 2).sqrt()
        x_tau = x_mid / a_mid * a_tau + beta * xi
        mixed = (eps / a_mid * a_tau * s_mid + beta * xi) / s_tau
        return x0, x_tau.detach(), tau, mixed.detach()

    def fake_loss(self, states, k, u, xi, cond):
        with torch.no_grad():
            x0, x_tau, tau, mixed = self.segment(states, k, u, xi, cond)
        is_weight = torch.exp(-0.5 * mixed.square().flatten(1).mean(1)) / torch.exp(-0.5 * xi.square().flatten(1).mean(1))
        a, s = _ab(tau)
        snr = (a.flatten() / s.flatten()) ** 2
        snr = torch.minimum(snr, torch.full_like(snr, 5.0))
        per_sample = (self.F.x0(x_tau, tau, cond) - x0).square().flatten(1).mean(1)
        return (per_sample * snr * is_weight).mean()

    def generator_loss(self, states, k, u, xi, cond, uncond):
        x0, x_tau, tau, _ = self.segment(states, k, u, xi, cond)
        with torch.no_grad():
            r_c, r_u = self.R.x0(x_tau, tau, cond), self.R.x0(x_tau, tau, uncond)
            f_c = self.F.x0(x_tau, tau, cond)
            target = x0.detach() + (r_c - f_c) + (CFG - 1) * (r_c - r_u)
            r_cfg = r_c + (CFG - 1) * (r_c - r_u)
            normaliser = (x0.double() - r_cfg.double()).abs().mean(dim=[1, 2, 3], keepdim=True)
        c = 1e-3
        return torch.mean((torch.sqrt((x0 - target) ** 2 + c ** 2) - c) / normaliser)


def _world(seed=0):
    g = torch.Generator().manual_seed(seed)
    student, fake, teacher = Net(1), Net(2), Net(3)
    fake.load_state_dict(student.state_dict())  # both start from the teacher's weights in TDM; any weights do here
    teacher.requires_grad_(False)
    noise = torch.randn(N, *SHAPE, generator=g, dtype=torch.float64)
    cond, uncond = {"c": torch.rand(N, 1, 1, 1, generator=g, dtype=torch.float64) + 0.5}, {"c": torch.zeros(N, 1, 1, 1,
                                                                                               dtype=torch.float64)}
    draws = dict(k_fake=torch.randint(1, K + 1, (N,), generator=g), k_gen=torch.randint(1, K + 1, (N,), generator=g),
                 u_fake=torch.rand(N, generator=g, dtype=torch.float64),
                 u_gen=torch.rand(N, generator=g, dtype=torch.float64),
                 xi_fake=torch.randn(N, *SHAPE, generator=g, dtype=torch.float64),
                 xi_gen=torch.randn(N, *SHAPE, generator=g, dtype=torch.float64))
    return student, fake, teacher, noise, cond, uncond, draws


def _config() -> TDMConfig:
    return TDMConfig(**{**OFFICIAL_SCRIPT, "steps": (K,), "guidance": CFG, "lr_student": 1e-3, "lr_fake": 1e-2,
                        "batch_size": N, "num_train_timesteps": T})


def _trainer_states(roles, noise, cond, d):
    m_fake, m_gen = d["k_fake"] - 1, d["k_gen"] - 1  # the trainer's segment m = k - 1 ends at b_m, starts at b_{m+1}
    return rollout_segments(roles.student, roles.schedule, noise, cond, K, [m_fake, m_gen], "ddim", None, T)


def test_tau_ranges_are_the_scripts():
    cfg = _config()
    bounds = torch.tensor(obj.interval_bounds(K, T))
    for k in range(1, K + 1):
        m = torch.tensor([k - 1])
        t_mid = bounds[m] + 1  # trajectory.script_level's level (0 for the last segment)
        lo, hi = obj.tau_range(cfg.interval, t_mid, bounds[m + 1], T)
        ref_lo, ref_hi = Script.tau_range(torch.tensor([k]))
        assert (int(lo), int(hi)) == (int(ref_lo), int(ref_hi)), k
    assert [int(v) for v in Script.tau_range(torch.arange(1, K + 1))[0]] == [20, 250, 500, 750]


def test_fake_score_loss_and_generator_gradient_match_the_script_in_float64():
    student, fake, teacher, noise, cond, uncond, d = _world()
    cfg = _config()
    roles = Roles(student, fake, teacher, NoiseSchedule(ALPHAS_CUMPROD))
    script = Script(student, fake, teacher)
    states = script.rollout(noise, cond)
    fake_state, gen_state = _trainer_states(roles, noise, cond, d)
    for k in range(1, K + 1):  # the roll-out visits the same states
        rows = d["k_fake"] == k
        torch.testing.assert_close(fake_state.x_start[rows], states[k][rows], **TOL)

    with torch.no_grad():
        sample = segment_sample(cfg, roles, fake_state, cond, None)
    ours = fake_score_step(cfg, roles, sample, cond, None, d["u_fake"], d["xi_fake"])
    theirs = script.fake_loss(states, d["k_fake"], d["u_fake"], d["xi_fake"], cond)
    torch.testing.assert_close(ours, theirs, **TOL)

    sample = segment_sample(cfg, roles, gen_state, cond, None)
    ours = generator_step(cfg, roles, sample, cond, uncond, None, d["u_gen"], d["xi_gen"])
    grad_ours = torch.autograd.grad(ours, list(student.parameters()))
    theirs = script.generator_loss(states, d["k_gen"], d["u_gen"], d["xi_gen"], cond, uncond)
    grad_theirs = torch.autograd.grad(theirs, list(student.parameters()))
    torch.testing.assert_close(ours, theirs, **TOL)
    for a, b in zip(grad_ours, grad_theirs):
        assert b.abs().max() > 1e-6  # a gradient that says something
        torch.testing.assert_close(a, b, **TOL)


def test_a_whole_iteration_matches_the_scripts_updates_in_float64():
    """train_step (fresh generator segment, no clipping of the fake score, weight decay) against the
    script's order: fake-score loss, AdamW step; then generator loss with the updated fake score,
    clip to norm 1, AdamW step. The script's 8-bit AdamW is plain AdamW in both."""
    student, fake, teacher, noise, cond, uncond, d = _world(1)
    cfg = _config()
    ref_student, ref_fake = copy.deepcopy(student), copy.deepcopy(fake)

    def adamw(net, lr):
        return torch.optim.AdamW(net.parameters(), lr=lr, betas=cfg.adam_betas, weight_decay=cfg.weight_decay)

    roles = Roles(student, fake, teacher, NoiseSchedule(ALPHAS_CUMPROD))
    draws = IterationDraws(d["k_fake"] - 1, d["k_fake"] - 1, int(min(d["k_fake"].min(), d["k_gen"].min())) - 1,
                           [(d["u_fake"], d["xi_fake"])], (d["u_gen"], d["xi_gen"]), d["k_gen"] - 1, d["k_gen"] - 1)
    optimisers = {"student": adamw(student, cfg.lr_student), "fake_score": adamw(fake, cfg.lr_fake)}
    losses = train_step(cfg, roles, optimisers, noise, cond, uncond, draws, K, None, None,
                        StepOptions(rollout="per_row"))

    script = Script(ref_student, ref_fake, teacher)
    states = script.rollout(noise, cond)
    opt_g, opt_f = adamw(ref_student, cfg.lr_student), adamw(ref_fake, cfg.lr_fake)
    loss_f = script.fake_loss(states, d["k_fake"], d["u_fake"], d["xi_fake"], cond)
    loss_f.backward()
    opt_f.step()  # no clipping
    loss_g = script.generator_loss(states, d["k_gen"], d["u_gen"], d["xi_gen"], cond, uncond)
    loss_g.backward()
    norm = torch.nn.utils.clip_grad_norm_(ref_student.parameters(), 1.0)
    opt_g.step()

    torch.testing.assert_close(losses["fake_score"], loss_f.detach(), **TOL)
    torch.testing.assert_close(losses["student"], loss_g.detach(), **TOL)
    for a, b in [*zip(fake.parameters(), ref_fake.parameters()), *zip(student.parameters(), ref_student.parameters())]:
        torch.testing.assert_close(a, b, **TOL)
    assert float(norm) > 0


def test_fake_score_clipping_and_weight_decay_are_what_the_config_says():
    """Against the defaults (clip both networks, no decay) the recipe's fake score moves differently."""
    student, fake, teacher, noise, cond, uncond, d = _world(2)
    results = {}
    for name, extra in {"recipe": {}, "clip fake": {"grad_clip_fake": 1e-3}, "no decay": {"weight_decay": 0.0}}.items():
        s, f = copy.deepcopy(student), copy.deepcopy(fake)
        cfg = TDMConfig(**{**OFFICIAL_SCRIPT, "steps": (K,), "guidance": CFG, "batch_size": N, "lr_fake": 1e-2, **extra})
        roles = Roles(s, f, teacher, NoiseSchedule(ALPHAS_CUMPROD))
        draws = IterationDraws(d["k_fake"] - 1, d["k_fake"] - 1, 0, [(d["u_fake"], d["xi_fake"])],
                               (d["u_gen"], d["xi_gen"]), d["k_gen"] - 1, d["k_gen"] - 1)
        optimisers = {"student": torch.optim.SGD(s.parameters(), lr=0.0),
                      "fake_score": torch.optim.AdamW(f.parameters(), lr=cfg.lr_fake, weight_decay=cfg.weight_decay)}
        train_step(cfg, roles, optimisers, noise, cond, uncond, draws, K)
        results[name] = torch.cat([p.detach().flatten() for p in f.parameters()])
    assert not torch.allclose(results["recipe"], results["clip fake"], rtol=0, atol=1e-9)
    assert not torch.allclose(results["recipe"], results["no decay"], rtol=0, atol=1e-9)


def test_the_per_dim_mean_weight_at_tau_equal_to_the_samples_level_is_the_scripts():
    """At tau = t_mid the diffusion adds no noise (beta = 0): the script's weight is then
    exp(-mean(eps_hat^2) / 2) / exp(-mean(xi^2) / 2), with the xi it drew, not 0 / 0."""
    g = torch.Generator().manual_seed(3)
    schedule = NoiseSchedule(ALPHAS_CUMPROD)
    x0_hat, eps_hat, xi = (torch.randn(N, *SHAPE, generator=g, dtype=torch.float64) for _ in range(3))
    t = torch.full((N,), 500)
    a, s = _ab(t)
    x_mid = a * x0_hat + s * eps_hat
    x_tau = obj.diffuse_from(schedule, x_mid, t, t, xi)
    torch.testing.assert_close(x_tau, x_mid)
    w = obj.importance_weight(schedule, x_tau, x_mid, x0_hat, t, t, "per_dim_mean", xi)
    expected = torch.exp(-0.5 * eps_hat.square().flatten(1).mean(1)) / torch.exp(-0.5 * xi.square().flatten(1).mean(1))
    torch.testing.assert_close(w, expected, **TOL)


def test_both_official_script_presets_carry_the_whole_recipe():
    for preset in ("pixart-official-script", "tiny-sd15-official-script"):
        method = resolve(preset).method
        for key, value in OFFICIAL_SCRIPT.items():
            assert getattr(method, key) == value, (preset, key)
    assert resolve("pixart-official-script").method.lr_student == pytest.approx(2e-5 / 5)


@pytest.mark.usefixtures("one_thread")
def test_the_generators_schedule_warms_up_from_zero_and_resumes(tmp_path):
    """cosine_with_restarts with 50 warm-up iterations: lr_i = lr i / 50 for i < 50, saved with the
    checkpoints, so a run resumed at 3 ends where an uninterrupted one does."""
    from methods.tdm.train import train

    common = {"iterations": 5, "batch_size": 16, "checkpoint_every": 3, "keep_checkpoints": 5, "export": False}
    whole = resolve("gmm-official-script", {**common, "output_dir": str(tmp_path / "whole")})
    train(whole, "cpu", show_progress=False)
    state = torch.load(tmp_path / "whole" / "checkpoints" / "step-000005" / "custom_checkpoint_0.pkl",
                       weights_only=False)  # accelerate saves registered objects with torch.save
    assert state["last_epoch"] == 5
    assert state["_last_lr"][0] == pytest.approx(whole.method.lr_student * 5 / 50, rel=1e-12)
    for name in ("optimizer.bin", "optimizer_1.bin"):  # the student's, the fake score's
        group = torch.load(tmp_path / "whole" / "checkpoints" / "step-000005" / name)["param_groups"][0]
        assert (group["weight_decay"], tuple(group["betas"])) == (1e-2, (0.0, 0.95)), name

    parts = resolve("gmm-official-script", {**common, "iterations": 3, "output_dir": str(tmp_path / "parts")})
    train(parts, "cpu", show_progress=False)
    train(resolve("gmm-official-script", {**common, "output_dir": str(tmp_path / "parts")}), "cpu",
          show_progress=False)
    last = lambda run: json.loads((tmp_path / run / "losses.jsonl").read_text().splitlines()[-1])  # noqa: E731
    assert last("parts") == last("whole")
