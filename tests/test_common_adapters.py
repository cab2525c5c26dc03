"""methods.common.adapters: tiny random backbones of the real diffusers classes behind one x0/eps API."""
from types import SimpleNamespace

import pytest
import torch
from diffusers import (CogVideoXDDIMScheduler, CogVideoXPipeline, CogVideoXTransformer3DModel,
                       PixArtTransformer2DModel, UNet2DConditionModel)

from harness.worlds.tiny_sd15.models import SD15_SCHEDULER_CONFIG
from methods.common.adapters import (CogVideoXAdapter, PixArtAdapter, SDXLUNetAdapter, UNetAdapter,
                                     classifier_free_guidance, cogvideox_rotary_emb)
from methods.common.schedule import NoiseSchedule, to_v
from tiny_models import TEXT_WIDTH, tiny_unet

SD15 = NoiseSchedule.from_config(SD15_SCHEDULER_CONFIG)
T = torch.tensor([0, 500, 999])
D, L = TEXT_WIDTH, 5  # text width and length


pytestmark = pytest.mark.usefixtures("one_thread")




def tiny_sdxl_unet():
    return tiny_unet(addition_embed_type="text_time", addition_time_embed_dim=4,
                     projection_class_embeddings_input_dim=12 + 6 * 4)


def tiny_pixart():
    torch.manual_seed(0)
    return PixArtTransformer2DModel(
        num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8, num_layers=1,
        cross_attention_dim=16, sample_size=8, patch_size=2, caption_channels=D).eval()


def tiny_cogvideox(attention_head_dim=8, **extra):
    torch.manual_seed(0)
    return CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=attention_head_dim, in_channels=4, out_channels=4, time_embed_dim=8,
        text_embed_dim=D, num_layers=1, sample_width=8, sample_height=8, sample_frames=5, patch_size=2,
        temporal_compression_ratio=4, max_text_seq_length=L, **extra).eval()


def cogvideox_schedule():
    return NoiseSchedule.from_scheduler(CogVideoXDDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", snr_shift_scale=3.0,
        prediction_type="v_prediction"))


