"""HPSv2.1 scoring throughput on random weights of the real architecture (ViT-H-14), images per second:

    python -m harness.metrics.hps_bench --device cuda --n 4096 --batch-size 256 --precision amp,fp16,bf16 \
        --out results/metrics/hps-throughput.json

One model of random weights (seeded) is built once, in float32 with SDPA attention; each precision of
`--precision` (comma-separated: amp, fp16, bf16, fp32; see harness.metrics.hps.HpsScorer) scores a copy
of it, converted, one after the other in this process. Per precision, three rates, each timed over the
n images after a warm-up of two batches (kernels chosen, memory allocated):
- `image_tower`: the bare image tower on preprocessed pixels already on the device;
- `image_tower_with_gpu_preprocessing`: the same from uint8 images on the device, preprocessed there;
- `end_to_end`: from uint8 (n, H, W, 3) images already on the device (`--size`, default 512 px, as
  Table 1's SD-1.5 images): hpsv2's preprocessing on the GPU, both towers on token ids made
  beforehand, the cosine, the scores back on the host in one copy at the end (until e95ca37's record, one
  copy and so one synchronisation per batch; the warm-up was then the whole run).
Once: `tokenizer`, the CPU tokenisation of n prompts, which `score` does per batch too (the project's
CLIP tokenizer of the tiny-sd15 world stands in for OpenAI's: the same BPE code, a smaller vocabulary).

What a faster precision does to the score, on the same images and prompts: `score_vs_amp` (all n
images, against "amp", hpsv2's precision, scored untimed where amp is not listed) and `score_vs_fp32`
(the first `--reference-n` images against float32 weights without autocast, TF32 off), max and mean
absolute difference on the 100 x cosine scale. With random weights the scores are not HPS values (their
spread is recorded beside them); how far real weights move is not measured here.
"""
from __future__ import annotations

import copy
import gc
import sys
import time

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rate(n: int, run, device: torch.device, warm_up=None):
    """(images per second of `run()`, what it returned); `warm_up()` (default: `run()`) first, untimed."""
    (warm_up or run)()  # kernels chosen, memory allocated
    _sync(device)
    started = time.perf_counter()
    out = run()
    _sync(device)
    return n / (time.perf_counter() - started), out


def tiny_config():
    """A two-layer stand-in of the same classes (widths 64 / 32, patch 32), for a smoke run of the bench on a CPU
    (`--tiny`): its rates say nothing about ViT-H-14."""
    from .hps import vit_h14_config

    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    return vit_h14_config(vision={**small, "hidden_size": 64, "patch_size": 32}, text=small, projection_dim=16)


def _parse_precisions(text: str) -> list[str]:
    from methods.common.errors import UserError

    from .hps import PRECISIONS

    names = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in names if p not in PRECISIONS]
    if unknown or not names or len(set(names)) != len(names):
        raise UserError(f"--precision {text!r}: a comma-separated list of distinct {', '.join(PRECISIONS)}")
    return names


def _score_difference(scores: torch.Tensor, reference: torch.Tensor) -> dict:
    diff = (scores.double() - reference.double()).abs()
    return {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()), "n": int(diff.numel())}


def _spread(scores: torch.Tensor) -> dict:
    scores = scores.double()
    return {"mean": float(scores.mean()), "std": float(scores.std()), "min": float(scores.min()),
            "max": float(scores.max())}


