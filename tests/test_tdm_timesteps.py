"""Explicit student timesteps (TDMConfig.timesteps), on CPU.

- empty, every bound is today's b_k = kT/K - 1, bit for bit;
- given, the roll-out and the step with gradient visit exactly those timesteps (a spy on the
  denoiser's t), and the segments' tau intervals (paper, wide, script) follow their bounds;
- a bad list is a one-line error; the command line's key=value parses it;
- the official script's layout (the bench) rolls out on them too;
- the `cogvideox-2b` preset trains a tiny CogVideoX on [999, 856, 665, 399] and its export
  samples on the same 4 timesteps; an SD-1.5 export samples on them with DPM-Solver++.
"""
import json
from types import SimpleNamespace

import pytest
import torch

import methods.tdm.train as train_module
from harness.worlds.gmm import ExactDenoiser, GaussianMixture, ResidualStudent, sd15_schedule
from methods.common.errors import UserError
from methods.common.solvers import ddim_step, trailing_timesteps
from methods.tdm import objective as obj
from methods.tdm.config import ALLOWED_STEPS, TDMConfig, TrainConfig
from methods.tdm.presets import resolve
from methods.tdm.randomness import BatchRandom, draw_iteration, step_generator
from methods.tdm.trainer import Roles, StepOptions, train_step
from methods.tdm.trajectory import bounds_table, rollout_segments, segment_step, student_trajectory

pytestmark = pytest.mark.usefixtures("one_thread")

RELEASED = (999, 856, 665, 399)  # Luo-Yihong/TDM_CogVideoX-2B_LoRA's, the cogvideox-2b preset's
SCHEDULE = sd15_schedule()
MIXTURE = GaussianMixture.default()


