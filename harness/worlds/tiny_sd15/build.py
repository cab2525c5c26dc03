"""Build the tiny-sd15 world from nothing: tokenizer, VAE, classifier, then the teacher.

    python -m harness.world build --out build/tiny-sd15 --device cuda

writes a diffusers pipeline folder (`pipeline/`), the attribute classifier
(`classifier/`) and `build.json` (settings, device, steps, losses, wall time per stage).
Every stage is seeded; the numbers in the README come from the shipped build.json.
"""
from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from harness.worlds.building import autocast, check_build_config, ema_update, fit, timed
from methods.common.provenance import provenance

from . import classifier as clf
from . import dataset, models, tokenizer


@dataclass(frozen=True)
class BuildConfig:
    seed: int = 0
    vae_steps: int = 2000
    vae_batch: int = 128
    vae_lr: float = 1e-3
    vae_kl_weight: float = 1e-6  # SD's VAE is close to a plain autoencoder too
    classifier_steps: int = 2000
    classifier_batch: int = 256
    classifier_lr: float = 1e-3
    bank_size: int = 200_000  # captioned training scenes, encoded once to latents
    teacher_steps: int = 20_000
    teacher_batch: int = 256
    teacher_lr: float = 3e-4
    teacher_warmup: int = 500
    teacher_compile: bool = False  # torch.compile the UNet and text encoder (small models are launch-bound)
    teacher_max_minutes: float = 0.0  # stop the teacher early at this wall time (0: never); steps done are recorded
    caption_dropout: float = 0.1  # empty caption, for classifier-free guidance
    ema_decay: float = 0.999

    def __post_init__(self):
        check_build_config(self)


def _adamw(params, lr):
    return torch.optim.AdamW(params, lr=lr, weight_decay=0.0)


def _scene_batches(seed: int, batch: int, steps: int, device):
    """Fresh training scenes for each step, rendered on `device`: (images, labels)."""
    for step in range(steps):
        step_seed = seed * 1_000_003 + step
        chunk = [s.scene for s in dataset.sample_scenes(step_seed, batch)]
        yield dataset.render(chunk, seed=step_seed, device=device), dataset.scene_labels(chunk)


def train_vae(cfg: BuildConfig, device) -> tuple[torch.nn.Module, list[float]]:
    vae = models.make_vae().to(device)

    def loss_of(batch):
        images, _ = batch
        posterior = vae.encode(images).latent_dist
        recon = vae.decode(posterior.sample()).sample.float()
        return (recon - images).abs().mean() + (recon - images).square().mean() \
            + cfg.vae_kl_weight * posterior.kl().mean()

    batches = _scene_batches(cfg.seed + 1, cfg.vae_batch, cfg.vae_steps, device)
    return fit(vae, cfg.vae_lr, tqdm(batches, total=cfg.vae_steps, desc="vae"), loss_of, device)


def train_classifier(cfg: BuildConfig, device) -> tuple[clf.AttributeClassifier, list[float]]:
    model = clf.AttributeClassifier().to(device)
    gen = torch.Generator(device).manual_seed(cfg.seed + 2)

    def loss_of(batch):
        images, labels = batch
        return model.loss(clf.augment(images, gen), {k: v.to(device) for k, v in labels.items()})

    batches = _scene_batches(cfg.seed + 2, cfg.classifier_batch, cfg.classifier_steps, device)
    return fit(model, cfg.classifier_lr, tqdm(batches, total=cfg.classifier_steps, desc="classifier"), loss_of, device)


@torch.no_grad()
def encode_bank(cfg: BuildConfig, vae, tok, device, scaling_factor: float | None = None, chunk: int = 2048):
    """Latents (scaled) and token ids of `bank_size` training scenes, plus the VAE's scaling
    factor (measured here unless given)."""
    samples = dataset.sample_scenes(cfg.seed + 3, cfg.bank_size)
    latents = []
    for start in tqdm(range(0, len(samples), chunk), desc="encode"):
        scenes = [s.scene for s in samples[start:start + chunk]]
        with autocast(device):
            latents.append(vae.encode(dataset.render(scenes, seed=cfg.seed + 3 + start, device=device)).latent_dist.sample().float())
    latents = torch.cat(latents)
    scaling_factor = scaling_factor or float(1.0 / latents.std())  # SD's 0.18215 was chosen the same way
    ids = tok([s.caption for s in samples], padding="max_length", max_length=tok.model_max_length,
              return_tensors="pt").input_ids
    return latents * scaling_factor, ids.to(device), scaling_factor


