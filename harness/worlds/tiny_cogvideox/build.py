"""Build the tiny-cogvideox world from nothing: 3D VAE, classifier, then the teacher.

    python -m harness.worlds.tiny_cogvideox.build --out build/tiny-cogvideox --device cuda [key=value ...]
    python -m harness.worlds.tiny_cogvideox.build --out build/more --previous build/tiny-cogvideox max_minutes=8

writes a diffusers CogVideoXPipeline folder (`pipeline/`), the clip classifier (`classifier/`) and
`build.json` (settings, provenance, steps, losses, wall time per stage). Every stage is seeded.
The teacher learns CogVideoX's own objective: v-prediction on the zero-terminal-SNR schedule of
CogVideoX-2b, with its T5 encoder trained jointly (it starts random) and an EMA of both.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from tqdm.auto import tqdm

from harness.worlds.building import autocast, check_build_config, ema_update, fit, timed
from methods.common.provenance import provenance

from . import classifier as clf
from . import dataset, location, models
from .models import token_ids, v_target
from .motion_probe import make_probe, motion_gap


# The VAE and transformer are stored in half precision (about 22 MB instead of 44), which diffusers
# loads as float32; the small T5 stays float32, as transformers would load it in the stored dtype.
SAVE_DTYPE = torch.float16


@dataclass(frozen=True)
class BuildConfig:
    seed: int = 0
    vae_steps: int = 3000
    vae_batch: int = 32
    vae_lr: float = 1e-3
    vae_kl_weight: float = 1e-6
    classifier_steps: int = 2000
    classifier_batch: int = 128
    classifier_lr: float = 1e-3
    bank_size: int = 50_000       # captioned training clips, encoded once to latents
    teacher_steps: int = 20_000
    teacher_batch: int = 256
    teacher_lr: float = 3e-4
    teacher_warmup: int = 500
    teacher_compile: bool = False  # torch.compile the transformer and T5 (small models are launch-bound)
    teacher_max_minutes: float = 0.0  # stop the teacher early at this wall time (0: never); steps done are recorded
    max_minutes: float = 0.0  # stop the teacher when the whole build has run this long (0: never), so that a
                              # build fits a fixed time slot whatever the earlier stages cost
    caption_dropout: float = 0.1  # empty caption, for classifier-free guidance
    ema_decay: float = 0.999
    probe_every: int = 500  # log the EMA teacher's motion gap (motion_probe.py) every this many steps (0: never)
    probe_size: int = 512   # clips in that probe

    def __post_init__(self):
        check_build_config(self)
        if not self.max_minutes >= 0:
            raise ValueError(f"max_minutes must be 0 or more, got {self.max_minutes}")
        if self.probe_every < 0 or self.probe_size < 1:
            raise ValueError(f"probe_every must be 0 or more and probe_size at least 1, got {self.probe_every} "
                             f"and {self.probe_size}")


def _clip_batches(seed: int, batch: int, steps: int, device):
    """Fresh training clips for each step, rendered on `device`: (clips (n, F, 3, H, W), labels)."""
    for step in range(steps):
        step_seed = seed * 1_000_003 + step
        chunk = [s.clip for s in dataset.sample_clips(step_seed, batch)]
        yield dataset.render(chunk, seed=step_seed, device=device), dataset.clip_labels(chunk)


def _channels_first(clips: torch.Tensor) -> torch.Tensor:
    """(n, F, 3, H, W) -> (n, 3, F, H, W), the 3D VAE's layout."""
    return clips.permute(0, 2, 1, 3, 4)


def train_vae(cfg: BuildConfig, device) -> tuple[torch.nn.Module, list[float]]:
    vae = models.make_vae().to(device)

    def loss_of(batch):
        x = _channels_first(batch[0])
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample.float()
        return (recon - x).abs().mean() + (recon - x).square().mean() + cfg.vae_kl_weight * posterior.kl().mean()

    batches = _clip_batches(cfg.seed + 1, cfg.vae_batch, cfg.vae_steps, device)
    return fit(vae, cfg.vae_lr, tqdm(batches, total=cfg.vae_steps, desc="vae"), loss_of, device)


