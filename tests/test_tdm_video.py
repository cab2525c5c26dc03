"""TDM on CogVideoX (text-to-video), end to end on CPU with a tiny CogVideoXPipeline of the real classes.

The folder comes from methods.common.random_pipelines.random_cogvideox_pipeline with tiny configs:
CogVideoXTransformer3DModel with 3D sin-cos positions (as the 2B), AutoencoderKLCogVideoX, a T5
encoder at the pipeline's 226 tokens, and CogVideoX-2b's scheduler config (v-prediction, zero
terminal SNR, SNR shift 3). Clips are 9 frames of 16 x 16 pixels: latents (F, C, H, W) = (3, 4, 4, 4).
Each run is 2-4 iterations of batch 2 of the `cogvideox-2b` preset (LoRA rank 64, gradient checkpointing).
"""
import json
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

import methods.tdm.train as train_module
from methods.common.adapters import CogVideoXAdapter
from methods.common.errors import UserError
from methods.common.random_pipelines import (COGVIDEOX_SCHEDULER, COGVIDEOX_TRANSFORMER, COGVIDEOX_VAE, T5_XXL,
                                             main as random_main, random_cogvideox_pipeline, random_pixart_pipeline)
from methods.common.schedule import NoiseSchedule, eps_to_x0
from methods.tdm import objective as obj
from methods.tdm.backbones import CogVideoXBackbone, load_backbone
from methods.tdm.method import TDM
from methods.tdm.presets import resolve
from methods.tdm.train import main, train
from tiny_models import TINY_COGVIDEOX, TINY_PIXART, VIDEO_FRAMES as FRAMES

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = ["a red circle on a grey background", "a small blue square at the top left on a white background",
           "a red circle on a grey background", "A photo of an astronaut riding a horse!"]  # one repeated
K4_TIMESTEPS = [999, 749, 499, 249]  # the trainer's b_k = kT/K - 1 (timesteps=())
RELEASED_TIMESTEPS = [999, 856, 665, 399]  # Luo-Yihong/TDM_CogVideoX-2B_LoRA's, the preset's timesteps
SIZE, LATENTS = 16, (3, 4, 4, 4)



@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("video")
    (root / "prompts.txt").write_text("\n".join(PROMPTS))
    return SimpleNamespace(cogvideox=random_cogvideox_pipeline(root / "cogvideox", **TINY_COGVIDEOX),
                           prompts=root / "prompts.txt", root=root)


def config(world, out, **overrides):
    settings = {"teacher": world.cogvideox, "prompts": world.prompts, "batch_size": 2, "tracker": "none",
                "output_dir": out, "log_every": 1, **overrides}
    return resolve("cogvideox-2b", [f"{k}={v}" for k, v in settings.items()])


def run(world, out, **overrides) -> dict:
    return train(config(world, out, **overrides), "cpu", show_progress=False)


