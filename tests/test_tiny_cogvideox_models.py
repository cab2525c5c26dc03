"""The tiny-cogvideox world's models: a CogVideoXPipeline of the real classes, only small (CPU).

Random weights: these check shapes, loading and the trainer's path, not quality (the world's
teacher is trained on a GPU and is not built yet).
"""
import json

import numpy as np
import pytest
import torch

from harness.worlds.tiny_cogvideox import dataset, models

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-cogvideox") / "pipeline"
    models.make_pipeline().save_pretrained(str(out))
    return out


def _load(folder):
    from diffusers import CogVideoXPipeline

    pipe = CogVideoXPipeline.from_pretrained(str(folder), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_the_folder_loads_as_a_cogvideox_pipeline_and_generates_clips(folder):
    pipe = _load(folder)

    def generate(seed):
        return pipe(prompt="a red circle moving left on a grey background", num_frames=dataset.FRAMES,
                    height=dataset.RESOLUTION, width=dataset.RESOLUTION, num_inference_steps=2, guidance_scale=3.0,
                    max_sequence_length=models.TEXT_LENGTH, output_type="np",
                    generator=torch.Generator().manual_seed(seed)).frames

    a = generate(0)
    assert a.shape == (1, dataset.FRAMES, dataset.RESOLUTION, dataset.RESOLUTION, 3)
    assert np.array_equal(a, generate(0)) and not np.array_equal(a, generate(1))


def test_a_clip_is_a_latent_of_three_frames_and_back(folder):
    pipe = _load(folder)
    clip = dataset.render([s.clip for s in dataset.sample_clips(0, 1)], seed=0)  # (1, F, 3, H, W)
    with torch.no_grad():
        latent = pipe.vae.encode(clip.permute(0, 2, 1, 3, 4)).latent_dist.mode()  # the VAE takes (n, 3, F, H, W)
        assert latent.shape == (1, models.LATENT_CHANNELS, 3, dataset.RESOLUTION // 8, dataset.RESOLUTION // 8)
        assert pipe.vae.decode(latent).sample.shape == (1, 3, dataset.FRAMES, dataset.RESOLUTION, dataset.RESOLUTION)


def test_every_caption_fits_the_text_length_in_known_words(folder):
    pipe = _load(folder)
    unknown = pipe.tokenizer.unk_token_id
    for s in dataset.sample_clips(0, 500):
        ids = pipe.tokenizer(s.caption).input_ids
        assert len(ids) <= models.TEXT_LENGTH and unknown not in ids
        assert len(ids) == len(s.caption.split()) + 1  # one piece per word, then </s>


def test_the_schedule_is_cogvideox_2bs(folder):
    scheduler = _load(folder).scheduler
    assert type(scheduler).__name__ == "CogVideoXDDIMScheduler"
    assert scheduler.config.prediction_type == "v_prediction" and scheduler.config.snr_shift_scale == 3.0
    assert scheduler.alphas_cumprod[-1] < 1e-6  # zero terminal SNR (rescaled betas)


def test_the_video_trainer_runs_on_the_world(folder, tmp_path):
    """Two TDM iterations of the cogvideox-2b preset (LoRA) on the world's pipeline and captions."""
    from methods.tdm.presets import resolve
    from methods.tdm.train import train

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(s.caption for s in dataset.sample_clips(0, 16)))
    config = resolve("cogvideox-2b", [f"teacher={folder}", f"prompts={prompts}", "batch_size=2", "iterations=2",
                                      "tracker=none", f"output_dir={tmp_path / 'run'}", "export=false",
                                      "checkpoint_every=0", "log_every=1"])
    summary = train(config, "cpu", show_progress=False)
    assert summary["iterations"] == 2
    logged = [json.loads(line) for line in (tmp_path / "run" / "losses.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [1, 2]
    assert all(np.isfinite(r[key]) for r in logged for key in ("loss/fake_score", "loss/student"))
