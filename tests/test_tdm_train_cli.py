"""python -m methods.tdm.train end to end on CPU: dry runs, one-line errors, bit-identical resume,
and the exported student pipelines (full, TDM-unify with folded step conditioning, LoRA).

Runs are tiny (batch 4-64, 2-6 iterations); the tiny-sd15 teacher ships in the repository.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import methods.tdm.train as train_module
from harness.worlds.tiny_sd15.judge import PIPELINE
from methods.common.method import get_method
from methods.tdm.presets import PRESETS, resolve
from methods.tdm.train import main, train

REPO = Path(__file__).resolve().parents[1]
K4_TIMESTEPS = [999, 749, 499, 249]


pytestmark = pytest.mark.usefixtures("one_thread")


def cli(*args: str) -> subprocess.CompletedProcess:
    """The real command line, from the repository root."""
    return subprocess.run([sys.executable, "-m", "methods.tdm.train", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=180)


def call_main(argv: list[str]) -> int:
    """main() in-process; argparse's own errors exit through SystemExit."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return exit_.code


def run(preset: str, out: Path, **overrides):
    """train() in-process on CPU, as `python -m methods.tdm.train --preset ... --device cpu` does."""
    settings = {"tracker": "none", "output_dir": str(out), **{k: str(v) for k, v in overrides.items()}}
    return train(resolve(preset, [f"{k}={v}" for k, v in settings.items()]), "cpu", show_progress=False)


def checkpoint(out: Path, step: int) -> Path:
    return out / "checkpoints" / f"step-{step:06d}"


def teacher_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(str(PIPELINE / "unet")).eval()


# --- dry run and errors -----------------------------------------------------------------------------


def test_dry_run_prints_the_resolved_config_and_writes_nothing(tmp_path):
    out = tmp_path / "run"
    result = cli("--preset", "tiny-sd15-unify", "--dry-run", "batch_size=8", "steps=1,4", "lr_fake=3e-4",
                 f"output_dir={out}")
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)  # stdout is the config and nothing else
    flat = {**config, **config.pop("method")}
    for key, value in PRESETS["tiny-sd15-unify"].items():
        if key not in ("batch_size", "steps", "lr_fake"):
            assert flat[key] == (list(value) if isinstance(value, tuple) else value), key
    assert flat["backbone"] == "sd15" and flat["teacher"] == "tiny-sd15" and flat["guidance"] == 3.5
    assert flat["batch_size"] == 8 and flat["steps"] == [1, 4] and flat["lr_fake"] == 3e-4
    assert flat["output_dir"] == str(out)
    assert flat["loss"] == "pseudo_huber" and flat["adam_betas"] == [0.0, 0.999]  # TrainConfig defaults
    assert list(tmp_path.iterdir()) == []