def randn(*shape, seed=1, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


def text(seed=2, n=3, dtype=torch.float32):
    return {"encoder_hidden_states": randn(n, L, D, seed=seed, dtype=dtype)}


def sdxl_cond(seed=2):
    return {**text(seed), "text_embeds": randn(3, 12, seed=seed + 1),
            "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]]).repeat(3, 1)}


CASES = {  # name -> (adapter factory, x_t shape, cond factory)
    "unet": (lambda: UNetAdapter(tiny_unet(), SD15, "epsilon"), (3, 4, 8, 8), text),
    "sdxl": (lambda: SDXLUNetAdapter(tiny_sdxl_unet(), SD15, "epsilon"), (3, 4, 8, 8), sdxl_cond),
    "pixart": (lambda: PixArtAdapter(tiny_pixart(), SD15, "epsilon"), (3, 4, 8, 8),
               lambda seed=2: {**text(seed), "encoder_attention_mask": torch.ones(3, L, dtype=torch.long)}),
    "cogvideox": (lambda: CogVideoXAdapter(tiny_cogvideox(), cogvideox_schedule(), "v_prediction"),
                  (3, 2, 4, 8, 8), text),
}


@pytest.mark.parametrize("name", list(CASES))
@torch.no_grad()
def test_shapes_dtypes_and_round_trip(name):
    make, shape, cond = CASES[name]
    adapter, x_t = make(), randn(*shape)
    x0, eps = adapter.x0(x_t, T, cond()), adapter.eps(x_t, T, cond())
    assert x0.shape == eps.shape == x_t.shape and x0.dtype == eps.dtype == torch.float32
    alpha, sigma = adapter.schedule.alpha_sigma(T, x_t)
    torch.testing.assert_close(alpha * x0 + sigma * eps, x_t, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(adapter.x0_eps(x_t, T, cond())[0], x0)


@torch.no_grad()
def test_float64_passes_through():
    """No dtype is hard-coded: a float64 model and float64 latents give float64 predictions."""
    adapter = UNetAdapter(tiny_unet().double(), SD15, "epsilon")
    x_t = randn(3, 4, 8, 8, dtype=torch.float64)
    x0, eps = adapter.x0_eps(x_t, T, text(dtype=torch.float64))
    assert x0.dtype == eps.dtype == torch.float64
    alpha, sigma = SD15.alpha_sigma(T, x_t)
    torch.testing.assert_close(alpha * x0 + sigma * eps, x_t)


@torch.no_grad()
def test_cogvideox_v_prediction_is_consistent():
    adapter, x_t = CASES["cogvideox"][0](), randn(3, 2, 4, 8, 8)
    assert adapter.schedule.alphas_cumprod[-1] < SD15.alphas_cumprod[-1]  # the SNR shift is in
    x0, eps = adapter.x0_eps(x_t, T, text())
    alpha, sigma = adapter.schedule.alpha_sigma(T, x_t)
    torch.testing.assert_close(to_v(x0, eps, alpha, sigma), adapter.raw(x_t, T, text()), rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_cogvideox_rotary_matches_pipeline_and_runs():
    model = tiny_cogvideox(attention_head_dim=16, use_rotary_positional_embeddings=True)  # RoPE splits the head 4 ways
    x_t = randn(3, 2, 4, 8, 8)
    fake_pipe = SimpleNamespace(transformer=model, vae_scale_factor_spatial=8)
    want = CogVideoXPipeline._prepare_rotary_positional_embeddings(fake_pipe, 64, 64, 2, torch.device("cpu"))
    for got, ref in zip(cogvideox_rotary_emb(model.config, x_t), want):
        torch.testing.assert_close(got, ref)
    x0 = CogVideoXAdapter(model, cogvideox_schedule(), "v_prediction").x0(x_t, T, text())
    assert x0.shape == x_t.shape and torch.isfinite(x0).all()


@torch.no_grad()
def test_pixart_keeps_only_the_epsilon_half_of_learned_sigma():
    adapter, x_t = CASES["pixart"][0](), randn(3, 4, 8, 8)
    assert adapter.model.config.out_channels == 8
    raw = adapter.raw(x_t, T, CASES["pixart"][2]())
    full = adapter.model(x_t, encoder_hidden_states=text()["encoder_hidden_states"], timestep=T,
                         added_cond_kwargs={"resolution": None, "aspect_ratio": None}, return_dict=False)[0]
    assert raw.shape[1] == 4 and full.shape[1] == 8
    torch.testing.assert_close(raw, full[:, :4])
    assert adapter.x0(x_t, T, CASES["pixart"][2]()).shape[1] == x_t.shape[1]


@torch.no_grad()
def test_step_cond_with_zero_projection_changes_nothing():
    model = tiny_unet(time_cond_proj_dim=8)
    model.time_embedding.cond_proj.weight.zero_()
    adapter, x_t = UNetAdapter(model, SD15, "epsilon"), randn(3, 4, 8, 8)
    with_step = adapter.x0(x_t, T, text(), step_cond=randn(3, 8, seed=5))
    torch.testing.assert_close(with_step, adapter.x0(x_t, T, text()))
    with pytest.raises(ValueError, match="shape"):
        adapter.x0(x_t, T, text(), step_cond=randn(3, 4))


@pytest.mark.parametrize("name", ["unet", "pixart", "cogvideox"])
def test_step_cond_without_time_cond_proj_dim_raises(name):
    make, shape, cond = CASES[name]
    with pytest.raises(ValueError, match="time_cond_proj_dim"):
        make().x0(randn(*shape), T, cond(), step_cond=randn(3, 8))


def counted(adapter):
    """Count the backbone's forward calls with a forward hook."""
    calls = []
    adapter.model.register_forward_hook(lambda *args: calls.append(1))
    return calls


@pytest.mark.parametrize("name", ["unet", "sdxl", "pixart", "cogvideox"])
@torch.no_grad()
def test_cfg_is_one_batched_forward_of_the_right_combination(name):
    make, shape, cond_fn = CASES[name]
    adapter, x_t, cond, uncond = make(), randn(*shape), cond_fn(seed=2), cond_fn(seed=7)
    x0_c, x0_u = adapter.x0(x_t, T, cond), adapter.x0(x_t, T, uncond)
    calls = counted(adapter)
    guided = classifier_free_guidance(adapter, x_t, T, cond, uncond, 4.5)
    assert len(calls) == 1
    torch.testing.assert_close(guided, x0_u + 4.5 * (x0_c - x0_u), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(classifier_free_guidance(adapter, x_t, T, cond, uncond, 1.0), x0_c,
                               rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_cfg_passes_step_cond_to_both_halves():
    adapter, x_t = UNetAdapter(tiny_unet(time_cond_proj_dim=8), SD15, "epsilon"), randn(3, 4, 8, 8)
    step = randn(3, 8, seed=5)
    x0_c = adapter.x0(x_t, T, text(2), step)
    torch.testing.assert_close(classifier_free_guidance(adapter, x_t, T, text(2), text(7), 1.0, step), x0_c,
                               rtol=1e-4, atol=1e-4)


def test_cfg_rejects_mismatched_sequence_lengths():
    adapter = CASES["unet"][0]()
    uncond = {"encoder_hidden_states": randn(3, L + 2, D)}
    with pytest.raises(ValueError, match="sequence length"):
        classifier_free_guidance(adapter, randn(3, 4, 8, 8), T, text(), uncond, 2.0)
    with pytest.raises(ValueError, match="same keys"):
        classifier_free_guidance(adapter, randn(3, 4, 8, 8), T, text(), {}, 2.0)


def test_bad_prediction_type_is_refused():
    with pytest.raises(ValueError, match="prediction_type"):
        UNetAdapter(tiny_unet(), SD15, "sample")
    assert UNetAdapter.from_config(tiny_unet(), SD15_SCHEDULER_CONFIG).prediction_type == "epsilon"
