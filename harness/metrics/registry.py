"""The paper's metrics by name: what each measures, on what scale, which way is better, and
which weights it reads. Reports and `python -m harness.score` read these records; no code
outside a scorer's own module knows a metric by name.

    from harness.metrics.registry import get_metric
    metric = get_metric("hps-v2.1")            # did-you-mean on a typo
    scorer = metric.load(weights_root, device="cuda")
    scores = scorer.score(images, prompts)      # per_image: uint8 (n, H, W, 3), n prompts -> (n,)

Two kinds of scorer:
- `per_image`: `score(images, prompts) -> np.ndarray (n,)` and `describe() -> dict`.
- `distribution`: `features(images) -> np.ndarray (n, d)`, `distance(a, b) -> float` on two
  feature arrays, and `describe() -> dict`. FID compares two folders of images.
`describe()` names the model, its weights' sha256, the preprocessing (resize kind, antialias,
padding), precision and device, so that every result says how it was measured.

VBench scores videos in its own environment; its driver and aggregation are harness/vbench.py
and harness/metrics/vbench.py, not entries here.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

from methods.common.errors import UserError, did_you_mean

PER_IMAGE, DISTRIBUTION = "per_image", "distribution"


@dataclass(frozen=True)
class Metric:
    name: str                    # what a user types: --metrics hps-v2.1,aes
    title: str                   # a table's column header
    higher_is_better: bool
    scale: str                   # e.g. "100 x cosine", so that 0.28 and 28 are never confused
    kind: str                    # PER_IMAGE | DISTRIBUTION
    needs_prompts: bool          # per-image scores of image-prompt pairs
    weights: tuple[tuple[str, str], ...]  # (repository, file in it) it reads; see baselines.weights
    loader: str                  # "module:function"; function(weights_root, device, **options) -> scorer
    note: str = ""               # one line on the protocol (what the paper does not say, what is assumed)
    summary: str = ""            # "module:function" of a benchmark's own summary of per-style scores
    column: str = ""             # the published tables' column (paper_tables/published/*.csv)
    style_columns: dict = field(default_factory=dict)  # benchmark style -> its published column
    finder: str = ""             # "module:function(weights_root) -> path", where a scorer looks beyond
                                 # baselines.weights (clean-fid's own cache folder); raises UserError

    @property
    def better(self) -> str:
        return "higher" if self.higher_is_better else "lower"

    def load(self, weights_root: str | Path | None = None, device: str = "cpu", **options):
        module, function = self.loader.split(":")
        return getattr(importlib.import_module(module), function)(
            Path(weights_root) if weights_root else None, device, **options)

    def summarise(self, scores_by_style: dict) -> dict | None:
        """The benchmark's own summary (e.g. HPS's ten chunks per style), or None when it has none."""
        if not self.summary:
            return None
        module, function = self.summary.split(":")
        return getattr(importlib.import_module(module), function)(scores_by_style)

    def missing(self, weights_root: str | Path | None) -> list[str]:
        """One line per weight file that is neither under `weights_root` nor in the Hugging Face cache."""
        from baselines.weights import locate

        root = Path(weights_root) if weights_root else None
        if self.finder:
            module, function = self.finder.split(":")
            try:
                getattr(importlib.import_module(module), function)(root)
                return []
            except UserError:
                return [f"{repo} : {file}" for repo, file in self.weights]
        return [f"{repo} : {file}" for repo, file in self.weights if locate(repo, file, root) is None]


CLIP_L14 = ("openai/clip-vit-large-patch14", "config.json")

METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("hps-v2.1", "HPSv2.1", True, "100 x cosine", PER_IMAGE, True,
           (("xswu/HPSv2", "HPS_v2.1_compressed.pt"), CLIP_L14), "harness.metrics.hps:load",
           "open_clip ViT-H-14 with the HPS v2.1 weights; the version is part of the name, never defaulted",
           summary="harness.metrics.hps:benchmark_summary", column="hps_average",
           style_columns={"anime": "hps_animation", "concept-art": "hps_concept_art", "paintings": "hps_painting",
                          "photo": "hps_photo"}),
    Metric("aes", "AeS", True, "LAION improved predictor (about 1-10)", PER_IMAGE, False,
           (("christophschuhmann/improved-aesthetic-predictor", "sac+logos+ava1-l14-linearMSE.pth"), CLIP_L14),
           "harness.metrics.aesthetic:load", "MLP head on unit OpenAI CLIP ViT-L/14 image embeddings",
           column="aesthetic"),
    Metric("clip", "CLIP score", True, "100 x cosine", PER_IMAGE, True, (CLIP_L14,),
           "harness.metrics.clip_score:load",
           "OpenAI CLIP ViT-L/14 by default: the paper does not name its CLIP model; the model is recorded",
           column="clip_score"),
    Metric("fid", "FID", False, "Frechet distance of Inception pool3 features", DISTRIBUTION, False,
           (("clean-fid", "inception-2015-12-05.pt"),), "harness.metrics.fid:load",
           "clean-fid's clean mode, folder to folder; N is reported beside it (FID is biased upward at small N)",
           column="fid", finder="harness.metrics.fid:find_inception"),
)}


def get_metric(name: str) -> Metric:
    if name not in METRICS:
        versions = [m for m in METRICS if m.startswith(name + "-")]
        if versions:  # a metric with versions is never defaulted to one of them (HPSv2's two entry points did)
            raise UserError(f"metric {name!r} has versions; name one: {', '.join(versions)}")
        raise UserError(f"unknown metric {name!r}{did_you_mean(name, METRICS)}; known: {', '.join(METRICS)}")
    return METRICS[name]


def parse_metrics(text: str) -> list[Metric]:
    """'hps-v2.1,aes,clip' -> their records, in that order (each named once)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UserError("--metrics names no metric")
    if len(set(names)) != len(names):
        raise UserError(f"--metrics names a metric twice: {text}")
    return [get_metric(n) for n in names]