def train_classifier(cfg: BuildConfig, device) -> tuple[clf.ClipClassifier, list[float]]:
    model = clf.ClipClassifier().to(device)
    gen = torch.Generator(device).manual_seed(cfg.seed + 2)

    def loss_of(batch):
        clips, labels = batch
        return model.loss(clf.augment(clips, gen), {k: v.to(device) for k, v in labels.items()})

    batches = _clip_batches(cfg.seed + 2, cfg.classifier_batch, cfg.classifier_steps, device)
    return fit(model, cfg.classifier_lr, tqdm(batches, total=cfg.classifier_steps, desc="classifier"), loss_of, device)


@torch.no_grad()
def encode_bank(cfg: BuildConfig, vae, tokenizer, device, scaling_factor: float | None = None, chunk: int = 512):
    """Latents (n, F', C, h, w), scaled as the pipeline expects them, and token ids of `bank_size`
    training clips, plus the VAE's scaling factor (measured here unless given)."""
    samples = dataset.sample_clips(cfg.seed + 3, cfg.bank_size)
    latents = []
    for start in tqdm(range(0, len(samples), chunk), desc="encode"):
        clips = dataset.render([s.clip for s in samples[start:start + chunk]], seed=cfg.seed + 3 + start, device=device)
        with autocast(device):
            latents.append(vae.encode(_channels_first(clips)).latent_dist.sample().float().permute(0, 2, 1, 3, 4))
    latents = torch.cat(latents)
    scaling_factor = scaling_factor or float(1.0 / latents.std())  # CogVideoX-2b's 1.15258426 was chosen so
    return latents * scaling_factor, token_ids(tokenizer, [s.caption for s in samples]).to(device), scaling_factor


def train_teacher(cfg: BuildConfig, bank, tokenizer, device, init=None, started: float | None = None,
                  probe=None, gaps: list | None = None):
    """v-prediction on the latent bank (CogVideoX-2b's schedule), T5 trained jointly, with EMA.

    `init` = (transformer, text_encoder) continues from an earlier build instead of from scratch;
    `started`: the build's start (time.time()), which `max_minutes` counts from. With a `probe`
    (motion_probe.MotionProbe), the EMA teacher's motion gap is appended to `gaps` before the first
    step, every `probe_every` steps and after the last.
    """
    latents, ids, _ = bank
    if init is None:
        init = models.make_transformer(), models.make_text_encoder(tokenizer)
    transformer, text_encoder = (m.to(device).train().requires_grad_(True) for m in init)
    ema = [copy.deepcopy(transformer).requires_grad_(False), copy.deepcopy(text_encoder).requires_grad_(False)]
    params = list(transformer.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.teacher_lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(cfg.teacher_warmup, 1)))
    alphas_cumprod = models.make_scheduler().alphas_cumprod.to(device, torch.float32)  # the scheduler keeps float64
    empty = token_ids(tokenizer, [""]).to(device)
    gen = torch.Generator(device).manual_seed(cfg.seed + 4)
    forward, encode = (torch.compile(m) if cfg.teacher_compile else m for m in (transformer, text_encoder))
    losses, start = [], time.time()
    deadlines = [start + 60 * cfg.teacher_max_minutes] if cfg.teacher_max_minutes else []
    if cfg.max_minutes:
        deadlines.append((started or start) + 60 * cfg.max_minutes)

    def log_gap(step: int):
        if probe is not None and gaps is not None:
            gaps.append({"step": step, **motion_gap(ema[0], ema[1], probe, alphas_cumprod)})

    log_gap(0)
    for step in tqdm(range(cfg.teacher_steps), desc="teacher", mininterval=10):
        if deadlines and time.time() > min(deadlines):
            break
        if step and cfg.probe_every and step % cfg.probe_every == 0:
            log_gap(step)
        idx = torch.randint(len(latents), (cfg.teacher_batch,), generator=gen, device=device)
        x0, tokens = latents[idx], ids[idx]
        drop = torch.rand(len(idx), generator=gen, device=device) < cfg.caption_dropout
        tokens = torch.where(drop[:, None], empty, tokens)
        t = torch.randint(0, len(alphas_cumprod), (len(idx),), generator=gen, device=device)
        x_t, v = v_target(alphas_cumprod, x0, torch.randn(x0.shape, generator=gen, device=device), t)
        with autocast(device):
            pred = forward(hidden_states=x_t, encoder_hidden_states=encode(tokens)[0], timestep=t, return_dict=False)[0]
        loss = (pred.float() - v).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        ema_update(ema, [transformer, text_encoder], cfg.ema_decay)
        losses.append(loss.detach())  # no .item() here: it would wait for the GPU every step
    if losses and (not gaps or gaps[-1]["step"] != len(losses)):
        log_gap(len(losses))
    return ema[0].eval(), ema[1].eval(), torch.stack(losses).tolist() if losses else []