def load(folder):
    from diffusers import CogVideoXPipeline

    pipe = CogVideoXPipeline.from_pretrained(str(folder), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def losses(out) -> list[dict]:
    return [json.loads(line) for line in (out / "losses.jsonl").read_text().splitlines()]


def checkpoint(out, step: int, file="model.safetensors") -> dict:
    """A checkpoint's weights, or its optimizer state flattened to name -> tensor."""
    path = out / "checkpoints" / f"step-{step:06d}" / file
    if file.endswith(".safetensors"):
        return load_file(path)
    state = torch.load(path, weights_only=True)["state"]
    return {f"{i}.{k}": torch.as_tensor(v) for i, s in state.items() for k, v in s.items()}


def generate(pipe, **kwargs):
    """frames (1, F, H, W, 3) in [0, 1] and the number of transformer calls."""
    calls = []
    hook = pipe.transformer.register_forward_pre_hook(lambda *args: calls.append(1))
    try:
        frames = pipe([PROMPTS[0]], guidance_scale=1.0, output_type="np", generator=torch.Generator().manual_seed(0),
                      **kwargs).frames
    finally:
        hook.remove()
    return frames, len(calls)


def capture_backbones(monkeypatch) -> list:
    """The backbones train() builds, kept for inspection after the run."""
    built = []

    def keep(*args):
        built.append(load_backbone(*args))
        return built[-1]

    monkeypatch.setattr(train_module, "load_backbone", keep)
    return built


# --- the real-size configuration ----------------------------------------------------------------------


def test_real_size_configs_are_cogvideox_2b_and_give_its_latents():
    """Parameter counts of CogVideoX-2b's transformer and VAE (meta device), and the preset's clip:
    49 frames at 480 x 720 -> latents (13, 16, 60, 90), as CogVideoXPipeline.prepare_latents makes them."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel

    with init_empty_weights():
        transformer, vae = CogVideoXTransformer3DModel(**COGVIDEOX_TRANSFORMER), AutoencoderKLCogVideoX(**COGVIDEOX_VAE)
    assert sum(p.numel() for p in transformer.parameters()) == 1_693_783_872
    assert sum(p.numel() for p in vae.parameters()) == 215_583_907
    assert COGVIDEOX_TRANSFORMER["text_embed_dim"] == T5_XXL["d_model"]
    assert transformer.config.max_text_seq_length == 226  # T5 tokens, as the pipeline's max_sequence_length
    assert not transformer.config.use_rotary_positional_embeddings  # the 2B: 3D sin-cos absolute positions

    bare = CogVideoXBackbone.__new__(CogVideoXBackbone)  # only the shape logic, without loading a folder
    bare.config = resolve("cogvideox-2b")
    bare.pipe = SimpleNamespace(vae_scale_factor_spatial=2 ** (len(COGVIDEOX_VAE["block_out_channels"]) - 1),
                                vae_scale_factor_temporal=COGVIDEOX_VAE["temporal_compression_ratio"])
    bare.resolution = bare._resolution(transformer)
    assert bare.resolution == (49, 480, 720) and bare._latent_shape(transformer) == (13, 16, 60, 90)
    assert random_main(["cogvideox", "somewhere"]) == 2  # the builder's name is the preset's: cogvideox-2b


# --- (d) zero terminal SNR --------------------------------------------------------------------------


def test_conversions_at_zero_terminal_snr_never_divide_by_alpha():
    from diffusers import CogVideoXDDIMScheduler

    schedule = NoiseSchedule.from_scheduler(CogVideoXDDIMScheduler.from_config(COGVIDEOX_SCHEDULER))
    t = torch.tensor([999, 998, 500, 0])
    x_t, v = torch.randn(4, *LATENTS), torch.randn(4, *LATENTS)
    alpha, sigma = schedule.alpha_sigma(t, x_t)
    assert alpha[0].item() == 0 and sigma[0].item() == 1  # alpha_999 = 0 exactly
    assert not torch.isfinite(eps_to_x0(x_t, v, alpha, sigma)[0]).all()  # why v must not go through eps

    adapter = CogVideoXAdapter(None, schedule, "v_prediction")
    adapter.raw = lambda x, t, cond, step_cond=None: v  # the network's v, whatever it is
    x0, eps = adapter.x0_eps(x_t, t, {})
    assert torch.isfinite(x0).all() and torch.isfinite(eps).all()
    assert torch.equal(x0[0], -v[0]) and torch.equal(eps[0], x_t[0])  # x0 = alpha x - sigma v, eps = sigma x + alpha v
    torch.testing.assert_close(alpha * x0 + sigma * eps, x_t)

    # The objective at tau = 999: a sample at b_3 = 749 diffuses to pure noise, its weights stay finite.
    x_i, x0_hat, noise = torch.randn(4, *LATENTS), torch.randn(4, *LATENTS), torch.randn(4, *LATENTS)
    t_i, tau = torch.full((4,), 749), torch.full((4,), 999)
    x_tau = obj.diffuse_from(schedule, x_i, t_i, tau, noise)
    assert torch.equal(x_tau, noise)
    log_w = obj.log_importance_weight(schedule, x_tau, x_i, x0_hat, t_i, tau, "per_dim_mean", noise)
    assert torch.isfinite(log_w).all()
    assert obj.snr_cap_weight(schedule, tau, 5.0, x_tau).tolist() == [0.0] * 4  # min(SNR, 5) vanishes at 999


def test_training_through_t_999_stays_finite(world, tmp_path):
    """tau up to 999 ("wide" intervals) and DPM-Solver++, whose log(alpha / sigma) is -inf at 999."""
    out = tmp_path / "wide-dpmpp"
    run(world, out, iterations=3, interval="wide", solver="dpmpp", fake_snr_cap=5, checkpoint_every=3, export="false")
    assert all(torch.isfinite(torch.tensor(v)) for r in losses(out) for k, v in r.items() if k.startswith("loss/"))
    for file in ("model.safetensors", "model_1.safetensors"):
        assert all(torch.isfinite(v).all() for v in checkpoint(out, 3, file).values())


# --- (e) per-sample reductions include the frames -------------------------------------------------------


def test_per_sample_reductions_include_the_frame_dimension():
    from diffusers import CogVideoXDDIMScheduler

    schedule = NoiseSchedule.from_scheduler(CogVideoXDDIMScheduler.from_config(COGVIDEOX_SCHEDULER))
    B, shape = 3, (5, 4, 6, 8)  # F, C, H, W
    g = torch.Generator().manual_seed(0)
    x, delta, x0_hat, x_i, noise = (torch.randn(B, *shape, generator=g) for _ in range(5))
    d = 5 * 4 * 6 * 8
    # Huber's c = 0.00054 sqrt(F C H W): the loss equals the one on frames folded into channels.
    c = 0.00054 * d ** 0.5
    want = ((delta.flatten(1).square().sum(1) + c ** 2).sqrt() - c).mean()
    torch.testing.assert_close(obj.pseudo_huber_loss(x, delta), want)
    torch.testing.assert_close(obj.pseudo_huber_loss(x.reshape(B, 20, 6, 8), delta.reshape(B, 20, 6, 8)), want)
    assert obj.pseudo_huber_c(13 * 16 * 60 * 90) == pytest.approx(0.00054 * 1123200 ** 0.5)  # 0.572 for CogVideoX-2b

    t_i, tau = torch.full((B,), 499), torch.tensor([600, 700, 740])
    x_tau = obj.diffuse_from(schedule, x_i, t_i, tau, noise)
    weight = obj.log_importance_weight(schedule, x_tau, x_i, x0_hat, t_i, tau, "per_dim_mean", noise)
    normaliser = obj.dmd_normaliser(x0_hat, x)
    assert weight.shape == (B,) and normaliser.shape == (B, 1, 1, 1, 1)
    assert obj.snr_cap_weight(schedule, tau, 5.0, x_tau).shape == (B,)
    # Changing the last frame of sample 0 changes sample 0's weight and normaliser, and no other sample's.
    x0_moved, x_moved = x0_hat.clone(), x.clone()
    x0_moved[0, -1] += 1.0
    x_moved[0, -1] -= 1.0
    weight_moved = obj.log_importance_weight(schedule, x_tau, x_i, x0_moved, t_i, tau, "per_dim_mean", noise)
    normaliser_moved = obj.dmd_normaliser(x0_moved, x_moved)
    assert weight_moved[0] != weight[0] and torch.equal(weight_moved[1:], weight[1:])
    assert normaliser_moved[0] != normaliser[0] and torch.equal(normaliser_moved[1:], normaliser[1:])
    # The mean over a sample is over every frame: equal to the mean of the per-frame means.
    per_frame = obj.dmd_normaliser(x0_hat.flatten(0, 1), x.flatten(0, 1)).view(B, 5).mean(1)
    torch.testing.assert_close(normaliser.flatten(), per_frame)


# --- (a) training, (c) export ----------------------------------------------------------------------------


def test_trains_the_student_leaves_the_teacher_and_caches_the_prompts(world, tmp_path, monkeypatch):
    built = capture_backbones(monkeypatch)
    out = tmp_path / "run"
    summary = run(world, out, iterations=3, checkpoint_every=3, export="false")
    assert summary["iterations"] == 3 and [r["step"] for r in losses(out)] == [1, 2, 3]
    assert all(torch.isfinite(torch.tensor(v)) for r in losses(out) for k, v in r.items() if k.startswith("loss/"))

    backbone = built[0]
    teacher = load(world.cogvideox)
    before = teacher.transformer.state_dict()
    after = backbone.roles.teacher.model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], v) for k, v in before.items())
    assert not any(p.requires_grad for p in backbone.roles.teacher.model.parameters())
    trained = checkpoint(out, 3)
    lora = {k: v for k, v in trained.items() if "lora_B" in k}
    assert lora and all(".attn1.to_" in k for k in lora) and any(v.abs().max() > 0 for v in lora.values())
    assert backbone.modules["student"].peft_config["default"].r == 64  # the preset's rank
    assert backbone.modules["student"].is_gradient_checkpointing

    # T5 was freed after caching; the cache holds each distinct prompt once, as the pipeline encodes it.
    assert backbone.pipe.text_encoder is None and backbone.latent_shape == LATENTS
    drawn = {p for step in range(3) for p in backbone.prompts(backbone.config.seed, step, 2)}  # the run's prompts
    assert set(backbone.prompt_rows) == drawn and sorted(backbone.prompt_rows.values()) == list(range(len(drawn)))
    assert backbone.prompt_embeds.shape == (len(drawn), 226, 8)  # each once, at the transformer's text length
    from methods.tdm.randomness import BatchRandom

    noise, cond, uncond = backbone.batch(BatchRandom(torch.Generator().manual_seed(0), 2), step=0)
    assert noise.shape == (2, *LATENTS)
    prompts = list(backbone.prompts(backbone.config.seed, 0, 2))
    with torch.no_grad():
        want, empty = teacher.encode_prompt(prompts, do_classifier_free_guidance=True, device="cpu")
    torch.testing.assert_close(cond["encoder_hidden_states"], want, rtol=0, atol=0)
    torch.testing.assert_close(uncond["encoder_hidden_states"], empty, rtol=0, atol=0)


def test_lora_export_loads_into_the_teachers_pipeline_and_samples_4_steps(world, tmp_path):
    from baselines.cogvideox_scheduler import CogVideoXTimestepsDDIMScheduler
    from diffusers import CogVideoXDDIMScheduler

    out = tmp_path / "lora"
    summary = run(world, out, iterations=2, checkpoint_every=2)
    folder = out / "student-K4"
    assert summary["exported"] == [str(folder)]
    card = json.loads((folder / "tdm_student.json").read_text())
    assert card["lora"] == "lora" and "load_lora_weights" in card["lora_how_to_load"]
    assert card["timesteps"] == RELEASED_TIMESTEPS and card["released_timesteps"] == RELEASED_TIMESTEPS
    assert (card["frames"], card["height"], card["width"]) == (FRAMES, SIZE, SIZE)
    assert sorted(p.name for p in (folder / "lora").iterdir()) == ["pytorch_lora_weights.safetensors"]
    assert all(k.startswith("transformer.") for k in load_file(folder / "lora" / "pytorch_lora_weights.safetensors"))

    # The LoRA on a fresh teacher pipeline, fused, is the exported (merged) transformer.
    exported = load(folder).transformer.state_dict()
    pipe = load(world.cogvideox)
    teacher = {k: v.clone() for k, v in pipe.transformer.state_dict().items()}
    pipe.load_lora_weights(str(folder / "lora"))
    pipe.fuse_lora()
    pipe.unload_lora_weights()
    fused = pipe.transformer.state_dict()
    differ = {k for k, v in exported.items() if not torch.equal(v, teacher[k])}
    assert differ and all(".attn1.to_" in k and k.endswith(".weight") for k in differ)  # only attention moved
    for key in exported:
        torch.testing.assert_close(fused[key], exported[key], rtol=0, atol=1e-6)

    # 4 steps on the released timesteps (the project's DDIM on a list), as the released LoRA is sampled.
    pipe.scheduler = CogVideoXTimestepsDDIMScheduler.from_config(pipe.scheduler.config)
    frames, calls = generate(pipe, timesteps=RELEASED_TIMESTEPS)
    assert frames.shape == (1, FRAMES, SIZE, SIZE, 3) and calls == 4 and (frames >= 0).all() and (frames <= 1).all()
    # The exported folder loads with stock DDIM, trailing, whose 4 steps are b_k, not the card's timesteps:
    # sampled as the card says, on the timesteps it was trained on.
    student = load(folder)
    assert isinstance(student.scheduler, CogVideoXDDIMScheduler)
    student.scheduler.set_timesteps(4)
    assert student.scheduler.timesteps.tolist() == K4_TIMESTEPS != card["timesteps"]
    assert "CogVideoXTimestepsDDIMScheduler" in card["sampling"]
    student.scheduler = CogVideoXTimestepsDDIMScheduler.from_config(student.scheduler.config)
    frames, calls = generate(student, timesteps=card["timesteps"])
    assert frames.shape == (1, FRAMES, SIZE, SIZE, 3) and calls == 4 and torch.isfinite(torch.tensor(frames)).all()


# --- (b) resume ----------------------------------------------------------------------------------------


class Killed(Exception):
    """Stands for SIGKILL in the middle of an iteration."""


@pytest.mark.parametrize("lora_rank", [64, 0])
def test_resume_is_bit_identical(lora_rank, world, tmp_path, monkeypatch):
    """2 iterations, then the same command for 4 (and a run killed in iteration 4), equal 4 uninterrupted
    iterations bit for bit: weights and AdamW states of student and fake score, and the logged losses."""
    common = dict(checkpoint_every=2, lora_rank=lora_rank)
    whole, halves, killed = tmp_path / "whole", tmp_path / "halves", tmp_path / "killed"
    run(world, whole, iterations=4, **common)
    run(world, halves, iterations=2, export="false", **common)
    assert run(world, halves, iterations=4, **common)["resumed_from"] == 2

    real = TDM.train_step
    calls = []

    def dies_in_iteration_4(*args, **kwargs):
        if len(calls) == 3:
            raise Killed
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(TDM, "train_step", dies_in_iteration_4)
    with pytest.raises(Killed):
        run(world, killed, iterations=4, **common)
    monkeypatch.undo()
    assert run(world, killed, iterations=4, **common)["resumed_from"] == 2

    for other in (halves, killed):
        for file in ("model.safetensors", "model_1.safetensors", "optimizer.bin", "optimizer_1.bin"):
            a, b = checkpoint(whole, 4, file), checkpoint(other, 4, file)  # student, fake score, their AdamW
            assert a.keys() == b.keys() and all(torch.equal(v, b[k]) for k, v in a.items()), (other.name, file)
        assert losses(other) == losses(whole)
    first, last = checkpoint(whole, 2), checkpoint(whole, 4)
    assert any(not torch.equal(v, first[k]) for k, v in last.items())  # training moved (else "identical" is empty)
    if not lora_rank:  # full weights: the exported transformer is the checkpoint's student, no LoRA folder
        folder = whole / "student-K4"
        assert not (folder / "lora").exists() and json.loads((folder / "tdm_student.json").read_text())["lora"] is None
        exported = load(folder).transformer.state_dict()
        assert exported.keys() == last.keys() and all(torch.equal(v, last[k]) for k, v in exported.items())


# --- (f) bad input -------------------------------------------------------------------------------------


def _pixart(world):
    folder = world.root / "pixart"
    if not folder.exists():
        random_pixart_pipeline(folder, **TINY_PIXART)
    return folder


BAD = {  # name -> (settings, words the one-line message must hold)
    "teacher missing": (lambda w, tmp: {"teacher": tmp / "nowhere"}, ["nowhere", "neither a local folder"]),
    "an SD-1.5 folder": (lambda w, tmp: {"teacher": "tiny-sd15"}, ["lacks the pipeline component 'transformer'"]),
    "a PixArt folder": (lambda w, tmp: {"teacher": _pixart(w)},
                        ["not a CogVideoX pipeline", "PixArtTransformer2DModel"]),
    "prompts missing": (lambda w, tmp: {"prompts": tmp / "nowhere.txt"}, ["nowhere.txt"]),
    "square resolution": (lambda w, tmp: {"resolution": 512}, ["resolution=512", "resolution=0"]),
    "step conditioning": (lambda w, tmp: {"steps": "1,2,4", "timesteps": ""}, ["step count K", "steps=4"]),
    "unify on the preset's timesteps": (lambda w, tmp: {"steps": "1,2,4"}, ["TDM-unify", "timesteps=()"]),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_is_one_line_exit_2(name, world, tmp_path, capsys):
    make, words = BAD[name]
    settings = {"teacher": world.cogvideox, "prompts": world.prompts, "tracker": "none",
                "output_dir": tmp_path / "run", **make(world, tmp_path)}
    code = main(["--preset", "cogvideox-2b", "--device", "cpu", "--no-progress",
                 *[f"{k}={v}" for k, v in settings.items()]])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert all(word in err[0] for word in words), (words, err[0])
    assert not (tmp_path / "run").exists()
    with pytest.raises(UserError):  # the same from the library call
        train(config(world, tmp_path / "lib", **make(world, tmp_path)), "cpu", show_progress=False)


def test_bench_runs_the_cogvideox_backbone(world, tmp_path):
    """The bench's builder name is the preset's; its official-layout reference runs on 5-D latents too."""
    from methods.tdm.bench import main as bench

    out = tmp_path / "bench.json"
    assert bench(["--backbone", "cogvideox-2b", "--pipeline", str(world.cogvideox), "--out", str(out),
                  "--batch-size", "2", "--iterations", "2", "--device", "cpu"]) == 0
    record = json.loads(out.read_text())
    assert record["config"]["backbone"] == "cogvideox" and record["iterations"] == 2
    assert "error" not in record["official_layout"] and record["official_layout"]["final_losses"]
