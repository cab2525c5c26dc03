"""Score a folder of generated images with the paper's metrics; one JSON with every choice recorded.

    python -m harness.score FOLDER --metrics hps-v2.1,aes,clip --out scores.json [--weights-root DIR]
    python -m harness.score STUDENT --metrics fid --reference TEACHER --out fid.json   # FID-to-teacher

FOLDER holds the images and `manifest.json` (a list of {"file", "prompt", "seed", "sampler",
optionally "style"}; `python -m baselines sample` writes it) or `manifest.csv` with those columns.
Every manifest row must name an existing image and every image must be in the manifest: a
mismatch is refused before anything is scored. The JSON holds per-image scores, the mean and
std, N, per-style means when rows carry a style (and the HPS benchmark's own summary: ten chunks
per style; `partial: true` unless it is the whole 4 x 800 benchmark), each metric's scale,
direction, model, weights' sha256 and preprocessing, and the commit, date, device and package
versions. A metric whose weights are missing ends the command with one line naming the file
(exit 2) and nothing written.

FID compares FOLDER with --reference. For FID-to-teacher (Table 2) both folders must hold the
same (prompt, seed) pairs, which is checked; --unpaired allows any two sets. N is recorded:
FID is biased upward at small N, so compare numbers at the same N only.
"""
from __future__ import annotations

import csv
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from methods.common.errors import UserError

from .metrics.registry import DISTRIBUTION, Metric, parse_metrics

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
METRIC_PACKAGES = ("torchvision", "open_clip_torch", "torchmetrics", "clean-fid", "pillow")