class Spy:
    """A denoiser that records the t of every call (one list per call, row order kept)."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def x0(self, x, t, cond, step_cond=None):
        self.calls.append(t.tolist())
        return self.inner.x0(x, t, cond, step_cond)

    def seen(self) -> set[int]:
        return {t for call in self.calls for t in call}


class Smooth:
    """A row-wise stand-in student."""

    def x0(self, x, t, cond, step_cond=None):
        return torch.tanh(x * (1 + t.float().view(-1, *[1] * (x.dim() - 1)) / 1000))


# --- the bounds --------------------------------------------------------------------------------------


@pytest.mark.parametrize("T", [1000, 900, 64])
def test_empty_timesteps_give_todays_bounds_bit_for_bit(T):
    for K in ALLOWED_STEPS:
        if T < 8 * K:
            continue
        today = [obj.CLEAN] + [round(T * i / K) - 1 for i in range(1, K + 1)]  # the formula before the setting
        assert obj.interval_bounds(K, T) == obj.interval_bounds(K, T, ()) == today
        assert obj.student_timesteps(K, T) == trailing_timesteps(K, T) == today[:0:-1]
        table = bounds_table(K, T, "cpu")
        assert table.dtype == torch.long and torch.equal(table, torch.tensor(today))
        assert bounds_table(K, T, "cpu", ()) is table  # one cached table: a captured graph never copies it
    assert obj.interval_bounds(4) == [obj.CLEAN, 249, 499, 749, 999]


def test_explicit_timesteps_are_the_bounds():
    assert obj.interval_bounds(4, 1000, RELEASED) == [obj.CLEAN, 399, 665, 856, 999]
    assert obj.student_timesteps(4, 1000, RELEASED) == list(RELEASED)
    table = bounds_table(4, 1000, "cpu", RELEASED)
    assert table.tolist() == [obj.CLEAN, 399, 665, 856, 999]
    assert table is not bounds_table(4, 1000, "cpu") and bounds_table(4, 1000, "cpu", RELEASED) is table
    assert obj.interval_bounds(1, 1000, (500,)) == [obj.CLEAN, 500]


# --- the roll-out and the segment step ------------------------------------------------------------------


@pytest.mark.parametrize("solver", ["ddim", "dpmpp"])
@pytest.mark.parametrize("per_row", [False, True])
def test_the_rollout_visits_exactly_the_given_timesteps(solver, per_row):
    K, n = 4, 16
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(n, 3, generator=g)
    m = torch.arange(n) % K
    bounds = [obj.CLEAN, 399, 665, 856, 999]
    student = Spy(Smooth())
    state = rollout_segments(student, SCHEDULE, noise, {}, K, [m], solver, m_hosts=[m] if per_row else None,
                             timesteps=RELEASED)[0]
    assert [set(call) for call in student.calls] == [{999}, {856}, {665}]  # b_4 -> b_3 -> b_2 -> b_1
    if per_row:  # each step runs the rows whose segment lies below it
        assert [len(call) for call in student.calls] == [int((m <= j - 2).sum()) for j in range(K, 1, -1)]
    assert state.timesteps == RELEASED
    student.calls.clear()
    sample = segment_step(student, SCHEDULE, state, {}, solver)
    assert student.calls == [[bounds[int(k) + 1] for k in m]]  # the step with gradient starts at b_{m+1}
    assert sample.t_i.tolist() == [bounds[int(k)] for k in m] and sample.t_next.tolist() == student.calls[0]
    # A row with m = 0 went 999 -> 856 -> 665 -> 399 -> clean by DDIM (the first step is DDIM for both solvers).
    if solver == "ddim":
        x = noise[:1]
        for t, t_next in zip(RELEASED, (*RELEASED[1:], None)):
            x0 = Smooth().x0(x, torch.full((1,), t), {})
            x = x0 if t_next is None else ddim_step(SCHEDULE, x, x0, t, t_next)
        torch.testing.assert_close(sample.x_i[:1], x, rtol=0, atol=1e-6)
    torch.testing.assert_close(state.rows(slice(0, 4)).x_start, state.x_start[:4])
    assert state.rows(slice(0, 4)).timesteps == RELEASED


def test_student_trajectory_takes_the_timesteps_and_empty_is_todays():
    K, n = 4, 8
    noise, m = torch.randn(n, 2, generator=torch.Generator().manual_seed(1)), torch.arange(8) % 4
    explicit, uniform = Spy(Smooth()), Spy(Smooth())
    student_trajectory(explicit, SCHEDULE, noise, {}, K, m, timesteps=RELEASED)
    today = student_trajectory(uniform, SCHEDULE, noise, {}, K, m)
    same = student_trajectory(Smooth(), SCHEDULE, noise, {}, K, m, timesteps=())
    assert explicit.seen() == set(RELEASED) and uniform.seen() == {999, 749, 499, 249}
    assert torch.equal(same.x_i, today.x_i) and torch.equal(same.t_i, today.t_i)


# --- the trainer: roll-out, segments and tau intervals follow the bounds ----------------------------------


def _gmm_roles():
    teacher = ExactDenoiser(MIXTURE, SCHEDULE)
    torch.manual_seed(0)
    student, fake = ResidualStudent(teacher, classes=2).double(), ResidualStudent(teacher, classes=2).double()
    optimisers = {"student": torch.optim.AdamW(student.parameters(), lr=1e-4),
                  "fake_score": torch.optim.AdamW(fake.parameters(), lr=1e-4)}
    return Roles(Spy(student), Spy(fake), Spy(teacher), SCHEDULE), optimisers


def _expected_tau_range(interval, b_m, b_next, T=1000):
    if interval == "paper":
        return max(b_m, 0), b_next
    if interval == "wide":
        return max(b_m, 0), T
    return max(20, b_m + 1), b_next - 10  # script: x_i at t_mid = b_m + 1


@pytest.mark.parametrize("interval, per_row", [("paper", False), ("paper", True), ("wide", False), ("script", False)])
def test_a_training_step_visits_the_timesteps_and_draws_tau_in_their_intervals(interval, per_row):
    cfg = TDMConfig(steps=(4,), timesteps=RELEASED, interval=interval, guidance=1.0, batch_size=64)
    roles, optimisers = _gmm_roles()
    rng = BatchRandom(step_generator(0, 0), cfg.batch_size)
    labels, noise = rng.randint(2), rng.randn(2, dtype=torch.float64)
    draws = draw_iteration(rng, 4, cfg.fake_updates, (2,), dtype=torch.float64)
    assert set(draws.m.tolist()) == {0, 1, 2, 3}
    train_step(cfg, roles, optimisers, noise, {"class": labels}, None, draws, 4,
               options=StepOptions(rollout="per_row" if per_row else "every_row"))
    assert roles.student.seen() == set(RELEASED)  # roll-out and the step with gradient: only these
    bounds = [obj.CLEAN, 399, 665, 856, 999]
    for call in roles.fake_score.calls:  # the fake-score update, then the generator's (no grad)
        for m, tau in zip(draws.m.tolist(), call):
            lo, hi = _expected_tau_range(interval, bounds[m], bounds[m + 1])
            assert lo <= tau < hi, (interval, m, tau)
    assert roles.teacher.calls and all(call == roles.fake_score.calls[-1] for call in roles.teacher.calls)


@pytest.mark.parametrize("solver", ["ddim", "dpmpp"])
def test_listing_the_uniform_timesteps_is_the_default_bit_for_bit(solver):
    """timesteps=(999, 749, 499, 249) computes exactly what timesteps=() does (b_k = kT/K - 1):
    the same losses and weights after a training step, and the same student calls."""
    results = []
    for timesteps in ((), (999, 749, 499, 249)):
        cfg = TDMConfig(steps=(4,), solver=solver, guidance=1.0, batch_size=32, timesteps=timesteps)
        roles, optimisers = _gmm_roles()
        rng = BatchRandom(step_generator(0, 0), cfg.batch_size)
        labels, noise = rng.randint(2), rng.randn(2, dtype=torch.float64)
        draws = draw_iteration(rng, 4, cfg.fake_updates, (2,), dtype=torch.float64)
        losses = train_step(cfg, roles, optimisers, noise, {"class": labels}, None, draws, 4)
        results.append((losses, roles.student.inner.state_dict(), roles.student.seen()))
    (a, wa, seen), (b, wb, seen_listed) = results
    assert seen == seen_listed == {999, 749, 499, 249}
    assert all(torch.equal(a[k], b[k]) for k in a) and all(torch.equal(v, wb[k]) for k, v in wa.items())


# --- validation and the command line ---------------------------------------------------------------------


BAD = {  # name -> (TDMConfig settings, words of the one-line message)
    "not decreasing": (dict(timesteps=(999, 665, 856, 399)), ["strictly decreasing", "999, 665, 856, 399"]),
    "repeated": (dict(timesteps=(999, 856, 856, 399)), ["strictly decreasing"]),
    "too few": (dict(timesteps=(999, 665, 399)), ["3 student timesteps", "K = 4"]),
    "too many": (dict(steps=(2,), timesteps=(999, 665, 399)), ["3 student timesteps", "K = 2"]),
    "at T": (dict(timesteps=(1000, 856, 665, 399)), ["[1, 999]", "T = num_train_timesteps = 1000"]),
    "beyond a smaller T": (dict(num_train_timesteps=900, timesteps=RELEASED), ["[1, 899]"]),
    "down to 0": (dict(timesteps=(999, 665, 399, 0)), ["[1, 999]"]),
    "negative": (dict(timesteps=(999, 665, 399, -1)), ["[1, 999]"]),
    "unify": (dict(steps=(1, 2, 4), timesteps=RELEASED), ["TDM-unify", "steps=[1, 2, 4]", "timesteps=()"]),
    "not integers": (dict(timesteps=(999.0, 856, 665, 399)), ["integers"]),
    "script interval too tight": (dict(interval="script", timesteps=(999, 856, 665, 25)),
                                  ["segment 0", "empty", "interval='script'"]),
    "script gap too small": (dict(interval="script", timesteps=(999, 856, 410, 399)), ["segment 1", "[400, 400)"]),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_timesteps_are_one_line_errors(name):
    settings, words = BAD[name]
    with pytest.raises(ValueError) as err:
        TDMConfig(**settings)
    message = str(err.value)
    assert "\n" not in message and all(word in message for word in words), (words, message)


def test_good_timesteps_are_accepted_and_stored_as_a_tuple():
    assert TDMConfig(timesteps=[999, 856, 665, 399]).timesteps == RELEASED  # a list from Python code
    assert TDMConfig(steps=(1,), timesteps=(999,)).timesteps == (999,)
    assert TDMConfig(timesteps=(899, 674, 449, 224)).timesteps == (899, 674, 449, 224)  # the script's T = 900 list
    assert TDMConfig(timesteps=(999, 856, 665, 1)).timesteps[-1] == 1
    assert TDMConfig(interval="script", timesteps=RELEASED).timesteps == RELEASED
    assert TDMConfig(steps=(1, 2, 4)).timesteps == ()  # unify without timesteps is as before


def test_gmm_refuses_explicit_timesteps():
    with pytest.raises(ValueError, match=r"backbone=gmm.*evaluate\.py.*timesteps=\(\)"):
        TrainConfig(backbone="gmm", method=TDMConfig(timesteps=RELEASED))


def test_the_command_line_parses_timesteps(tmp_path, capsys):
    assert resolve("tiny-sd15-4step", ["timesteps=999,856,665,399"]).method.timesteps == RELEASED
    assert resolve("tiny-sd15-4step", ["timesteps=[999, 856, 665, 399]"]).method.timesteps == RELEASED
    assert resolve("tiny-sd15-4step", ["timesteps=(999,856,665,399)"]).method.timesteps == RELEASED
    assert resolve("cogvideox-2b").method.timesteps == RELEASED
    assert resolve("cogvideox-2b", ["timesteps="]).method.timesteps == ()  # back to b_k = kT/K - 1
    assert resolve("tiny-sd15-4step").method.timesteps == ()
    with pytest.raises(UserError, match="strictly decreasing"):
        resolve("tiny-sd15-4step", ["timesteps=399,665,856,999"])
    with pytest.raises(UserError, match="is not a tuple"):
        resolve("tiny-sd15-4step", ["timesteps=999,late"])

    out = tmp_path / "run"
    assert train_module.main(["--preset", "tiny-sd15-4step", "--dry-run", f"output_dir={out}",
                              "timesteps=999,856,665,399"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["method"]["timesteps"] == list(RELEASED) and not out.exists()
    code = train_module.main(["--preset", "tiny-sd15-unify", "--dry-run", "timesteps=999,856,665,399"])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: timesteps=") and "TDM-unify" in err[0], err


# --- the official script's layout (the bench) ----------------------------------------------------------


def test_the_official_layout_rolls_out_on_the_timesteps():
    from methods.tdm.official_layout import ScriptSetup, draw_segment, not_reproduced, rollout

    def setup(timesteps, T=1000):
        student = Spy(Smooth())
        roles = SimpleNamespace(student=student, schedule=SCHEDULE)
        return ScriptSetup(SimpleNamespace(roles=roles), {}, {}, 1.0, torch.device("cpu"), T, timesteps), student

    today, _ = setup(())
    assert today.bounds == [obj.CLEAN, 249, 499, 749, 999] and today.segment_starts == [0, 250, 500, 750]
    assert setup((), 900)[0].segment_starts == [0, 225, 450, 675]  # the script's (k - 1) T / K
    given, student = setup(RELEASED)
    assert given.bounds == [obj.CLEAN, 399, 665, 856, 999] and given.segment_starts == [0, 400, 666, 857]
    states = rollout(given, torch.randn(8, 3), {})
    assert student.calls == [[t] * 8 for t in RELEASED] and states.shape == (5, 8, 3)
    segment = draw_segment(given, BatchRandom(step_generator(0, 0), 64))
    bounds = given.bounds
    assert segment.t_k.tolist() == [bounds[k] for k in segment.k.tolist()]
    assert segment.t_mid.tolist() == [bounds[k - 1] + 1 for k in segment.k.tolist()]
    assert ((segment.tau >= segment.t_mid.clamp(min=20)) & (segment.tau < 990)).all()
    assert any("(999, 856, 665, 399)" in line for line in not_reproduced(given))
    assert any("(999, 749, 499, 249)" in line for line in not_reproduced(today))


def test_the_official_layout_refuses_timesteps_for_another_K():
    from methods.tdm.official_layout import prepare

    config = TrainConfig(backbone="sd15", teacher="tiny-sd15", method=TDMConfig(steps=(2,), timesteps=(999, 499)))
    with pytest.raises(UserError, match="K = 4 student steps"):
        prepare(config, "cpu")


# --- CogVideoX: the preset trains on the released timesteps, its export samples on them --------------------


@pytest.fixture(scope="module")
def video_world(tmp_path_factory):
    from methods.common.random_pipelines import random_cogvideox_pipeline
    from test_tdm_video import PROMPTS
    from tiny_models import TINY_COGVIDEOX

    root = tmp_path_factory.mktemp("video-timesteps")
    (root / "prompts.txt").write_text("\n".join(PROMPTS))
    return SimpleNamespace(cogvideox=random_cogvideox_pipeline(root / "cogvideox", **TINY_COGVIDEOX),
                           prompts=root / "prompts.txt", prompt=PROMPTS[0])


def test_cogvideox_preset_trains_and_samples_on_the_released_timesteps(video_world, tmp_path, monkeypatch):
    from baselines.cogvideox_scheduler import CogVideoXTimestepsDDIMScheduler
    from diffusers import CogVideoXDDIMScheduler, CogVideoXPipeline

    load, seen_in_training = train_module.load_backbone, set()

    def spied(*args):  # the backbone train() builds, with a spy on the t of its student's calls
        backbone = load(*args)
        student, x0 = backbone.roles.student, backbone.roles.student.x0

        def recorded(x, t, *rest, **kwargs):
            seen_in_training.update(t.tolist())
            return x0(x, t, *rest, **kwargs)
        student.x0 = recorded
        return backbone

    monkeypatch.setattr(train_module, "load_backbone", spied)
    out = tmp_path / "run"
    settings = {"teacher": video_world.cogvideox, "prompts": video_world.prompts, "batch_size": 2, "iterations": 3,
                "checkpoint_every": 3, "tracker": "none", "output_dir": out, "log_every": 1}
    config = resolve("cogvideox-2b", [f"{k}={v}" for k, v in settings.items()])
    assert config.method.timesteps == RELEASED and config.method.steps == (4,)
    summary = train_module.train(config, "cpu", show_progress=False)
    assert seen_in_training == set(RELEASED), seen_in_training  # the roll-out and the steps with gradient

    folder = out / "student-K4"
    assert summary["exported"] == [str(folder)]
    card = json.loads((folder / "tdm_student.json").read_text())
    assert card["timesteps"] == list(RELEASED) and card["released_timesteps"] == list(RELEASED)
    assert card["config"]["method"]["timesteps"] == list(RELEASED)
    assert "CogVideoXTimestepsDDIMScheduler" in card["sampling"] and str(list(RELEASED)) in card["sampling"]
    assert "[999, 749, 499, 249]" in card["released_timesteps_note"]  # what the folder's stock DDIM would do

    pipe = CogVideoXPipeline.from_pretrained(str(folder), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    assert isinstance(pipe.scheduler, CogVideoXDDIMScheduler)  # the folder loads with stock diffusers
    pipe.scheduler = CogVideoXTimestepsDDIMScheduler.from_config(pipe.scheduler.config)
    seen = []
    hook = pipe.transformer.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs["timestep"]),
                                                      with_kwargs=True)
    frames = pipe([video_world.prompt], timesteps=card["timesteps"], guidance_scale=1.0, output_type="np",
                  generator=torch.Generator().manual_seed(0)).frames
    hook.remove()
    assert [int(t.flatten()[0]) for t in seen] == list(RELEASED)  # 4 transformer calls, on the trained timesteps
    assert torch.isfinite(torch.tensor(frames)).all()


# --- image backbones: the export records the timesteps, DPM-Solver++ samples on them --------------------------


def test_sd15_export_and_student_sampler_follow_explicit_timesteps(tmp_path):
    from baselines.base import SamplerSpec
    from baselines.tdm_student import StudentSampler
    from methods.tdm.backbones import load_backbone

    config = resolve("tiny-sd15-4step", ["timesteps=999,856,665,399", "batch_size=2", f"output_dir={tmp_path}"])
    backbone = load_backbone(config, torch.device("cpu"), torch.float32)
    folder = backbone.export(backbone.modules["student"], tmp_path / "student-K4", 4)
    card = json.loads((folder / "tdm_student.json").read_text())
    assert card["timesteps"] == list(RELEASED) and "timesteps=[999, 856, 665, 399]" in card["sampling"]

    spec = SamplerSpec("tdm-explicit", "tiny-sd15", str(folder), "dpmpp", 4, guidance=1.0)
    sampler = StudentSampler(spec, batch_size=2)
    assert sampler.describe()["resolved_timesteps"] == list(RELEASED)
    seen = []
    hook = sampler.pipe.unet.register_forward_pre_hook(lambda module, args: seen.append(int(args[1].flatten()[0])))
    images = sampler.sample(["a red circle"], [0])
    hook.remove()
    assert seen == list(RELEASED) and images.shape == (1, 64, 64, 3)

    with pytest.raises(UserError, match="solver='ddim' cannot step along"):
        StudentSampler(SamplerSpec("tdm-explicit-ddim", "tiny-sd15", str(folder), "ddim", 4, 1.0))
    two = StudentSampler(SamplerSpec("tdm-explicit-2", "tiny-sd15", str(folder), "ddim", 2, 1.0))
    assert two.timesteps is None and two.describe()["resolved_timesteps"] == [999, 499]  # other step counts: trailing
