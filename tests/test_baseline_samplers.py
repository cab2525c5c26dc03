"""Every registered sampler recipe, run on tiny random pipelines of the real classes with its
weights written in the release's file layout (tests/baseline_weights.py).

The contract, for each recipe: uint8 output of the right shape; the same seed gives the same
image and an image does not depend on its batch; the network evaluations per sample are the
recipe's (one per step, two with real CFG, one with embedded guidance); the denoiser sees the
timesteps the recipe fixes; `describe()` is complete and JSON-serialisable, with the sha256 of
every attached file. Then per attachment kind: a state dict replaces the UNet exactly, delta
weights add to it, a LoRA fuses to W + scale * (alpha / r) * B A. Missing weights end in one line.
"""
import hashlib
import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from baselines import RECIPES, Weights, get_recipe, load_sampler
from baselines.recipes import table2_recipes
from baseline_weights import tiny, to_kohya, write_weights_folder

pytestmark = pytest.mark.usefixtures("one_thread")
LOCAL = list(RECIPES.values())
PROMPTS = ["a red cube on the left", "two blue spheres", "a green cone"]


@pytest.fixture(scope="module")
def weights_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights") / "root"
    return write_weights_folder(root, [*LOCAL, *table2_recipes()])


class _Timesteps:
    """Records the timestep the denoiser is called with, and the rows of each call."""

    def __init__(self, denoiser):
        self.seen = []
        denoiser.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        t = args[1] if len(args) > 1 else kwargs["timestep"]
        self.seen.append(float(torch.as_tensor(t).flatten()[0]))


@pytest.mark.parametrize("name", [r.name for r in LOCAL] + ["tcd-sd15@realistic-vision"])
def test_sampler_contract(name, weights_root):
    recipe = tiny(get_recipe(name))
    sampler = load_sampler(recipe, weights_root=weights_root, batch_size=3)
    timesteps = _Timesteps(sampler.denoiser)

    images = sampler.sample(PROMPTS, [0, 1, 2])
    size = recipe.height
    assert images.dtype == np.uint8 and images.shape[0] == 3 and images.shape[-3:] == (size, size, 3)
    assert images.ndim == (5 if recipe.frames else 4)  # video: (n, frames, H, W, 3)
    assert sampler.last_nfe == recipe.nfe
    resolved = sampler.resolved_timesteps()
    assert len(resolved) == recipe.steps
    assert timesteps.seen[:recipe.steps] == pytest.approx(resolved, abs=1e-3)
    if recipe.timesteps is not None:
        assert resolved == pytest.approx(list(recipe.timesteps))

    alone = sampler.sample(PROMPTS[1:2], [1])  # the same seed, in a batch of one
    assert np.abs(alone[0].astype(int) - images[1].astype(int)).max() <= 1
    other_seed = sampler.sample(PROMPTS[1:2], [7])
    assert np.abs(other_seed[0].astype(int) - images[1].astype(int)).max() > 1

    if recipe.weights:  # the attached weights reached the denoiser
        bare = _base_denoiser(recipe, weights_root)
        attached = sampler.denoiser.state_dict()
        assert any(not torch.equal(attached[k].float(), v.float()) for k, v in bare.items())

    record = json.loads(json.dumps(sampler.describe()))
    for key in ("name", "method", "base", "scheduler", "scheduler_full_config", "resolved_timesteps", "nfe",
                "guidance", "guidance_mode", "eta", "source", "attached", "dtype"):
        assert key in record, key
    assert record["scheduler_class"] == recipe.scheduler
    for attached in record["attached"]:
        path = Path(attached["local_path"])
        files = {".": path} if path.is_file() else {str(f.relative_to(path)): f for f in path.rglob("*.safetensors")}
        hashes = {".": attached["sha256"]} if path.is_file() else attached["sha256"]
        assert files and all(hashes[k] == hashlib.sha256(f.read_bytes()).hexdigest() for k, f in files.items())


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _base_denoiser(recipe, weights_root):
    bare = replace(tiny(recipe), name=recipe.name + "-bare", weights=())
    return _state(load_sampler(bare, weights_root=weights_root).denoiser)


def test_unet_state_dict_replaces_the_unet_exactly(weights_root):
    recipe = get_recipe("dmd2-sdxl-4step")
    unet = load_sampler(tiny(recipe), weights_root=weights_root).denoiser
    saved = torch.load(weights_root / "tianweiy/DMD2/dmd2_sdxl_4step_unet_fp16.bin", weights_only=True)
    assert all(torch.equal(unet.state_dict()[k], v.float()) for k, v in saved.items())


def test_delta_weights_add_to_the_base(weights_root):
    from diffusers import UNet2DConditionModel
    recipe = get_recipe("perflow-sd15-4step")
    base = _base_denoiser(recipe, weights_root)
    merged = load_sampler(tiny(recipe), weights_root=weights_root).denoiser.state_dict()
    delta = UNet2DConditionModel.from_pretrained(weights_root / "hansyan/perflow-sd15-delta-weights",
                                                 variant="v0-1").state_dict()
    for k in ("conv_in.weight", "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"):
        assert torch.allclose(merged[k], base[k] + delta[k], atol=1e-6)


