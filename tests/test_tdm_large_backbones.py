"""TDM on SDXL and PixArt-alpha, end to end on CPU with tiny pipelines of the real classes.

The folders come from methods.common.random_pipelines with tiny configs (tests/tiny_models.py):
StableDiffusionXLPipeline (UNet with the text_time added embedding, CLIPTextModel and
CLIPTextModelWithProjection) and PixArtAlphaPipeline (PixArtTransformer2DModel with learned
sigma, T5EncoderModel). Each run is 2-4 iterations of batch 2 at 16 x 16 pixels.
"""
import json
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from methods.common.errors import UserError
from methods.common.random_pipelines import (PIXART_TRANSFORMER, SDXL_TEXT, SDXL_TEXT_2, SDXL_UNET, T5_XXL,
                                             main as random_main, random_pixart_pipeline, random_sdxl_pipeline,
                                             small_t5_tokenizer)
from methods.tdm.backbones import PixArtBackbone, SDXLBackbone
from methods.tdm.presets import resolve
from methods.tdm.train import main, train
from tiny_models import TINY_PIXART, TINY_SDXL

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = ["a red circle on a grey background", "a small blue square at the top left on a white background",
           "A photo of an astronaut riding a horse!"]
K4_TIMESTEPS = [999, 749, 499, 249]
PIPELINES = {"sdxl": "StableDiffusionXLPipeline", "pixart": "PixArtAlphaPipeline"}
DENOISER = {"sdxl": "unet", "pixart": "transformer"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("large-backbones")
    (root / "prompts.txt").write_text("\n".join(PROMPTS))
    return SimpleNamespace(sdxl=random_sdxl_pipeline(root / "sdxl", **TINY_SDXL),
                           pixart=random_pixart_pipeline(root / "pixart", **TINY_PIXART),
                           prompts=root / "prompts.txt")


def config(preset: str, world, out, **overrides):
    settings = {"teacher": getattr(world, preset), "prompts": world.prompts, "batch_size": 2, "resolution": 0,
                "tracker": "none", "output_dir": out, "log_every": 1, **overrides}
    return resolve(preset, [f"{k}={v}" for k, v in settings.items()])


def run(preset: str, world, out, **overrides) -> dict:
    return train(config(preset, world, out, **overrides), "cpu", show_progress=False)


def load(preset: str, folder):
    import diffusers

    pipe = getattr(diffusers, PIPELINES[preset]).from_pretrained(str(folder), local_files_only=True)
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


def generate(preset: str, pipe):
    kwargs = {"use_resolution_binning": False} if preset == "pixart" else {}
    return pipe([PROMPTS[0]], num_inference_steps=4, guidance_scale=1.0, output_type="np", height=16, width=16,
                generator=torch.Generator().manual_seed(0), **kwargs).images


# --- the real-size configurations -------------------------------------------------------------------


def test_real_size_configs_are_the_published_architectures():
    """Parameter counts of SDXL-base-1.0's UNet and PixArt-XL-2's transformer, built on the meta device."""
    from accelerate import init_empty_weights
    from diffusers import PixArtTransformer2DModel, UNet2DConditionModel

    with init_empty_weights():
        unet, transformer = UNet2DConditionModel(**SDXL_UNET), PixArtTransformer2DModel(**PIXART_TRANSFORMER)
    assert sum(p.numel() for p in unet.parameters()) == 2_567_463_684
    assert sum(p.numel() for p in transformer.parameters()) == 610_856_096
    # The pieces fit together: SDXL's UNet reads both encoders' widths, PixArt's reads T5's.
    assert SDXL_UNET["cross_attention_dim"] == SDXL_TEXT["hidden_size"] + SDXL_TEXT_2["hidden_size"]
    assert SDXL_UNET["projection_class_embeddings_input_dim"] == SDXL_TEXT_2["projection_dim"] + 6 * 256
    assert PIXART_TRANSFORMER["caption_channels"] == T5_XXL["d_model"]
    assert random_main(["sd3", "somewhere"]) == 2


def test_small_t5_tokenizer_has_t5_ids_and_covers_any_ascii_text():
    tok = small_t5_tokenizer()
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    ids = tok(PROMPTS[0]).input_ids
    assert len(ids) == len(PROMPTS[0].split()) + 1 and ids[-1] == 1  # one piece per world word, then </s>
    assert tok.unk_token_id not in tok(PROMPTS[2]).input_ids


# --- conditions as the pipelines build them ---------------------------------------------------------


def _batch(backbone):
    from methods.tdm.randomness import BatchRandom

    return backbone.batch(BatchRandom(torch.Generator().manual_seed(0), 2), step=0)


@torch.no_grad()
def test_sdxl_conditions_are_the_pipelines_own(world, tmp_path):
    backbone = SDXLBackbone(config("sdxl", world, tmp_path / "run"), torch.device("cpu"), torch.float32)
    noise, cond, uncond = _batch(backbone)
    assert noise.shape == (2, 4, 8, 8) and backbone.latent_shape == (4, 8, 8)
    prompts = list(backbone.prompts(0, 0, 2))
    embeds, _, pooled, _ = backbone.pipe.encode_prompt(prompts, device="cpu", do_classifier_free_guidance=False)
    torch.testing.assert_close(cond["encoder_hidden_states"], embeds, rtol=0, atol=0)
    torch.testing.assert_close(cond["text_embeds"], pooled, rtol=0, atol=0)
    assert cond["time_ids"].tolist() == [[16.0, 16, 0, 0, 16, 16]] * 2 == uncond["time_ids"].tolist()
    # SDXL-base's force_zeros_for_empty_prompt: the pipeline's unconditional branch is zeros.
    assert backbone.pipe.config.force_zeros_for_empty_prompt
    assert uncond["encoder_hidden_states"].abs().max() == 0 and uncond["text_embeds"].abs().max() == 0
    assert uncond["encoder_hidden_states"].shape == cond["encoder_hidden_states"].shape


@torch.no_grad()
def test_pixart_conditions_with_and_without_micro_conditions(world, tmp_path):
    from methods.tdm.trainer import teacher_x0

    # As the 1024-px models: micro-conditions on (their embedding needs a width divisible by 3).
    micro = random_pixart_pipeline(tmp_path / "pixart-ms", **{**TINY_PIXART, "transformer": {
        **TINY_PIXART["transformer"], "use_additional_conditions": True, "num_attention_heads": 3,
        "cross_attention_dim": 24}})
    for teacher, extra in ((world.pixart, set()), (micro, {"resolution", "aspect_ratio"})):
        backbone = PixArtBackbone(config("pixart", world, tmp_path / "run", teacher=teacher), torch.device("cpu"),
                                  torch.float32)
        noise, cond, uncond = _batch(backbone)
        assert set(cond) == set(uncond) == {"encoder_hidden_states", "encoder_attention_mask"} | extra
        assert cond["encoder_hidden_states"].shape == (2, 120, 8) == uncond["encoder_hidden_states"].shape
        assert uncond["encoder_attention_mask"].sum(1).tolist() == [1, 1]  # "" is </s> alone
        if extra:
            assert cond["resolution"].tolist() == [[16.0, 16.0]] * 2 and cond["aspect_ratio"].tolist() == [[1.0]] * 2
        x0 = teacher_x0(backbone.roles, noise, torch.tensor([999, 500]), cond, uncond, 3.5)
        assert x0.shape == noise.shape and torch.isfinite(x0).all()


# --- training and export ----------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["sdxl", "pixart"])
def test_trains_and_exports_a_working_pipeline(preset, world, tmp_path):
    from diffusers import DPMSolverMultistepScheduler

    out = tmp_path / preset
    summary = run(preset, world, out, iterations=3, checkpoint_every=3)
    assert summary["exported"] == [str(out / "student-K4")]
    logged = losses(out)
    assert [r["step"] for r in logged] == [1, 2, 3]
    assert all(torch.isfinite(torch.tensor(v)) for r in logged for k, v in r.items() if k.startswith("loss/"))

    teacher = getattr(load(preset, getattr(world, preset)), DENOISER[preset]).state_dict()
    trained = checkpoint(out, 3)
    assert trained.keys() == teacher.keys()
    assert any(not torch.equal(v, teacher[k]) for k, v in trained.items())  # the student moved

    pipe = load(preset, out / "student-K4")
    assert type(pipe).__name__ == PIPELINES[preset] and isinstance(pipe.scheduler, DPMSolverMultistepScheduler)
    assert (pipe.scheduler.config.algorithm_type, pipe.scheduler.config.solver_order,
            pipe.scheduler.config.timestep_spacing) == ("dpmsolver++", 2, "trailing")
    exported = getattr(pipe, DENOISER[preset]).state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in exported.items())
    card = json.loads((out / "student-K4" / "tdm_student.json").read_text())
    assert card["timesteps"] == K4_TIMESTEPS and card["lora"] is None and card["config"]["backbone"] == preset
    image = generate(preset, pipe)
    assert image.shape == (1, 16, 16, 3) and (image >= 0).all() and (image <= 1).all()