def measure(device: str, n: int, batch_size: int, size: int, precision: str | list[str] = "amp", config=None,
            reference_n: int = 256) -> dict:
    """The rates of each precision in `precision` (a name, a comma-separated string or a list) and its scores'
    difference from "amp" and float32. `config`: the CLIPConfig (ViT-H-14's unless a test passes a tiny one)."""
    from transformers import CLIPModel, CLIPTokenizerFast

    from methods.common.worlds import world

    from .hps import CONTEXT_LENGTH, HpsScorer, preprocess, vit_h14_config, with_sdpa
    from .parity import float32_on

    precisions = _parse_precisions(precision) if isinstance(precision, str) else list(precision)
    device = torch.device(device)
    tokenizer = CLIPTokenizerFast.from_pretrained(str(world("tiny-sd15").PIPELINE / "tokenizer"),
                                                  model_max_length=CONTEXT_LENGTH)
    config = with_sdpa(copy.deepcopy(config) if config is not None else vit_h14_config())
    config.text_config.vocab_size = len(tokenizer)  # the stand-in tokenizer's ids must fit the embedding
    config.text_config.eos_token_id = tokenizer.eos_token_id
    torch.manual_seed(0)
    with torch.device(device):
        base = CLIPModel(config).eval()  # float32; each precision scores a converted copy
    generator = torch.Generator(device).manual_seed(0)
    images = torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8, device=device, generator=generator)
    prompts = [f"a photo of a red cube number {i} on a table, studio lighting" for i in range(n)]
    reference_n = min(reference_n, n)
    warm = min(n, 2 * batch_size)

    def scorer_for(name: str) -> HpsScorer:
        model = base if name in ("amp", "fp32") else copy.deepcopy(base)  # amp / fp32 keep float32 weights
        return HpsScorer(model, tokenizer, str(device), name, tokenizer_source="tiny-sd15 (stand-in)")

    first = scorer_for("amp")
    ids = first.tokenize(prompts).to(device)
    image_size = first.image_size

    def scores_of(scorer: HpsScorer, count: int) -> torch.Tensor:
        out = []
        for i in range(0, count, batch_size):
            j = min(i + batch_size, count)
            img = scorer.image_features(preprocess(images[i:j], image_size))
            txt = scorer.text_features(ids[i:j])
            out.append(100 * (img * txt).sum(-1))
        return torch.cat(out).double().cpu()  # one copy to the host, at the end (as HpsScorer.score)

    with float32_on(device):  # float32 reference scores (no TF32), on the first reference_n images
        fp32_scores = scores_of(scorer_for("fp32"), reference_n)
    amp_scores = None if "amp" in precisions else scores_of(scorer_for("amp"), n)

    def rates(scorer: HpsScorer) -> tuple[float, float, float, torch.Tensor]:
        """The bare image tower's, with GPU preprocessing, and end to end (with its scores)."""
        pixels = preprocess(images[:batch_size], image_size)

        def bare(count=n):
            for _ in range(0, count, batch_size):
                scorer.image_features(pixels)

        def image_tower(count=n):
            for i in range(0, count, batch_size):
                scorer.image_features(preprocess(images[i:min(i + batch_size, count)], image_size))

        rate_bare, _ = _rate(n, bare, device, lambda: bare(warm))
        rate_tower, _ = _rate(n, image_tower, device, lambda: image_tower(warm))
        rate_e2e, scores = _rate(n, lambda: scores_of(scorer, n), device, lambda: scores_of(scorer, warm))
        return rate_bare, rate_tower, rate_e2e, scores

    results = {}
    for name in precisions:
        scorer = scorer_for(name)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        rate_bare, rate_tower, rate_e2e, scores = rates(scorer)
        if name == "amp":
            amp_scores = scores
        results[name] = {
            "precision": scorer.precision, "weights_dtype": str(scorer.dtype).removeprefix("torch."),
            "attention": scorer.attention,
            "image_tower": rate_bare, "image_tower_with_gpu_preprocessing": rate_tower, "end_to_end": rate_e2e,
            "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else None,
            "scores": _spread(scores),
            "score_vs_fp32": _score_difference(scores[:reference_n], fp32_scores),
            "_scores": scores,
        }
        scorer = None  # a converted copy of the weights is freed before the next precision's
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    for name, result in results.items():
        scores = result.pop("_scores")
        result["score_vs_amp"] = None if name == "amp" else _score_difference(scores, amp_scores)

    cpu = torch.device("cpu")
    best = max(results, key=lambda k: results[k]["end_to_end"])
    record = {
        "what": "HPSv2.1 scoring rate, images per second, random ViT-H-14 weights, one process per precision list",
        "n": n, "batch_size": batch_size, "image_size_px": size, "reference_n": reference_n,
        "warm_up_images": warm, "attention": first.attention,
        "precisions": results,
        "best_end_to_end": {"precision": best, "rate": results[best]["end_to_end"]},
        "tokenizer": _rate(n, lambda: first.tokenize(prompts), cpu)[0],
        "float32_reference": "the same weights in float32 without autocast, TF32 off for matmuls and convolutions",
        "score_difference": "|score - reference score| on the 100 x cosine scale, same images and prompts",
        "sdpa_backends": {"flash": torch.backends.cuda.flash_sdp_enabled(),
                          "mem_efficient": torch.backends.cuda.mem_efficient_sdp_enabled(),
                          "math": torch.backends.cuda.math_sdp_enabled()} if device.type == "cuda" else None,
    }
    if len(precisions) == 1:  # the single-precision record's top-level rates, as before
        only = results[precisions[0]]
        record.update({k: only[k] for k in ("precision", "image_tower", "image_tower_with_gpu_preprocessing",
                                            "end_to_end", "peak_memory_gib")})
    return record


def main(argv: list[str] | None = None) -> int:
    from methods.common.cli import OneLineParser
    from methods.common.provenance import provenance, write_json_atomic

    parser = OneLineParser(prog="python -m harness.metrics.hps_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--size", type=int, default=512, help="side of the square uint8 input images")
    parser.add_argument("--precision", default="amp",
                        help="comma-separated precisions to measure in turn: amp (hpsv2's, default), fp16, bf16, fp32")
    parser.add_argument("--reference-n", type=int, default=256,
                        help="images scored in float32 too, for each precision's score_vs_fp32")
    parser.add_argument("--tiny", action="store_true",
                        help="a two-layer stand-in instead of ViT-H-14: a smoke run (e.g. on a CPU), not a measurement")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    from methods.common.errors import UserError

    try:
        precisions = _parse_precisions(args.precision)
    except UserError as error:
        parser.error(str(error))
    record = measure(args.device, args.n, args.batch_size, args.size, precisions, reference_n=args.reference_n,
                     config=tiny_config() if args.tiny else None)
    if args.tiny:
        record["what"] = "SMOKE RUN on a two-layer stand-in (--tiny), not ViT-H-14: " + record["what"]
    record["command"] = "python -m harness.metrics.hps_bench " + " ".join(sys.argv[1:] if argv is None else argv)
    record["provenance"] = provenance(args.device)
    for name, result in record["precisions"].items():
        print(f"[{name}] {result['precision']}; attention {result['attention']['vision']}")
        for key in ("image_tower", "image_tower_with_gpu_preprocessing", "end_to_end"):
            print(f"  {key:36s} {result[key]:10.1f} images/s")
        for key in ("score_vs_amp", "score_vs_fp32"):
            if result[key] is not None:
                print(f"  {key:36s} max {result[key]['max_abs']:.2e}, mean {result[key]['mean_abs']:.2e} "
                      f"(n {result[key]['n']}; score std {result['scores']['std']:.2f})")
    print(f"{'tokenizer':38s} {record['tokenizer']:10.1f} prompts/s")
    if args.out:
        write_json_atomic(args.out, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