def read_manifest(folder: Path) -> list[dict]:
    """The folder's manifest rows, checked against the images on disk."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"no folder {folder}")
    if (folder / "manifest.json").is_file():
        rows = json.loads((folder / "manifest.json").read_text())
    elif (folder / "manifest.csv").is_file():
        with (folder / "manifest.csv").open(newline="") as f:
            rows = list(csv.DictReader(f))
    else:
        raise UserError(f"{folder} has no manifest.json or manifest.csv (file, prompt, seed, sampler per image)")
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "file" in r for r in rows):
        raise UserError(f"{folder}'s manifest must be a list of rows, each with at least 'file'")
    files = [r["file"] for r in rows]
    if len(set(files)) != len(files):
        raise UserError(f"{folder}'s manifest names a file twice")
    missing = [f for f in files if not (folder / f).is_file()]
    on_disk = {p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    unlisted = sorted(on_disk - set(files))
    if missing or unlisted:
        raise UserError(f"{folder}: {len(rows)} manifest rows but {len(on_disk)} images "
                        f"({len(missing)} listed and missing, e.g. {missing[:1]}; {len(unlisted)} not listed, "
                        f"e.g. {unlisted[:1]})")
    return rows


def read_images(folder: Path, rows: list[dict]) -> np.ndarray:
    """uint8 (n, H, W, 3) RGB; all images of one folder share a size."""
    from PIL import Image

    images = [np.asarray(Image.open(Path(folder) / r["file"]).convert("RGB")) for r in rows]
    if len({im.shape for im in images}) > 1:
        raise UserError(f"{folder}'s images differ in size; score each size apart")
    return np.stack(images)


def _batches(n: int, size: int):
    return (slice(i, min(i + size, n)) for i in range(0, n, size))


def score_per_image(metric: Metric, scorer, folder: Path, rows: list[dict], batch_size: int) -> dict:
    prompts = [r.get("prompt") for r in rows]
    if metric.needs_prompts and any(p in (None, "") for p in prompts):
        raise UserError(f"{metric.name} scores image-prompt pairs: every manifest row needs a 'prompt'")
    scores = np.concatenate([scorer.score(read_images(folder, rows[part]), prompts[part])
                             for part in _batches(len(rows), batch_size)])
    out = {"n": len(scores), "mean": float(scores.mean()), "std": float(scores.std(ddof=1)) if len(scores) > 1 else None,
           "per_image": {r["file"]: float(s) for r, s in zip(rows, scores)}}
    styles = [r.get("style") for r in rows]
    if all(styles):
        by_style = {s: scores[[i for i, t in enumerate(styles) if t == s]] for s in dict.fromkeys(styles)}
        out["per_style"] = {s: {"n": len(v), "mean": float(v.mean())} for s, v in by_style.items()}
        summary = metric.summarise(by_style)
        if summary is not None:
            out["benchmark"] = summary
    return out


def pairs(rows: list[dict]) -> list[tuple]:
    return sorted((str(r.get("prompt")), str(r.get("seed"))) for r in rows)


def score_distribution(metric: Metric, scorer, folder: Path, rows: list[dict], reference: Path | None,
                       unpaired: bool, batch_size: int) -> dict:
    if reference is None:
        raise UserError(f"{metric.name} compares two sets of images: pass --reference FOLDER")
    ref_rows = read_manifest(reference)
    paired = pairs(rows) == pairs(ref_rows)
    if not paired and not unpaired:
        raise UserError(f"{folder} and {reference} do not hold the same (prompt, seed) pairs, as FID-to-teacher "
                        "needs; pass --unpaired to compare any two sets")

    def features(where, its_rows):
        return np.concatenate([scorer.features(read_images(where, its_rows[part]))
                               for part in _batches(len(its_rows), batch_size)])

    a, b = features(folder, rows), features(reference, ref_rows)
    return {"value": float(scorer.distance(a, b)), "n": len(a), "n_reference": len(b), "reference": str(reference),
            "paired_prompts_and_seeds": paired}


def _manifest_digest(folder: Path) -> str:
    path = next(p for p in (folder / "manifest.json", folder / "manifest.csv") if p.is_file())
    return hashlib.sha256(path.read_bytes()).hexdigest()


def score_folder(folder: Path, metrics: list[Metric], weights_root: Path | None = None, device: str = "cpu",
                 reference: Path | None = None, unpaired: bool = False, batch_size: int = 32,
                 options: dict | None = None) -> dict:
    """Every metric on one folder; the record `python -m harness.score` writes."""
    from methods.common.provenance import provenance

    folder = Path(folder)
    rows = read_manifest(folder)
    options = options or {}
    scorers = {m.name: m.load(weights_root, device, **options.get(m.name, {})) for m in metrics}  # all or none
    results = {}
    for metric in metrics:
        scorer = scorers[metric.name]
        if metric.kind == DISTRIBUTION:
            value = score_distribution(metric, scorer, folder, rows, reference, unpaired, batch_size)
        else:
            value = score_per_image(metric, scorer, folder, rows, batch_size)
        results[metric.name] = {"title": metric.title, "scale": metric.scale, "better": metric.better,
                                "note": metric.note, **value, "scorer": scorer.describe()}
    partial = [name for name, r in results.items() if r.get("benchmark", {}).get("partial")]
    return {"folder": str(folder), "images": len(rows), "manifest_sha256": _manifest_digest(folder),
            "samplers": sorted({str(r.get("sampler")) for r in rows}), "partial": bool(partial),
            "partial_benchmarks": partial, "metrics": results,
            "provenance": provenance(device, METRIC_PACKAGES)}


def _options(items: list[str]) -> dict:
    """['aes.head=/x', 'hps-v2.1.precision=fp16'] -> {'aes': {'head': '/x'}, 'hps-v2.1': {'precision': 'fp16'}}
    (the key is what follows the last dot: metric names may hold dots, keys do not)."""
    out: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        metric, dot, name = key.rpartition(".")
        if not sep or not dot:
            raise UserError(f"--option wants METRIC.KEY=VALUE, got {item!r}")
        out.setdefault(metric, {})[name] = value
    return out


def main(argv: list[str] | None = None) -> int:
    from methods.common.cli import OneLineParser
    from methods.common.provenance import write_json_atomic

    parser = OneLineParser(prog="python -m harness.score", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--metrics", required=True, help="comma-separated: " + ", ".join(
        __import__("harness.metrics.registry", fromlist=["METRICS"]).METRICS))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--reference", type=Path, help="the second folder of a distribution metric (FID)")
    parser.add_argument("--unpaired", action="store_true", help="FID between sets of different prompts or seeds")
    parser.add_argument("--weights-root", type=Path, help="<root>/<owner>/<repo>/<file>; else the HF cache")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--option", action="append", default=[], metavar="METRIC.KEY=VALUE",
                        help="a scorer option, e.g. clip.clip=/models/clip-vit-g or fid.inception=/x.pt")
    args = parser.parse_args(argv)
    try:
        metrics = parse_metrics(args.metrics)
        record = score_folder(args.folder, metrics, args.weights_root, args.device, args.reference,
                              args.unpaired, args.batch_size, _options(args.option))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    write_json_atomic(args.out, record)
    for name, r in record["metrics"].items():
        value = r["value"] if "value" in r else r["mean"]
        print(f"{name:10s} {value:10.4f}  ({r['scale']}, {r['better']} is better, N = {r['n']})")
    if record["partial"]:
        print(f"partial: {', '.join(record['partial_benchmarks'])} scored on less than the whole benchmark")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