@pytest.mark.parametrize("scale,kohya", [(1.0, False), (0.125, False), (0.125, True)])
def test_fused_lora_is_w_plus_scale_b_a(weights_root, tmp_path, scale, kohya):
    from safetensors.torch import load_file, save_file
    recipe = get_recipe("tcd-sd15")
    released = weights_root / "h1t/TCD-SD15-LoRA/pytorch_lora_weights.safetensors"
    lora = load_file(released)
    weights = replace(recipe.weights[0], scale=scale)
    if kohya:  # the same LoRA in kohya's key naming: diffusers' loader must read it to the same weights
        root = tmp_path / "kohya"
        shutil.copytree(weights_root / recipe.base, root / recipe.base)
        (root / "test/kohya-lora").mkdir(parents=True)
        save_file(to_kohya(lora), root / "test/kohya-lora/lora.safetensors")
        weights = replace(weights, repo="test/kohya-lora", file="lora.safetensors")
    else:
        root = weights_root
    recipe = replace(recipe, weights=(weights,))
    base = _base_denoiser(recipe, root)
    fused = load_sampler(tiny(recipe), weights_root=root).denoiser.state_dict()
    for module in ("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
                   "up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_out.0"):
        down, up = lora[f"unet.{module}.lora.down.weight"], lora[f"unet.{module}.lora.up.weight"]
        expected = base[f"{module}.weight"] + scale * (4 / 4) * up @ down  # lora_alpha / r = 1
        assert torch.allclose(fused[f"{module}.weight"], expected, atol=1e-5), module
        assert not torch.allclose(fused[f"{module}.weight"], base[f"{module}.weight"], atol=1e-4), module


def test_embedded_guidance_needs_a_guidance_embedding(weights_root):
    recipe = replace(tiny(get_recipe("lcm-lora-sd15")), guidance=8.0, guidance_mode="embedded")
    with pytest.raises(ValueError, match="time_cond_proj_dim"):
        load_sampler(recipe, weights_root=weights_root)


def test_recipes_are_consistent():
    assert len(RECIPES) >= 25
    for recipe in RECIPES.values():
        assert recipe.source, recipe.name
        assert recipe.nfe == recipe.steps * (2 if recipe.guidance_mode == "cfg" else 1)
        if recipe.scheduler == "TCDScheduler":
            assert recipe.eta is not None, f"{recipe.name}: TCD's eta must be passed explicitly"
    # the rows of Table 1 that have a public checkpoint, each with a recipe
    methods = {r.method for r in RECIPES.values()}
    for method in ("InstaFlow", "PeRFlow", "Hyper-SD", "LCM-dreamshaper", "TCD", "DMD2", "LCM", "SDXL-Turbo-512",
                   "SDXL-Lightning", "YOSO-512", "LCM-1024", "TDM"):
        assert method in methods, method
    with pytest.raises(ValueError, match="did you mean 'tcd-sdxl'"):
        get_recipe("tcd-sdx")
    with pytest.raises(ValueError, match="fixes its timesteps"):
        get_recipe("dmd2-sdxl-4step").with_steps(2)
    with pytest.raises(ValueError):
        Weights("lora2", "a/b")


def _cli(*args, env_home: Path):
    env = {"PATH": "/usr/bin:/bin", "HF_HOME": str(env_home), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path.cwd())}
    return subprocess.run([sys.executable, "-m", "baselines", *args], capture_output=True, text=True, env=env)


def test_missing_weights_end_in_one_line_and_write_nothing(tmp_path):
    out = tmp_path / "out"
    run = _cli("sample", "dmd2-sdxl-4step", "--prompt", "a cube", "--out", str(out),
               "--weights-root", str(tmp_path / "empty"), env_home=tmp_path / "hf")
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("error: dmd2-sdxl-4step: missing weights")
    assert "tianweiy/DMD2 : dmd2_sdxl_4step_unet_fp16.bin" in run.stderr
    assert "stabilityai/stable-diffusion-xl-base-1.0" in run.stderr
    assert not out.exists()


def test_sample_command_writes_images_and_a_manifest(tmp_path, weights_root):
    out = tmp_path / "out"
    run = _cli("sample", "hyper-sd15-4step", "--prompt", "a red cube", "--prompt", "a blue sphere", "--seeds", "0,1",
               "--height", "64", "--width", "64", "--out", str(out), "--weights-root", str(weights_root),
               env_home=tmp_path / "hf")
    assert run.returncode == 0, run.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert [(m["prompt"], m["seed"]) for m in manifest] == [("a red cube", 0), ("a red cube", 1),
                                                             ("a blue sphere", 0), ("a blue sphere", 1)]
    assert all((out / m["file"]).is_file() for m in manifest)
    assert json.loads((out / "sampler.json").read_text())["resolved_timesteps"] == [999, 749, 499, 249]


def test_cogvideox_ddim_on_listed_timesteps_is_exact_for_the_true_velocity():
    """With the exact v of a point mass at x0, deterministic DDIM lands on x0 from pure noise at
    t = 999 (alpha = 0 under zero terminal SNR), stepping 999 -> 856 -> 665 -> 399 -> clean."""
    from baselines.cogvideox_scheduler import CogVideoXTimestepsDDIMScheduler
    scheduler = CogVideoXTimestepsDDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", prediction_type="v_prediction",
        rescale_betas_zero_snr=True, snr_shift_scale=3.0, timestep_spacing="trailing", set_alpha_to_one=True)
    scheduler.set_timesteps(timesteps=[999, 856, 665, 399])
    assert [int(t) for t in scheduler.timesteps] == [999, 856, 665, 399]
    x0 = torch.randn(2, 3, 4, 5, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert float(scheduler.alphas_cumprod[999]) == pytest.approx(0.0, abs=1e-6)
    visited = []
    for t in scheduler.timesteps:
        a, s = scheduler.alphas_cumprod[t].double().sqrt(), (1 - scheduler.alphas_cumprod[t].double()).sqrt()
        eps = (x - a * x0) / s
        visited.append(int(t))
        x = scheduler.step(a * eps - s * x0, t, x).prev_sample
    assert visited == [999, 856, 665, 399]
    assert torch.allclose(x, x0, atol=1e-6)
    with pytest.raises(ValueError, match="decrease"):
        scheduler.set_timesteps(timesteps=[399, 999])