RESUME = {  # case -> (preset, settings)
    "sdxl-unify": ("sdxl", dict(steps="1,2,4")),  # K drawn per iteration, step conditioning trained
    "pixart-lora": ("pixart", dict(lora_rank=2)),
}


@pytest.mark.parametrize("case", list(RESUME))
def test_resume_is_bit_identical(case, world, tmp_path):
    """2 iterations, then the same command for 4, equals 4 uninterrupted iterations bit for bit."""
    preset, settings = RESUME[case]
    common = dict(checkpoint_every=2, **settings)
    whole, halves = tmp_path / "whole", tmp_path / "halves"
    run(preset, world, whole, iterations=4, **common)
    run(preset, world, halves, iterations=2, export="false", **common)
    assert run(preset, world, halves, iterations=4, **common)["resumed_from"] == 2
    for file in ("model.safetensors", "model_1.safetensors", "optimizer.bin", "optimizer_1.bin"):
        a, b = checkpoint(whole, 4, file), checkpoint(halves, 4, file)  # student, fake score, their AdamW
        assert a.keys() == b.keys() and all(torch.equal(v, b[k]) for k, v in a.items()), file
    assert losses(whole) == losses(halves)
    first, last = checkpoint(whole, 2), checkpoint(whole, 4)
    assert any(not torch.equal(v, first[k]) for k, v in last.items())  # training moved (else "identical" is empty)
    if preset == "sdxl":
        assert last["time_embedding.cond_proj.weight"].abs().max() > 0  # the K embedding was trained
        for K in (1, 2, 4):  # one plain UNet per K, the condition folded in
            unet = load("sdxl", whole / f"student-K{K}").unet
            assert unet.config.time_cond_proj_dim is None and unet.config.addition_embed_type == "text_time"