def build(out: str | Path, cfg: BuildConfig = BuildConfig(), device: str = "cuda",
          previous: str | Path | None = None) -> dict:
    """Train every model and write the world; with `previous`, reuse that build's VAE, classifier and
    scaling factor and continue training its teacher (from its EMA weights)."""
    started = time.time()
    device = torch.device(device)
    torch.manual_seed(cfg.seed)
    out = Path(out)
    record = {"config": asdict(cfg), **provenance(device), "stages": {}}
    tokenizer = models.make_tokenizer()
    if previous is None:
        vae = timed(record, "vae", lambda: train_vae(cfg, device))
        classifier = timed(record, "classifier", lambda: train_classifier(cfg, device))
        init = None
    else:
        vae, classifier, init = _load_previous(Path(previous), record)
    start = time.time()
    bank = encode_bank(cfg, vae.to(device), tokenizer, device,
                       scaling_factor=None if init is None else vae.config.scaling_factor)
    record["stages"]["encode"] = {"seconds": round(time.time() - start, 1), "scaling_factor": bank[2]}
    probe = make_probe(cfg.seed + 5, cfg.probe_size, vae, tokenizer, bank[2], device) if cfg.probe_every else None
    gaps: list = []
    transformer, text_encoder = timed(record, "teacher",
                                      lambda: train_teacher(cfg, bank, tokenizer, device, init, started, probe, gaps))
    if probe is not None:
        record["stages"]["teacher"]["motion_gap"] = gaps
    vae.register_to_config(scaling_factor=bank[2])
    pipe = models.make_pipeline(tokenizer, text_encoder.float().cpu(), vae.cpu().to(SAVE_DTYPE),
                                transformer.cpu().to(SAVE_DTYPE))
    pipe.save_pretrained(out / "pipeline", safe_serialization=True)
    classifier.float().cpu().save(out / "classifier")
    record["seconds_total"] = round(sum(s["seconds"] for s in record["stages"].values()), 1)
    (out / "build.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def _load_previous(previous: Path, record: dict):
    from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel
    from transformers import T5EncoderModel

    record["continued_from"] = json.loads((previous / "build.json").read_text())
    pipeline = previous / "pipeline"
    vae = AutoencoderKLCogVideoX.from_pretrained(pipeline / "vae").eval()
    transformer = CogVideoXTransformer3DModel.from_pretrained(pipeline / "transformer")
    text_encoder = T5EncoderModel.from_pretrained(pipeline / "text_encoder")
    return vae, clf.ClipClassifier.load(previous / "classifier"), (transformer, text_encoder)


def parse_overrides(items: list[str]) -> BuildConfig:
    """key=value settings of BuildConfig; a bad one is a ValueError naming it."""
    from methods.common.errors import did_you_mean

    kinds = {f.name: f.type for f in fields(BuildConfig)}
    values = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or key not in kinds:
            raise ValueError(f"unknown setting {item!r}{did_you_mean(key, kinds)}; settings: {', '.join(kinds)}")
        if kinds[key] in (bool, "bool"):
            if text.lower() not in ("true", "false"):
                raise ValueError(f"{key} must be true or false, got {text!r}")
            values[key] = text.lower() == "true"
            continue
        try:
            values[key] = (int if kinds[key] in (int, "int") else float)(text)
        except ValueError:
            raise ValueError(f"{key} must be a number, got {text!r}") from None
    return BuildConfig(**values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.worlds.tiny_cogvideox.build", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--previous", help="a finished build: reuse its VAE and classifier, continue its teacher")
    parser.add_argument("settings", nargs="*", metavar="key=value", help="BuildConfig fields")
    args = parser.parse_args(argv)
    try:
        cfg = parse_overrides(args.settings)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if Path(args.out, "build.json").exists():
        print(f"error: {args.out} already holds a build (build.json); choose another --out", file=sys.stderr)
        return 2
    lacking = location.missing(Path(args.previous)) if args.previous else []
    if lacking:
        print(f"error: --previous {args.previous} is not a world build: {', '.join(lacking)} missing there",
              file=sys.stderr)
        return 2
    record = build(args.out, cfg, args.device, previous=args.previous)
    print(json.dumps({k: record[k] for k in ("stages", "seconds_total")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
