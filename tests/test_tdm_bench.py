"""The bench's reference layout (methods/tdm/official_layout.py), the official demo script's
pass structure, on CPU with the shipped tiny-sd15 pipeline (a real StableDiffusionPipeline of
3 M parameters, fp32: no autocast, no scaler), and `python -m methods.tdm.bench` end to end.
Runs are 2-3 iterations at batch 2.
"""
import json
import math

import pytest
import torch

from harness.worlds.tiny_sd15.judge import PIPELINE
from methods.common.schedule import NoiseSchedule, x0_to_eps
from methods.tdm import objective as obj
from methods.tdm.bench import main as bench
from methods.tdm.official_layout import measure_official_layout, official_iteration, prepare
from methods.tdm.presets import resolve
from methods.tdm.randomness import BatchRandom, step_generator
from methods.tdm.train import train

pytestmark = pytest.mark.usefixtures("one_thread")

BATCH = 2


def config(out, **overrides):
    settings = {"batch_size": BATCH, "iterations": 2, "checkpoint_every": 0, "export": "false", "tracker": "none",
                "log_every": 1, "output_dir": out, **overrides}
    return resolve("tiny-sd15-4step", [f"{k}={v}" for k, v in settings.items()])


def weights(module) -> dict:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def counting(denoiser, calls: list, role: str) -> None:
    """Record each x0 call of a role: (role, rows, whether grad was on, the cond dict's identity)."""
    x0 = denoiser.x0

    def counted(x_t, t, cond, step_cond=None):
        calls.append((role, len(x_t), torch.is_grad_enabled(), id(cond)))
        return x0(x_t, t, cond, step_cond)
    denoiser.x0 = counted


def test_an_official_iteration_replays_the_scripts_passes_and_trains_only_student_and_fake_score(tmp_path):
    cfg = config(tmp_path / "run")
    setup = prepare(cfg, "cpu")
    roles, modules = setup.roles, setup.backbone.modules
    before = {"student": weights(modules["student"]), "fake_score": weights(modules["fake_score"]),
              "teacher": weights(roles.teacher.model)}
    calls = []
    for role in ("student", "fake_score", "teacher"):
        counting(getattr(roles, role), calls, role)

    losses = []
    for step in range(2):
        rng = BatchRandom(step_generator(cfg.seed, step), BATCH)
        noise, cond, uncond = setup.backbone.batch(rng, step)
        calls.clear()
        losses.append(official_iteration(setup, noise, cond, uncond, rng))

    # The last iteration's passes, in the script's order, each over the whole batch.
    C, U = id(cond), id(uncond)
    assert [c[:3] for c in calls] == (
        [("student", BATCH, False)] * 4                                     # roll-out, no CFG
        + [("student", BATCH, False), ("teacher", BATCH, False), ("fake_score", BATCH, True)]  # fake-score step
        + [("student", BATCH, True), ("teacher", BATCH, False), ("teacher", BATCH, False),
           ("fake_score", BATCH, False)])                                   # generator step
    teacher_conds = [c[3] for c in calls if c[0] == "teacher"]
    assert teacher_conds == [C, C, U]  # two separate teacher passes for CFG, not one batched pass
    assert all(c[3] == C for c in calls if c[0] != "teacher")

    for row in losses:
        assert set(row) == {"fake_score", "student"}
        assert all(math.isfinite(float(v)) and float(v) > 0 for v in row.values())
    for role in ("student", "fake_score"):
        after = weights(modules[role])
        changed = [name for name in after if not torch.equal(after[name], before[role][name])]
        assert len(changed) == len(after), f"{role}: {len(after) - len(changed)} tensors did not move"
    teacher = roles.teacher.model
    assert all(torch.equal(p, before["teacher"][name]) for name, p in teacher.named_parameters())
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())