def test_sdxl_lora_loads_into_the_teachers_pipeline(world, tmp_path):
    out = tmp_path / "lora"
    run("sdxl", world, out, iterations=2, checkpoint_every=2, lora_rank=2)
    folder = out / "student-K4"
    card = json.loads((folder / "tdm_student.json").read_text())
    assert card["lora"] == "lora" and "load_lora_weights" in card["lora_how_to_load"]
    exported = load("sdxl", folder).unet.state_dict()
    pipe = load("sdxl", world.sdxl)
    teacher = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    pipe.load_lora_weights(str(folder / "lora"))
    pipe.fuse_lora()
    pipe.unload_lora_weights()
    fused = pipe.unet.state_dict()
    differ = {k for k, v in exported.items() if not torch.equal(v, teacher[k])}
    assert differ and all(k.endswith(".weight") and ".attn" in k for k in differ)  # only attention moved
    for key in exported:
        torch.testing.assert_close(fused[key], exported[key], rtol=0, atol=1e-6)


def test_pixart_lora_loads_with_peft(world, tmp_path):
    from peft import PeftModel

    out = tmp_path / "lora"
    run("pixart", world, out, iterations=2, checkpoint_every=2, lora_rank=2)
    folder = out / "student-K4"
    assert sorted(p.name for p in (folder / "lora").iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    exported = load("pixart", folder).transformer.state_dict()
    teacher = load("pixart", world.pixart).transformer
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    fused = PeftModel.from_pretrained(teacher, str(folder / "lora")).merge_and_unload().state_dict()
    assert fused.keys() == exported.keys()
    assert any(not torch.equal(v, before[k]) for k, v in exported.items())
    for key in exported:
        torch.testing.assert_close(fused[key], exported[key], rtol=0, atol=1e-6)


# --- what PixArt cannot do, and wrong folders --------------------------------------------------------


def test_pixart_unify_with_step_conditioning_is_one_line_user_error(world, tmp_path, capsys):
    argv = ["--preset", "pixart", "--device", "cpu", "--no-progress", f"teacher={world.pixart}",
            f"prompts={world.prompts}", "steps=1,2,4", "tracker=none", f"output_dir={tmp_path / 'run'}"]
    assert main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "step count K" in err[0] and "steps=4" in err[0], err
    assert not (tmp_path / "run").exists()
    # Without step conditioning TDM-unify trains (the Table 5 ablation's setting).
    summary = run("pixart", world, tmp_path / "no-cond", iterations=1, steps="1,2,4", step_conditioning="false",
                  checkpoint_every=0, export="false")
    assert summary["iterations"] == 1


@pytest.mark.parametrize("preset, teacher, words", [
    ("sdxl", "pixart", ["lacks the pipeline component 'unet'"]),
    ("pixart", "tiny-sd15", ["lacks the pipeline component 'transformer'"]),
])
def test_a_folder_of_the_wrong_pipeline_is_a_user_error(preset, teacher, words, world, tmp_path):
    teacher = getattr(world, teacher, teacher)
    with pytest.raises(UserError) as caught:
        run(preset, world, tmp_path / "run", teacher=teacher, iterations=1)
    assert all(word in str(caught.value) for word in words) and "\n" not in str(caught.value)


def test_pixart_resolution_must_fit_its_patches(world, tmp_path):
    with pytest.raises(UserError, match="multiple of 4"):  # VAE factor 2 x patch size 2
        run("pixart", world, tmp_path / "run", resolution=18, iterations=1)


def test_bench_runs_the_sdxl_backbone(world, tmp_path):
    from methods.tdm.bench import main as bench

    out = tmp_path / "bench.json"
    assert bench(["--backbone", "sdxl", "--pipeline", str(world.sdxl), "--out", str(out), "--batch-size", "2",
                  "--iterations", "2", "--device", "cpu", "resolution=0"]) == 0
    record = json.loads(out.read_text())
    assert record["config"]["backbone"] == "sdxl" and record["iterations"] == 2


def test_sdxl_second_stage_starts_the_student_from_the_first_and_the_rest_from_the_teacher(world, tmp_path):
    """App. D: stage 2 (1024 px) continues stage 1's student; teacher and fake score are SDXL's."""
    run("sdxl", world, tmp_path / "stage1", iterations=2, checkpoint_every=0, lr_student=1e-3)
    stage1 = tmp_path / "stage1" / "student-K4"
    backbone = SDXLBackbone(config("sdxl", world, tmp_path / "stage2", student_init=stage1), torch.device("cpu"),
                            torch.float32)
    exported = load("sdxl", stage1).unet.state_dict()
    teacher = load("sdxl", world.sdxl).unet.state_dict()
    student, fake = backbone.modules["student"].state_dict(), backbone.modules["fake_score"].state_dict()
    assert any(not torch.equal(exported[k], teacher[k]) for k in teacher)  # stage 1 moved the student
    assert all(torch.equal(student[k], exported[k]) for k in exported)
    assert all(torch.equal(fake[k], teacher[k]) for k in teacher)
    assert all(torch.equal(backbone.roles.teacher.model.state_dict()[k], teacher[k]) for k in teacher)
    with pytest.raises(UserError, match="student_init"):
        SDXLBackbone(config("sdxl", world, tmp_path / "bad", student_init=tmp_path / "nowhere"), torch.device("cpu"),
                     torch.float32)