def test_dry_run_default_output_dir_is_runs_preset_and_list_names_every_preset(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert call_main(["--preset", "gmm-4step", "--dry-run"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert config["output_dir"] == "runs/gmm-4step" and config["method"]["fake_updates"] == 5
    assert config["backbone"] == "gmm" and config["method"]["lr_student"] == 3e-4
    assert list(tmp_path.iterdir()) == []
    assert call_main(["--list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == list(PRESETS) and {"tiny-sd15-4step", "tiny-sd15-unify", "gmm-4step", "gmm-unify"} <= set(listed)


def _not_a_pipeline(tmp_path: Path) -> str:
    folder = tmp_path / "not-a-pipeline"
    folder.mkdir()
    (folder / "README.txt").write_text("no model_index.json here")
    return str(folder)


BAD = {  # name -> (argv builder, words the one-line message must hold)
    "unknown preset": (lambda tmp: ["--preset", "tiny-sd15-4stepp"], ["unknown preset", "tiny-sd15-4stepp"]),
    "unknown key": (lambda tmp: ["--preset", "gmm-4step", "foo=1"], ["unknown setting", "'foo'"]),
    "wrong type": (lambda tmp: ["--preset", "gmm-4step", "iterations=abc"], ["iterations", "'abc'", "int"]),
    "K not allowed": (lambda tmp: ["--preset", "gmm-4step", "steps=7"], ["steps", "[7]"]),
    "not key=value": (lambda tmp: ["--preset", "gmm-4step", "iterations"], ["key=value", "'iterations'"]),
    "no preset": (lambda tmp: [], ["--preset is required"]),
    "teacher not a pipeline": (lambda tmp: ["--preset", "tiny-sd15-4step", f"teacher={_not_a_pipeline(tmp)}"],
                               ["not-a-pipeline", "model_index.json"]),
    "teacher missing": (lambda tmp: ["--preset", "tiny-sd15-4step", f"teacher={tmp / 'nowhere'}"], ["nowhere"]),
    "prompts missing": (lambda tmp: ["--preset", "tiny-sd15-4step", f"prompts={tmp / 'nowhere.txt'}"],
                        ["prompts=", "nowhere.txt"]),
    "cuda without a GPU": (lambda tmp: ["--preset", "gmm-4step", "--device", "cuda"], ["--device cuda", "GPU"]),
    "negative learning rate": (lambda tmp: ["--preset", "gmm-4step", "lr_student=-1"], ["lr_student", "-1"]),
    "empty batch": (lambda tmp: ["--preset", "gmm-4step", "batch_size=0"], ["batch_size", "0"]),
    "negative guidance": (lambda tmp: ["--preset", "gmm-4step", "guidance=-2"], ["guidance", "-2"]),
    "beta of 1 or more": (lambda tmp: ["--preset", "gmm-4step", "adam_betas=1.5,0.9"], ["adam_betas", "1.5"]),
    "negative clip": (lambda tmp: ["--preset", "gmm-4step", "grad_clip=-1"], ["grad_clip"]),
    "negative seed": (lambda tmp: ["--preset", "gmm-4step", "seed=-1"], ["seed", "-1"]),
    "too few timesteps": (lambda tmp: ["--preset", "gmm-4step", "num_train_timesteps=10"], ["num_train_timesteps"]),
}


def _check_bad(tmp_path, name, code, stderr):
    words = BAD[name][1]
    lines = stderr.splitlines()
    assert code == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert all(word in lines[0] for word in words), (words, lines[0])
    written = [p for p in tmp_path.rglob("*") if "not-a-pipeline" not in p.parts]
    assert written == [], written


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(name, tmp_path, capsys):
    if name == "cuda without a GPU" and torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    argv = BAD[name][0](tmp_path) + [f"output_dir={tmp_path / 'run'}", "--no-progress"]
    if "--device" not in argv:
        argv += ["--device", "cpu"]
    code = call_main(argv)
    _check_bad(tmp_path, name, code, capsys.readouterr().err)


@pytest.mark.parametrize("name", ["unknown preset", "teacher not a pipeline"])
def test_bad_input_in_a_real_process(name, tmp_path):
    """A real process: no library warning may join the one line on stderr."""
    result = cli(*BAD[name][0](tmp_path), f"output_dir={tmp_path / 'run'}", "--device", "cpu", "--no-progress")
    _check_bad(tmp_path, name, result.returncode, result.stderr)


# --- resume ----------------------------------------------------------------------------------------


class Killed(Exception):
    """Stands for SIGKILL in the middle of an iteration."""


def _kill_before(monkeypatch, step_index: int, preset: str):
    """Make the preset's method's train_step raise when iteration `step_index` (0-based) starts."""
    method = type(get_method(resolve(preset).algorithm))
    real, calls = method.train_step, []

    def step(*args, **kwargs):
        if len(calls) == step_index:
            raise Killed
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(method, "train_step", step)


def _assert_identical(a, b, where="state"):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_identical(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def _final(out: Path, step: int) -> dict:
    """Every network, optimiser and held network (LCM's EMA target) of a checkpoint."""
    ck = checkpoint(out, step)
    state = {"student": load_file(ck / "model.safetensors"), "opt_student": torch.load(ck / "optimizer.bin",
                                                                                      weights_only=True)}
    if (ck / "model_1.safetensors").is_file():
        state["fake_score"] = load_file(ck / "model_1.safetensors")
        state["opt_fake_score"] = torch.load(ck / "optimizer_1.bin", weights_only=True)
    for held in sorted(ck.glob("custom_checkpoint_*.pkl")):
        state[held.stem] = torch.load(held, weights_only=True)
    return state


def _log(out: Path) -> list[str]:
    return (out / "losses.jsonl").read_text().splitlines()


RESUME = {  # case -> (preset, iterations N, checkpoint_every, batch_size, more settings)
    "gmm-4step": ("gmm-4step", 6, 3, 64, {}),
    "gmm-unify": ("gmm-unify", 6, 3, 64, {}),
    "tiny-sd15-4step": ("tiny-sd15-4step", 4, 2, 4, {}),
    "tiny-sd15-unify": ("tiny-sd15-unify", 4, 2, 4, {}),  # K drawn per iteration, step conditioning trained
    "tiny-sd15-4step-lora": ("tiny-sd15-4step", 4, 2, 4, {"lora_rank": 4}),
    # DMD2 on the same loop: the generator's turns (every 2nd iteration) and the simulated step counts
    # both fall on each side of the checkpoint.
    "tiny-sd15-dmd2": ("tiny-sd15-dmd2-4step", 6, 3, 4, {"generator_every": 2}),
    # LCM: the world's images through the VAE, and an EMA target held beside the student.
    "tiny-sd15-lcm": ("tiny-sd15-lcm-4step", 4, 2, 4, {}),
}


@pytest.mark.parametrize("case", list(RESUME))
def test_resume_is_bit_identical(case, tmp_path, monkeypatch):
    preset, N, every, batch, more = RESUME[case]
    common = dict(checkpoint_every=every, batch_size=batch, log_every=1, export="false", **more)

    whole = tmp_path / "whole"
    summary = run(preset, whole, iterations=N, **common)
    assert summary["resumed_from"] == 0
    reference, reference_log = _final(whole, N), _log(whole)
    assert [json.loads(line)["step"] for line in reference_log] == list(range(1, N + 1))
    assert all(torch.isfinite(torch.tensor(list(json.loads(line).values()))).all() for line in reference_log)
    # Training moved both networks (else "identical" would prove nothing).
    for role, file in (("student", "model.safetensors"), ("fake_score", "model_1.safetensors")):
        if role in reference:
            first = load_file(checkpoint(whole, every) / file)
            assert any(not torch.equal(first[k], v) for k, v in reference[role].items()), role

    # (a) The first half as its own command (iterations=every), then the full command resumes. Only
    # `iterations` differs; with log_every=1 the first half's closing log line is one the full run writes too.
    halves = tmp_path / "halves"
    run(preset, halves, iterations=every, **common)
    assert len(_log(halves)) == every
    summary = run(preset, halves, iterations=N, **common)
    assert summary["resumed_from"] == every
    _assert_identical(_final(halves, N), reference)
    assert _log(halves) == reference_log

    # (b) A kill in the middle of the iteration after the next one: the log has run past the checkpoint.
    killed = tmp_path / "killed"
    _kill_before(monkeypatch, every + 1, preset)
    with pytest.raises(Killed):
        run(preset, killed, iterations=N, **common)
    assert [json.loads(line)["step"] for line in _log(killed)] == list(range(1, every + 2))
    assert train_module.latest_checkpoint(killed) == checkpoint(killed, every)
    monkeypatch.undo()  # the restarted process runs the real train_step
    summary = run(preset, killed, iterations=N, **common)
    assert summary["resumed_from"] == every
    _assert_identical(_final(killed, N), reference)
    assert _log(killed)[every:] == reference_log[every:]  # the lines after the resume point
    assert _log(killed) == reference_log  # and the stale line past the checkpoint is gone


def test_rerunning_a_finished_run_trains_no_further(tmp_path):
    out = tmp_path / "gmm"
    run("gmm-4step", out, iterations=2, checkpoint_every=2, batch_size=16, log_every=1)
    before = _final(out, 2)
    summary = run("gmm-4step", out, iterations=2, checkpoint_every=2, batch_size=16, log_every=1)
    assert summary["resumed_from"] == 2 and summary["timed_iterations"] == 0
    _assert_identical(_final(out, 2), before)
    assert len(_log(out)) == 2
    student = torch.load(out / "student-K4" / "student_mlp.pt", weights_only=True)
    assert all(torch.equal(v, before["student"][f"mlp.{k}"]) for k, v in student.items())


# --- export ----------------------------------------------------------------------------------------


def _unet_inputs(unet, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    size = unet.config.sample_size
    x = torch.randn(n, unet.config.in_channels, size, size, generator=g)
    text = torch.randn(n, 8, unet.config.cross_attention_dim, generator=g)
    return x, torch.tensor([999, 400][:n]), text


def _forward(unet, x, t, text, step_cond=None):
    with torch.no_grad():
        return unet(x, t, encoder_hidden_states=text, timestep_cond=step_cond, return_dict=False)[0]


def test_export_of_a_4step_run_is_a_working_dpm_solver_pipeline(tmp_path, capsys):
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    out = tmp_path / "run"
    code = main(["--preset", "tiny-sd15-4step", "--device", "cpu", "--no-progress", "iterations=2", "batch_size=4",
                 "checkpoint_every=2", "tracker=none", f"output_dir={out}"])
    assert code == 0
    stdout = capsys.readouterr().out
    summary = json.loads(stdout[stdout.rindex("\n{") + 1:])  # the summary follows the config
    assert summary["exported"] == [str(out / "student-K4")] and summary["device"] == "cpu"
    assert json.loads((out / "summary.json").read_text()) == summary
    assert json.loads((out / "config.json").read_text())["iterations"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "config.json", "flops.json", "losses.jsonl",
                                                     "student-K4", "summary.json"]

    folder = out / "student-K4"
    card = json.loads((folder / "tdm_student.json").read_text())
    assert card["timesteps"] == K4_TIMESTEPS and card["steps"] == 4 and card["guidance_scale"] == 1.0
    assert card["lora"] is None and card["config"]["method"]["steps"] == [4]
    pipe = StableDiffusionPipeline.from_pretrained(str(folder), safety_checker=None, requires_safety_checker=False,
                                                   local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    assert isinstance(pipe.scheduler, DPMSolverMultistepScheduler)
    assert pipe.scheduler.config.algorithm_type == "dpmsolver++"
    assert pipe.scheduler.config.timestep_spacing == "trailing"
    pipe.scheduler.set_timesteps(4)
    assert pipe.scheduler.timesteps.tolist() == K4_TIMESTEPS

    # The exported UNet is the trained student: the checkpoint's weights, not the teacher's.
    exported, trained = pipe.unet.state_dict(), load_file(checkpoint(out, 2) / "model.safetensors")
    assert exported.keys() == trained.keys()
    assert all(torch.equal(v, trained[k]) for k, v in exported.items())
    teacher = teacher_unet().state_dict()
    assert any(not torch.equal(v, teacher[k]) for k, v in exported.items())

    image = pipe(["a red circle"], num_inference_steps=4, guidance_scale=1.0, output_type="np",
                 generator=torch.Generator().manual_seed(0)).images
    assert image.shape == (1, 64, 64, 3)
    assert (image >= 0).all() and (image <= 1).all() and image.std() > 0.01


def test_unify_exports_one_plain_pipeline_per_K_with_the_condition_folded_in(tmp_path):
    from diffusers import UNet2DConditionModel

    from methods.tdm.step_conditioning import step_embedding, with_step_conditioning

    out = tmp_path / "unify"
    summary = run("tiny-sd15-unify", out, iterations=2, batch_size=4, checkpoint_every=2)
    assert summary["exported"] == [str(out / f"student-K{K}") for K in (1, 2, 4)]
    conditioned = with_step_conditioning(teacher_unet())
    conditioned.load_state_dict(load_file(checkpoint(out, 2) / "model.safetensors"))
    assert conditioned.time_embedding.cond_proj.weight.abs().max() > 0  # the K embedding was trained
    x, t, text = _unet_inputs(conditioned)

    unets = {}
    for K, timesteps in ((1, [999]), (2, [999, 499]), (4, K4_TIMESTEPS)):
        folder = out / f"student-K{K}"
        assert (folder / "model_index.json").is_file()
        assert json.loads((folder / "tdm_student.json").read_text())["timesteps"] == timesteps
        assert json.loads((folder / "unet" / "config.json").read_text()).get("time_cond_proj_dim") is None
        unet = unets[K] = UNet2DConditionModel.from_pretrained(str(folder / "unet")).eval()
        assert unet.config.time_cond_proj_dim is None and unet.time_embedding.cond_proj is None
        expected = _forward(conditioned, x, t, text, step_embedding(torch.full((len(x),), K)))
        torch.testing.assert_close(_forward(unet, x, t, text), expected, rtol=0, atol=1e-5)

    # Only the folded bias tells the per-K exports apart.
    bias = "time_embedding.linear_1.bias"
    states = {K: unet.state_dict() for K, unet in unets.items()}
    for K in (2, 4):
        assert not torch.equal(states[K][bias], states[1][bias])
        assert all(torch.equal(v, states[1][k]) for k, v in states[K].items() if k != bias)


def test_lora_trains_only_the_adapters_and_exports_them(tmp_path):
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    out = tmp_path / "lora"
    run("tiny-sd15-4step", out, iterations=2, batch_size=4, checkpoint_every=2, lora_rank=4)
    teacher = teacher_unet().state_dict()

    for role in ("model.safetensors", "model_1.safetensors"):  # student and fake score
        state = load_file(checkpoint(out, 2) / role)
        lora = {k: v for k, v in state.items() if ".lora_" in k}
        base = {k.replace(".base_layer.", "."): v for k, v in state.items() if ".lora_" not in k}
        assert base.keys() == teacher.keys()
        changed = [k for k, v in base.items() if not torch.equal(v, teacher[k])]
        assert changed == [], changed[:5]  # the teacher's own weights never move
        wrapped = {k.rsplit(".base_layer.", 1)[0] for k in state if ".base_layer." in k}
        assert wrapped and all(k.rsplit(".", 1)[-1] in ("to_q", "to_k", "to_v") or k.endswith("to_out.0")
                               for k in wrapped)
        assert len(lora) == 2 * len(wrapped)
        ups = [v for k, v in lora.items() if ".lora_B." in k]
        assert all(torch.count_nonzero(v) > 0 for v in ups), role  # B starts at zero: the adapters trained

    folder = out / "student-K4"
    card = json.loads((folder / "tdm_student.json").read_text())
    assert card["lora"] == "lora" and card["timesteps"] == K4_TIMESTEPS
    adapter = load_file(folder / "lora" / "pytorch_lora_weights.safetensors")
    assert len(adapter) == len(lora) and all(".lora_A." in k or ".lora_B." in k for k in adapter)
    assert all(k.startswith("unet.") for k in adapter)  # the prefix diffusers' load_lora_weights looks for

    exported = UNet2DConditionModel.from_pretrained(str(folder / "unet")).state_dict()
    assert exported.keys() == teacher.keys()  # a plain UNet: the adapters are fused in
    differ = {k for k, v in exported.items() if not torch.equal(v, teacher[k])}
    assert differ == {f"{name}.weight" for name in wrapped}

    # The lora folder applied to the teacher's pipeline gives the exported UNet.
    pipe = StableDiffusionPipeline.from_pretrained(str(PIPELINE), safety_checker=None,
                                                   requires_safety_checker=False, local_files_only=True)
    pipe.load_lora_weights(str(folder / "lora"))
    pipe.fuse_lora()
    pipe.unload_lora_weights()
    fused = pipe.unet.state_dict()
    assert fused.keys() == exported.keys()
    for key in differ:
        torch.testing.assert_close(fused[key], exported[key], rtol=0, atol=1e-6)

    student = StableDiffusionPipeline.from_pretrained(str(folder), safety_checker=None,
                                                      requires_safety_checker=False, local_files_only=True)
    assert not any("lora" in name for name, _ in student.unet.named_parameters())


def test_lora_init_follows_the_seed_not_the_process_history():
    from methods.tdm.backbones import SDBackbone

    def lora_A(seed):
        backbone = SDBackbone(resolve("tiny-sd15-4step", ["lora_rank=4", f"seed={seed}"]), torch.device("cpu"),
                              torch.float32)
        return {k: v for k, v in backbone.modules["student"].state_dict().items() if ".lora_A." in k}

    first = lora_A(0)
    torch.randn(1000)  # whatever ran before in this process must not matter
    _assert_identical(lora_A(0), first)
    other = lora_A(1)
    assert all(not torch.equal(v, first[k]) for k, v in other.items())
