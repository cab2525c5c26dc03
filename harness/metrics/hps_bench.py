"""HPSv2.1 scoring throughput on random weights of the real architecture (ViT-H-14), images per second:

    python -m harness.metrics.hps_bench --device cuda --n 4096 --batch-size 256 --out results/metrics/hps-throughput.json

Three rates, each after a warm-up batch:
- `image_tower`: the bare image tower on preprocessed pixels already on the device;
- `end_to_end`: from uint8 (n, H, W, 3) images already on the device (`--size`, default 512 px, as
  Table 1's SD-1.5 images): hpsv2's preprocessing on the GPU, both towers on token ids made
  beforehand, the cosine, the scores back on the host;
- `tokenizer`: the CPU tokenisation of n prompts, which `score` does per batch too (the project's
  CLIP tokenizer of the tiny-sd15 world stands in for OpenAI's: the same BPE code, a smaller vocabulary).
The precision is hpsv2's (fp16 autocast over fp32 weights) unless `--precision fp32`.
"""
from __future__ import annotations

import copy
import sys
import time

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rate(n: int, run, device: torch.device) -> float:
    run()  # warm-up: kernels chosen, memory allocated
    _sync(device)
    started = time.perf_counter()
    run()
    _sync(device)
    return n / (time.perf_counter() - started)


def measure(device: str, n: int, batch_size: int, size: int, precision: str = "amp", config=None) -> dict:
    from transformers import CLIPModel, CLIPTokenizerFast

    from methods.common.worlds import world

    from .hps import CONTEXT_LENGTH, HpsScorer, preprocess, vit_h14_config

    device = torch.device(device)
    tokenizer = CLIPTokenizerFast.from_pretrained(str(world("tiny-sd15").PIPELINE / "tokenizer"),
                                                  model_max_length=CONTEXT_LENGTH)
    config = copy.deepcopy(config) if config is not None else vit_h14_config()
    config.text_config.vocab_size = len(tokenizer)  # the stand-in tokenizer's ids must fit the embedding
    config.text_config.eos_token_id = tokenizer.eos_token_id
    torch.manual_seed(0)
    with torch.device(device):
        model = CLIPModel(config)
    scorer = HpsScorer(model, tokenizer, str(device), precision, tokenizer_source="tiny-sd15 (stand-in)")
    generator = torch.Generator(device).manual_seed(0)
    images = torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8, device=device, generator=generator)
    prompts = [f"a photo of a red cube number {i} on a table, studio lighting" for i in range(n)]
    ids = scorer.tokenize(prompts).to(device)
    image_size = scorer.image_size

    def image_tower():
        for i in range(0, n, batch_size):
            scorer.image_features(preprocess(images[i:i + batch_size], image_size))

    pixels = preprocess(images[:batch_size], image_size)

    def bare():
        for _ in range(0, n, batch_size):
            scorer.image_features(pixels)

    def end_to_end():
        out = []
        for i in range(0, n, batch_size):
            img = scorer.image_features(preprocess(images[i:i + batch_size], image_size))
            txt = scorer.text_features(ids[i:i + batch_size])
            out.append((100 * (img * txt).sum(-1)).double().cpu())
        return torch.cat(out)

    cpu = torch.device("cpu")
    record = {
        "what": "HPSv2.1 scoring rate, images per second, random ViT-H-14 weights",
        "n": n, "batch_size": batch_size, "image_size_px": size, "precision": scorer.precision,
        "image_tower": _rate(n, bare, device),
        "image_tower_with_gpu_preprocessing": _rate(n, image_tower, device),
        "end_to_end": _rate(n, end_to_end, device),
        "tokenizer": _rate(n, lambda: scorer.tokenize(prompts), cpu),
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else None,
    }
    return record


def main(argv: list[str] | None = None) -> int:
    from methods.common.cli import OneLineParser
    from methods.common.provenance import provenance, write_json_atomic

    parser = OneLineParser(prog="python -m harness.metrics.hps_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--size", type=int, default=512, help="side of the square uint8 input images")
    parser.add_argument("--precision", choices=("amp", "fp32"), default="amp")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    record = measure(args.device, args.n, args.batch_size, args.size, args.precision)
    record["command"] = "python -m harness.metrics.hps_bench " + " ".join(sys.argv[1:] if argv is None else argv)
    record["provenance"] = provenance(args.device)
    for key in ("image_tower", "image_tower_with_gpu_preprocessing", "end_to_end", "tokenizer"):
        print(f"{key:36s} {record[key]:10.1f} images/s")
    if args.out:
        write_json_atomic(args.out, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
