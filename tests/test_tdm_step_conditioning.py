"""methods.tdm.step_conditioning: TDM-unify's K embedding (Eq. 8) on a tiny random SD-1.5-style UNet.

A step-conditioned copy starts exactly equal to the UNet it was copied from (cond_proj = 0),
and folding the condition for one K into linear_1's bias gives a plain UNet with the same output.
"""
import pytest
import torch
from diffusers import UNet2DConditionModel

from methods.tdm.step_conditioning import (STEP_EMBEDDING_DIM, fold_step_conditioning, step_embedding,
                                           with_step_conditioning)
from tiny_models import TEXT_WIDTH, tiny_unet

D, L, N = TEXT_WIDTH, 5, 3  # text width, text length, batch


pytestmark = pytest.mark.usefixtures("one_thread")




def randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


X = randn(N, 4, 8, 8, seed=1)
T = torch.tensor([999, 500, 10])
TEXT = randn(N, L, D, seed=2)


def run(unet, step_cond=None):
    with torch.no_grad():
        return unet(X, T, encoder_hidden_states=TEXT, timestep_cond=step_cond, return_dict=False)[0]


def embed(K, n=N):
    return step_embedding(torch.full((n,), K), STEP_EMBEDDING_DIM)


def randomise_cond_proj(model, seed=3, std=0.05):
    with torch.no_grad():
        proj = model.time_embedding.cond_proj
        proj.weight.copy_(randn(*proj.weight.shape, seed=seed) * std)


def test_step_embedding_is_distinct_per_K_and_bounded():
    e = step_embedding(torch.tensor([1, 2, 4, 4]))
    assert e.shape == (4, STEP_EMBEDDING_DIM) and e.dtype == torch.float32
    assert torch.equal(e[2], e[3])
    assert not torch.allclose(e[0], e[1]) and not torch.allclose(e[1], e[2])
    assert e.abs().max() <= 1.0


def test_with_step_conditioning_starts_equal_to_the_original():
    unet = tiny_unet()
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    model = with_step_conditioning(unet)
    assert model.config.time_cond_proj_dim == STEP_EMBEDDING_DIM
    assert unet.config.time_cond_proj_dim is None  # the original is untouched
    assert all(torch.equal(before[k], v) for k, v in unet.state_dict().items())
    proj = model.time_embedding.cond_proj
    assert proj.weight.shape == (unet.time_embedding.linear_1.in_features, STEP_EMBEDDING_DIM)
    assert torch.count_nonzero(proj.weight) == 0
    reference = run(unet)
    assert reference.abs().max() > 0.01
    for step_cond in (None, embed(1), embed(4), randn(N, STEP_EMBEDDING_DIM, seed=9) * 10):
        assert torch.equal(run(model, step_cond), reference)


def test_step_conditioning_reaches_the_output_once_cond_proj_is_trained():
    model = with_step_conditioning(tiny_unet())
    randomise_cond_proj(model)
    out1, out4 = run(model, embed(1)), run(model, embed(4))
    assert (out1 - out4).abs().max() > 1e-3
    assert (out1 - run(tiny_unet())).abs().max() > 1e-3


def test_with_step_conditioning_refuses_a_model_that_already_has_a_cond_proj():
    with pytest.raises(ValueError, match="time_cond_proj_dim"):
        with_step_conditioning(tiny_unet(time_cond_proj_dim=8))


@pytest.mark.parametrize("K", [1, 4])
def test_fold_gives_a_plain_unet_equal_to_the_conditioned_one(K):
    model = with_step_conditioning(tiny_unet())
    randomise_cond_proj(model)
    plain = fold_step_conditioning(model, K)
    assert type(plain) is UNet2DConditionModel
    assert plain.config.time_cond_proj_dim is None
    assert plain.time_embedding.cond_proj is None
    assert not any("cond_proj" in key for key in plain.state_dict())
    assert plain.dtype == torch.float32
    # Only linear_1's bias moves; every other weight is the conditioned model's own.
    state = model.state_dict()
    for key, value in plain.state_dict().items():
        if key != "time_embedding.linear_1.bias":
            assert torch.equal(value, state[key]), key
    assert not torch.equal(plain.time_embedding.linear_1.bias, model.time_embedding.linear_1.bias)

    expected = run(model, embed(K))
    folded = run(plain)
    torch.testing.assert_close(folded, expected, rtol=0, atol=1e-5)
    other = 4 if K == 1 else 1
    assert (folded - run(model, embed(other))).abs().max() > 1e-3  # the fold is specific to K


def test_fold_of_a_zero_cond_proj_is_the_original():
    unet = tiny_unet()
    plain = fold_step_conditioning(with_step_conditioning(unet), 2)
    assert all(torch.equal(v, unet.state_dict()[k]) for k, v in plain.state_dict().items())


def test_a_unet_from_an_old_config_without_time_cond_proj_dim(tmp_path):
    """SD-1.5's own unet/config.json predates time_cond_proj_dim: diffusers then lists the key
    in `_use_default_values`, and from_config drops listed keys unless they are cleared."""
    import json

    tiny_unet().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["time_cond_proj_dim"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    unet = UNet2DConditionModel.from_pretrained(tmp_path).eval()
    assert "time_cond_proj_dim" in unet.config["_use_default_values"]
    model = with_step_conditioning(unet)
    assert model.config.time_cond_proj_dim == STEP_EMBEDDING_DIM
    assert torch.equal(run(model, embed(2)), run(unet))
    randomise_cond_proj(model)
    torch.testing.assert_close(run(fold_step_conditioning(model, 2)), run(model, embed(2)), rtol=0, atol=1e-5)
