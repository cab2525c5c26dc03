"""Building the tiny-cogvideox world (CPU, a few steps per stage: the path, not the quality).

The real build runs on a GPU (`python -m harness.worlds.tiny_cogvideox.build --out ... --device cuda`).
"""
import json
import time

import numpy as np
import pytest
import torch

from harness.worlds.tiny_cogvideox import build as b
from harness.worlds.tiny_cogvideox import classifier as clf
from harness.worlds.tiny_cogvideox import dataset, models

pytestmark = pytest.mark.usefixtures("one_thread")

from conftest import TINY_COGVIDEOX_BUILD as TINY


@pytest.fixture(scope="module")
def built(tiny_cogvideox_world):
    return tiny_cogvideox_world


def test_a_build_writes_a_pipeline_a_classifier_and_its_record(built):
    from diffusers import CogVideoXPipeline

    record = json.loads((built / "build.json").read_text())
    assert {k: v["steps_done"] for k, v in record["stages"].items() if "steps_done" in v} == \
        {"vae": 1, "classifier": 2, "teacher": 2}
    assert record["config"]["bank_size"] == 4 and record["commit"] and record["device"]
    gaps = record["stages"]["teacher"]["motion_gap"]  # the EMA teacher before, during and after (probe_every=1)
    assert [g["step"] for g in gaps] == [0, 1, 2] and all(set(g) == {"step", "t900", "t500"} for g in gaps)
    pipe = CogVideoXPipeline.from_pretrained(str(built / "pipeline"), local_files_only=True)
    assert pipe.vae.config.scaling_factor == pytest.approx(record["stages"]["encode"]["scaling_factor"])
    pipe.set_progress_bar_config(disable=True)
    frames = pipe(prompt="a red circle moving left on a grey background", num_frames=dataset.FRAMES,
                  height=dataset.RESOLUTION, width=dataset.RESOLUTION, num_inference_steps=2,
                  max_sequence_length=models.TEXT_LENGTH, output_type="np",
                  generator=torch.Generator().manual_seed(0)).frames
    assert frames.shape == (1, dataset.FRAMES, dataset.RESOLUTION, dataset.RESOLUTION, 3) and np.isfinite(frames).all()
    classifier = clf.ClipClassifier.load(built / "classifier")
    clips = dataset.render([s.clip for s in dataset.sample_clips(0, 2)], seed=0)
    assert classifier.features(clips).shape == (2, classifier.feature_dim)


def test_a_second_build_into_the_same_folder_is_refused(built, capsys):
    assert b.main(["--out", str(built), "--device", "cpu", *TINY]) == 2
    assert "already holds a build" in capsys.readouterr().err


@pytest.mark.parametrize("setting, words", [("vae_step=2", ["unknown setting", "did you mean 'vae_steps'"]),
                                            ("teacher_lr=fast", ["teacher_lr must be a number"]),
                                            ("ema_decay=1.5", ["ema_decay must lie in [0, 1)"])])
def test_bad_settings_are_one_line_exit_2(tmp_path, capsys, setting, words):
    code = b.main(["--out", str(tmp_path / "w"), "--device", "cpu", setting])
    err = capsys.readouterr().err
    assert code == 2 and all(w in err for w in words) and err.count("\n") == 1 and not (tmp_path / "w").exists()


def test_the_teachers_target_is_diffusers_velocity():
    scheduler = models.make_scheduler()
    alphas = scheduler.alphas_cumprod.float()
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(5, 3, 8, 4, 4, generator=g), torch.randn(5, 3, 8, 4, 4, generator=g)
    t = torch.tensor([0, 250, 500, 900, 999])
    x_t, v = b.v_target(alphas, x0, eps, t)
    torch.testing.assert_close(x_t, scheduler.add_noise(x0, eps, t).float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(v, scheduler.get_velocity(x0, eps, t).float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(v[-1], -x0[-1], rtol=0, atol=1e-6)  # zero terminal SNR: at t = 999, v = -x0


def test_the_teacher_learns_a_small_bank():
    """24 steps on 8 fixed latents: the v-prediction loss falls (a teacher that cannot fit
    8 clips would never learn the world)."""
    torch.manual_seed(0)
    tokenizer = models.make_tokenizer()
    captions = [s.caption for s in dataset.sample_clips(0, 8)]
    latents = torch.randn(8, 3, models.LATENT_CHANNELS, 8, 8) * 0.5 + torch.linspace(-1, 1, 8).view(8, 1, 1, 1, 1)
    bank = (latents, b.token_ids(tokenizer, captions), 1.0)
    cfg = b.BuildConfig(teacher_steps=24, teacher_batch=8, teacher_lr=2e-3, teacher_warmup=1, ema_decay=0.0)
    *_, losses = b.train_teacher(cfg, bank, tokenizer, torch.device("cpu"))
    assert len(losses) == 24 and np.mean(losses[-6:]) < 0.75 * np.mean(losses[:6]), losses


def test_a_build_continues_from_a_previous_one(built, tmp_path):
    """--previous keeps the VAE, classifier and scaling factor and trains the same teacher further."""
    from diffusers import CogVideoXTransformer3DModel

    out = tmp_path / "more"
    assert b.main(["--out", str(out), "--device", "cpu", "--previous", str(built), *TINY]) == 0
    record = json.loads((out / "build.json").read_text())
    before = json.loads((built / "build.json").read_text())
    assert set(record["stages"]) == {"encode", "teacher"} and record["continued_from"]["commit"] == before["commit"]
    assert record["stages"]["encode"]["scaling_factor"] == before["stages"]["encode"]["scaling_factor"]
    assert (out / "classifier" / "model.safetensors").read_bytes() == \
        (built / "classifier" / "model.safetensors").read_bytes()
    old, new = (CogVideoXTransformer3DModel.from_pretrained(w / "pipeline" / "transformer") for w in (built, out))
    moved = [not torch.equal(p, q) for p, q in zip(old.parameters(), new.parameters())]
    assert any(moved)


def test_max_minutes_stops_the_teacher_at_the_builds_deadline():
    tokenizer = models.make_tokenizer()
    bank = (torch.randn(4, 3, models.LATENT_CHANNELS, 8, 8), b.token_ids(tokenizer, ["a red circle"] * 4), 1.0)
    cfg = b.BuildConfig(teacher_steps=50, teacher_batch=2, max_minutes=1.0)
    *_, losses = b.train_teacher(cfg, bank, tokenizer, torch.device("cpu"), started=time.time() - 61)
    assert losses == []
    *_, losses = b.train_teacher(cfg, bank, tokenizer, torch.device("cpu"), started=time.time())
    assert len(losses) == 50


def test_a_previous_folder_without_a_build_is_one_line(tmp_path, capsys):
    assert b.main(["--out", str(tmp_path / "w"), "--device", "cpu", "--previous", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is not a world build" in err and err.count("\n") == 1 and not (tmp_path / "w").exists()
