"""The shipped tiny-sd15 pipeline folder: real diffusers classes, SD-1.5's scheduler, seeded sampling."""
import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from baselines.base import Sampler, SamplerSpec
from baselines.teacher import TeacherSampler
from harness.worlds.tiny_sd15.judge import PIPELINE

PROMPTS = ["a small red circle at the top left on a grey background",
           "a blue square and a yellow triangle on a white background"]


def test_folder_is_small_and_complete():
    files = [p for p in PIPELINE.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 30 * 2**20
    names = {str(p.relative_to(PIPELINE)) for p in files}
    assert {"model_index.json", "unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
            "text_encoder/model.safetensors", "scheduler/scheduler_config.json"} <= names


def test_loads_with_plain_diffusers_and_has_sd15_classes_and_schedule():
    pipe = StableDiffusionPipeline.from_pretrained(PIPELINE, safety_checker=None, feature_extractor=None)
    assert isinstance(pipe.unet, UNet2DConditionModel) and isinstance(pipe.vae, AutoencoderKL)
    assert isinstance(pipe.text_encoder, CLIPTextModel) and isinstance(pipe.tokenizer, CLIPTokenizer)
    assert "CrossAttnDownBlock2D" in pipe.unet.config.down_block_types
    assert pipe.unet.config.cross_attention_dim == pipe.text_encoder.config.hidden_size
    c = pipe.scheduler.config
    assert (c.beta_schedule, c.beta_start, c.beta_end, c.num_train_timesteps, c.prediction_type) == (
        "scaled_linear", 0.00085, 0.012, 1000, "epsilon")
    out = pipe(PROMPTS[:1], num_inference_steps=2, guidance_scale=3.5, output_type="np",
               generator=torch.Generator().manual_seed(0)).images
    assert out.shape == (1, 64, 64, 3) and np.isfinite(out).all()


@pytest.fixture(scope="module")
def teacher(shipped_pipeline):
    spec = SamplerSpec("teacher-dpmpp-4", "tiny-sd15", str(PIPELINE), "dpmpp", 4, 3.5)
    return TeacherSampler(spec, pipe=shipped_pipeline)


def test_same_seed_same_image_other_seed_other_image(teacher):
    assert isinstance(teacher, Sampler)
    a = teacher.sample(PROMPTS, [0, 1])
    b = teacher.sample(PROMPTS, [0, 1])
    c = teacher.sample(PROMPTS, [2, 3])
    assert a.dtype == np.uint8 and a.shape == (2, 64, 64, 3)
    assert np.array_equal(a, b)
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 5


def test_an_image_depends_on_its_seed_not_its_batch(teacher):
    together = teacher.sample(PROMPTS, [5, 6])
    alone = teacher.sample(PROMPTS[1:], [6])
    assert np.abs(together[1].astype(int) - alone[0].astype(int)).max() <= 1


def test_describe_records_the_resolved_timesteps(teacher):
    d = teacher.describe()
    assert d["scheduler"] == "dpmpp" and d["steps"] == 4
    assert d["resolved_timesteps"][0] == 999 and len(d["resolved_timesteps"]) == 4
