"""Where a few-step video sample spends its time: prompt encoding, the transformer's steps, the 3D VAE.

    python -m methods.tdm.bench_sampling --out results/bench/cogvideox-2b-sampling-h200.json [--steps 4] [--clips 3]
    python -m methods.tdm.bench_sampling --pipeline harness/worlds/tiny_cogvideox/assets/pipeline --device cpu --out f.json

Builds a random CogVideoX-2b pipeline folder (methods.common.random_pipelines; the weights do not
change the time) unless `--pipeline` names one, loads it in bf16 (fp32 on a CPU), and for each of
`--clips` clips at the transformer's native size (CogVideoX-2b: 49 frames of 480 x 720) times,
synchronised: the T5 encoding of one prompt, `--steps` steps of the transformer with classifier-free
guidance when `--guidance` > 1 (the 4-step student's guidance is 1), the VAE decode of the latents,
and the same decode tiled (`vae.enable_tiling()`, diffusers' option for memory). The first clip is
a warm-up and is not counted. Records the mean seconds of each part, the decode's share of the
sample, and the peak GPU memory of the steps and of each decode, with provenance.
"""
from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

PROMPT = "a panda playing a guitar by a river at sunset, cinematic lighting"


def _clock(device) -> float:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _peak(device) -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None


def _reset_peak(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def time_clip(pipe, steps: int, guidance: float, device, seed: int) -> dict:
    """Seconds of each part of one clip's sampling, and the peak memory of the steps and decodes."""
    import torch

    size = _native_size(pipe)
    generator = torch.Generator(device).manual_seed(seed)
    parts = {}
    t0 = _clock(device)
    embeds, negative = pipe.encode_prompt(PROMPT, "", do_classifier_free_guidance=guidance > 1,
                                          max_sequence_length=size["max_sequence_length"], device=device)
    parts["text_encoding_s"] = _clock(device) - t0
    _reset_peak(device)
    t0 = _clock(device)
    latents = pipe(prompt_embeds=embeds, negative_prompt_embeds=negative, num_inference_steps=steps,
                   guidance_scale=guidance, use_dynamic_cfg=False, generator=generator, output_type="latent",
                   **size).frames
    parts["transformer_steps_s"] = _clock(device) - t0
    parts["steps_peak_gib"] = _peak(device)
    for tiled in (False, True):
        name = "vae_decode_tiled" if tiled else "vae_decode"
        pipe.vae.enable_tiling() if tiled else pipe.vae.disable_tiling()
        _reset_peak(device)
        t0 = _clock(device)
        with torch.no_grad():
            pipe.decode_latents(latents)
        parts[f"{name}_s"] = _clock(device) - t0
        parts[f"{name}_peak_gib"] = _peak(device)
    return parts


def _native_size(pipe) -> dict:
    config, scale = pipe.transformer.config, pipe.vae_scale_factor_spatial
    return dict(num_frames=config.sample_frames, height=config.sample_height * scale, width=config.sample_width * scale,
                max_sequence_length=config.max_text_seq_length)


def summarise(clips: list[dict]) -> dict:
    """Means over the timed clips; the decode's share of a whole sample (encoding, steps, decode)."""
    keys = clips[0].keys()
    mean = {k: round(statistics.fmean(c[k] for c in clips), 4) for k in keys if k.endswith("_s")}
    peaks = {k: max(c[k] for c in clips) if clips[0][k] is not None else None for k in keys if k.endswith("_gib")}
    sample = mean["text_encoding_s"] + mean["transformer_steps_s"] + mean["vae_decode_s"]
    tiled = mean["text_encoding_s"] + mean["transformer_steps_s"] + mean["vae_decode_tiled_s"]
    return {**mean, **peaks, "sample_s": round(sample, 4), "decode_share": round(mean["vae_decode_s"] / sample, 4),
            "sample_tiled_s": round(tiled, 4), "decode_share_tiled": round(mean["vae_decode_tiled_s"] / tiled, 4)}


def main(argv: list[str] | None = None) -> int:
    import torch

    from methods.common.cli import OneLineParser, check_device, quiet_libraries
    from methods.common.errors import UserError
    from methods.common.provenance import provenance, write_json_atomic
    from methods.common.random_pipelines import random_cogvideox_pipeline

    parser = OneLineParser(prog="python -m methods.tdm.bench_sampling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--pipeline", help="a CogVideoXPipeline folder (default: a random CogVideoX-2b one)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--guidance", type=float, default=1.0, help="CFG scale; 1: none (the distilled student)")
    parser.add_argument("--clips", type=int, default=3, help="clips timed after one warm-up clip")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None)
    args = parser.parse_args(argv)
    quiet_libraries()
    try:
        if args.steps < 1 or args.clips < 1 or not args.guidance >= 1:
            raise UserError("--steps and --clips must be at least 1 and --guidance at least 1")
        device = torch.device(check_device(args.device) or ("cuda" if torch.cuda.is_available() else "cpu"))
        if args.pipeline and not (Path(args.pipeline) / "model_index.json").is_file():
            raise UserError(f"--pipeline {args.pipeline} is not a pipeline folder (no model_index.json)")
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from diffusers import CogVideoXPipeline

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.pipeline or str(random_cogvideox_pipeline(Path(tmp) / "cogvideox-2b-random"))
        pipe = CogVideoXPipeline.from_pretrained(folder, dtype=dtype, local_files_only=True).to(device)
    pipe.set_progress_bar_config(disable=True)
    clips = [time_clip(pipe, args.steps, args.guidance, device, seed) for seed in range(args.clips + 1)][1:]
    size = _native_size(pipe)
    record = {"what": "one CogVideoX clip's sampling time by part (speed and memory only)",
              "command": "python -m methods.tdm.bench_sampling " + " ".join(argv if argv is not None else sys.argv[1:]),
              "pipeline": args.pipeline or "random CogVideoX-2b architecture", "dtype": str(dtype).removeprefix("torch."),
              "steps": args.steps, "guidance": args.guidance, "clip": size, "clips_timed": args.clips,
              **summarise(clips), "per_clip": clips, "provenance": provenance(device)}
    write_json_atomic(args.out, record)
    print(json.dumps({k: v for k, v in record.items() if k != "per_clip"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