def test_the_importance_weight_is_the_scripts_per_dimension_ratio():
    """w_IS of the fake-score step, from the script's own terms: with x_mid the student's DDIM step
    to t_mid and x_tau = (a_tau / a_mid) x_mid + beta xi, mixed = ((a_tau / a_mid) s_mid eps_hat + beta xi) / s_tau
    and w = exp(-mean(mixed^2) / 2) / exp(-mean(xi^2) / 2)."""
    schedule = NoiseSchedule.from_config(json.loads((PIPELINE / "scheduler" / "scheduler_config.json").read_text()))
    g = torch.Generator().manual_seed(0)
    x_tk, x0_hat = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g)
    t_k, t_mid, tau = torch.tensor([249, 499, 999]), torch.tensor([0, 250, 750]), torch.tensor([120, 400, 900])
    a_k, s_k = schedule.alpha_sigma(t_k, x_tk)
    eps_hat = x0_to_eps(x_tk, x0_hat, a_k, s_k)
    x_mid = schedule.add_noise(x0_hat, eps_hat, t_mid)
    xi = torch.randn(3, 4, 8, 8, generator=g)
    x_tau = obj.diffuse_from(schedule, x_mid, t_mid, tau, xi)

    a_mid, s_mid = schedule.alpha_sigma(t_mid, x_mid)
    a_tau, s_tau = schedule.alpha_sigma(tau, x_mid)
    beta = (s_tau ** 2 - (a_tau / a_mid * s_mid) ** 2).sqrt()
    mixed = (a_tau / a_mid * s_mid * eps_hat + beta * xi) / s_tau
    script = torch.exp(-0.5 * mixed.flatten(1).square().mean(1)) / torch.exp(-0.5 * xi.flatten(1).square().mean(1))

    ours = obj.importance_weight(schedule, x_tau, x_mid, x0_hat, t_mid, tau, mode="per_dim_mean")
    torch.testing.assert_close(ours, script, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(ours, torch.ones(3))


def test_the_official_layout_costs_more_flops_than_the_project_trainer(tmp_path):
    cfg = config(tmp_path / "run")
    official = measure_official_layout(cfg, "cpu", iterations=2)
    project = train(cfg, "cpu", show_progress=False)

    assert official["iterations"] == 2 and official["timed_iterations"] == 1 and official["batch_size"] == BATCH
    assert official["seconds_per_iteration"] > 0 and official["peak_memory_gib"] is None  # CPU: no CUDA peak
    assert official["ms_per_sample_iteration"] == pytest.approx(1000 * official["seconds_per_iteration"] / BATCH)
    assert official["samples_per_second"] == pytest.approx(BATCH / official["seconds_per_iteration"])
    assert all(math.isfinite(v) for v in official["final_losses"].values())
    # 4 roll-out + 5 fake-score + 6 generator forward-equivalents (a backward counts as two forwards,
    # less the input gradient of the networks' first layers).
    assert 14.0 < official["forward_equivalents_per_sample"] <= 15.0
    assert official["flops_per_iteration"] > project["flops_per_iteration"] > 0
    per_forward = BATCH * official["flops_per_forward_per_sample"]
    assert project["flops_per_iteration"] / per_forward < official["forward_equivalents_per_sample"] - 2


def test_bench_records_both_layouts_and_the_speedup(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench(["--pipeline", str(PIPELINE), "--out", str(out), "--batch-size", str(BATCH), "--iterations", "3",
                  "--device", "cpu", "--peak-tflops", "2.5"]) == 0
    record = json.loads(out.read_text())
    official = record["official_layout"]
    assert record["config"]["backbone"] == "sd15" and record["iterations"] == official["iterations"] == 3
    assert record["batch_size"] == official["batch_size"] == BATCH and official["device"] == "cpu"
    assert record["ms_per_sample_iteration"] == pytest.approx(1000 * record["seconds_per_iteration"] / BATCH)
    assert record["speedup_vs_official"] == pytest.approx(
        official["ms_per_sample_iteration"] / record["ms_per_sample_iteration"])
    assert record["speedup_vs_official"] > 0
    assert record["peak_memory_vs_official"] is None  # no CUDA peak on CPU
    assert official["flops_per_iteration"] > record["flops_per_iteration"] > 0
    assert record["peak_tflops_assumed"] == 2.5
    for run in (record, official):
        assert run["achieved_tflops"] == pytest.approx(run["flops_per_iteration"] / run["seconds_per_iteration"] / 1e12)
        assert run["fraction_of_peak"] == pytest.approx(run["achieved_tflops"] / 2.5)
    assert any("bitsandbytes" in line for line in official["not_reproduced"])
    assert record["provenance"]["commit"]
    table = capsys.readouterr().out.splitlines()[-4:]
    assert table[0].split()[:2] == ["layout", "ms/sample-it"]
    assert table[1].startswith("project") and table[2].startswith("official pass structure")
    assert f"{record['speedup_vs_official']:.2f}x" in table[3]


def test_bench_without_reference_and_bad_input(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench(["--pipeline", str(PIPELINE), "--out", str(out), "--batch-size", str(BATCH), "--iterations", "1",
                  "--device", "cpu", "--no-reference"]) == 0
    record = json.loads(out.read_text())
    assert record["official_layout"] is None and record["speedup_vs_official"] is None
    assert "official pass structure" not in capsys.readouterr().out

    missing = tmp_path / "bad.json"
    assert bench(["--pipeline", str(tmp_path / "nowhere"), "--out", str(missing), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "nowhere" in err and len(err.splitlines()) == 1
    assert not missing.exists()