def train_teacher(cfg: BuildConfig, bank, tok, device, init=None):
    """Epsilon-prediction denoising on the latent bank, text encoder trained jointly, with EMA.

    `init` = (unet, text_encoder) continues from an earlier build instead of from scratch.
    """
    latents, ids, _ = bank
    if init is None:
        init = models.make_unet(), models.make_text_encoder(len(tok), tok.bos_token_id, tok.eos_token_id)
    unet, text_encoder = (m.to(device).train().requires_grad_(True) for m in init)
    ema = [copy.deepcopy(unet).requires_grad_(False), copy.deepcopy(text_encoder).requires_grad_(False)]
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = _adamw(params, cfg.teacher_lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / cfg.teacher_warmup))
    alphas_cumprod = models.make_scheduler().alphas_cumprod.to(device)
    empty = tok([""], padding="max_length", max_length=tok.model_max_length, return_tensors="pt").input_ids.to(device)
    gen = torch.Generator(device).manual_seed(cfg.seed + 4)
    forward_unet, forward_text = (torch.compile(m) if cfg.teacher_compile else m for m in (unet, text_encoder))
    losses, start = [], time.time()
    for _ in tqdm(range(cfg.teacher_steps), desc="teacher", mininterval=10):
        if cfg.teacher_max_minutes and time.time() - start > 60 * cfg.teacher_max_minutes:
            break
        idx = torch.randint(len(latents), (cfg.teacher_batch,), generator=gen, device=device)
        x0, tokens = latents[idx], ids[idx]
        drop = torch.rand(len(idx), generator=gen, device=device) < cfg.caption_dropout
        tokens = torch.where(drop[:, None], empty, tokens)
        t = torch.randint(0, len(alphas_cumprod), (len(idx),), generator=gen, device=device)
        eps = torch.randn(x0.shape, generator=gen, device=device)
        a = alphas_cumprod[t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
        with autocast(device):
            pred = forward_unet(x_t, t, forward_text(tokens)[0]).sample
        loss = (pred.float() - eps).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        ema_update(ema, [unet, text_encoder], cfg.ema_decay)
        losses.append(loss.detach())  # no .item() here: it would wait for the GPU every step
    return ema[0].eval(), ema[1].eval(), torch.stack(losses).tolist()


def build(out: str | Path, cfg: BuildConfig = BuildConfig(), device: str = "cuda",
          previous: str | Path | None = None) -> dict:
    """Train every model and write the world; with `previous`, reuse that build's VAE and
    classifier and continue training its teacher."""
    device = torch.device(device)
    torch.manual_seed(cfg.seed)
    out = Path(out)
    record = {"config": asdict(cfg), **provenance(device), "stages": {}}
    tok = tokenizer.build_tokenizer()
    if previous is None:
        vae = timed(record, "vae", lambda: train_vae(cfg, device))
        classifier = timed(record, "classifier", lambda: train_classifier(cfg, device))
        init = None
    else:
        vae, classifier, init = _load_previous(Path(previous), record)
    start = time.time()
    bank = encode_bank(cfg, vae.to(device), tok, device, scaling_factor=None if init is None else vae.config.scaling_factor)
    record["stages"]["encode"] = {"seconds": round(time.time() - start, 1), "scaling_factor": bank[2]}
    unet, text_encoder = timed(record, "teacher", lambda: train_teacher(cfg, bank, tok, device, init))
    _save(out, vae, text_encoder, tok, unet, classifier, bank[2])
    record["seconds_total"] = round(sum(s["seconds"] for s in record["stages"].values()), 1)
    (out / "build.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def _load_previous(previous: Path, record: dict):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    record["continued_from"] = json.loads((previous / "build.json").read_text())
    pipeline = previous / "pipeline"
    vae = AutoencoderKL.from_pretrained(pipeline / "vae").eval()
    unet = UNet2DConditionModel.from_pretrained(pipeline / "unet")
    text_encoder = CLIPTextModel.from_pretrained(pipeline / "text_encoder")
    return vae, clf.AttributeClassifier.load(previous / "classifier"), (unet, text_encoder)


def _save(out: Path, vae, text_encoder, tok, unet, classifier, scaling_factor: float) -> None:
    from diffusers import StableDiffusionPipeline

    vae.register_to_config(scaling_factor=scaling_factor)
    pipe = StableDiffusionPipeline(
        vae=vae.float().cpu(), text_encoder=text_encoder.float().cpu(), tokenizer=tok, unet=unet.float().cpu(),
        scheduler=models.make_scheduler(), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out / "pipeline", safe_serialization=True)
    classifier.float().cpu().save(out / "classifier")
