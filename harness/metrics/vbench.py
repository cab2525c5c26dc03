"""VBench in the project: its 16 dimensions, its final-score aggregation, its weight-free
temporal-flickering dimension, and a reader of the result files VBench writes.

VBench itself (vbench 0.1.5) pins transformers==4.33.2 and numpy<2, so it runs in its own
environment (`scripts/vbench_env.sh`, driven by `python -m harness.vbench`); this module is pure
Python and numpy and never imports it.

    from harness.metrics import vbench
    scores = vbench.read_results("out/raw")      # {dimension: raw score in [0, 1]}
    result = vbench.aggregate(scores)            # normalised values, Quality, Semantic, Total
    vbench.temporal_flickering(frames)           # uint8 (T, H, W, 3) -> (255 - mean MAE) / 255

Aggregation, as `scripts/cal_final_score.py` computes it: each raw score s is min-max normalised
with the dimension's (min, max) and multiplied by its weight; Quality is the sum over the 7
quality dimensions divided by the sum of their weights (6.5: dynamic degree weighs 0.5), Semantic
likewise over the 9 semantic ones (weight 9), Total = (4 Quality + 1 Semantic) / 5. The script
prints fractions; the leaderboard and the TDM paper's Table 4 show them x100 as percentages
(CogVideoX-2B: Quality 82.18, Semantic 75.83, Total 80.91). Normalised values are not clipped: a
raw score above a dimension's max (scene above 0.8222, say) normalises above 1, as upstream.
Where upstream's script fills a missing dimension with a raw 0 and still prints a Total, this
module reports no Total and marks the result partial.

Constants read from Vchitect/VBench `scripts/constant.py` and `scripts/cal_final_score.py` at
commit 7975661 (identical at tag v0.1.5 = 1039fe6, the vbench 0.1.5 wheel, and on master as of
2026-03); temporal flickering from `vbench/temporal_flickering.py` at v0.1.5.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from methods.common.errors import UserError, did_you_mean

VBENCH_VERSION = "0.1.5"
CONSTANTS_SOURCE = "Vchitect/VBench scripts/constant.py @ 7975661 (same at tag v0.1.5, 1039fe6)"
QUALITY, SEMANTIC = "quality", "semantic"
QUALITY_WEIGHT, SEMANTIC_WEIGHT = 4, 1
RESULT_SUFFIX = "_eval_results.json"  # VBench.evaluate writes <output_path>/<name>_eval_results.json


@dataclass(frozen=True)
class Dimension:
    name: str      # VBench's module and result-file key, e.g. "temporal_flickering"
    group: str     # QUALITY | SEMANTIC
    min: float     # NORMALIZE_DIC's Min and Max
    max: float
    weight: float  # DIM_WEIGHT

    @property
    def title(self) -> str:  # constant.py's key: "temporal flickering"
        return self.name.replace("_", " ")

    def normalise(self, raw: float) -> float:
        return (raw - self.min) / (self.max - self.min)


# In constant.py's TASK_INFO order.
DIMENSIONS: dict[str, Dimension] = {d.name: d for d in (
    Dimension("subject_consistency", QUALITY, 0.1462, 1.0, 1.0),
    Dimension("background_consistency", QUALITY, 0.2615, 1.0, 1.0),
    Dimension("temporal_flickering", QUALITY, 0.6293, 1.0, 1.0),
    Dimension("motion_smoothness", QUALITY, 0.706, 0.9975, 1.0),
    Dimension("dynamic_degree", QUALITY, 0.0, 1.0, 0.5),
    Dimension("aesthetic_quality", QUALITY, 0.0, 1.0, 1.0),
    Dimension("imaging_quality", QUALITY, 0.0, 1.0, 1.0),
    Dimension("object_class", SEMANTIC, 0.0, 1.0, 1.0),
    Dimension("multiple_objects", SEMANTIC, 0.0, 1.0, 1.0),
    Dimension("human_action", SEMANTIC, 0.0, 1.0, 1.0),
    Dimension("color", SEMANTIC, 0.0, 1.0, 1.0),
    Dimension("spatial_relationship", SEMANTIC, 0.0, 1.0, 1.0),
    Dimension("scene", SEMANTIC, 0.0, 0.8222, 1.0),
    Dimension("appearance_style", SEMANTIC, 0.0009, 0.2855, 1.0),
    Dimension("temporal_style", SEMANTIC, 0.0, 0.364, 1.0),
    Dimension("overall_consistency", SEMANTIC, 0.0, 0.364, 1.0),
)}
GROUPS = {g: tuple(d for d in DIMENSIONS.values() if d.group == g) for g in (QUALITY, SEMANTIC)}


def dimension(name: str) -> Dimension:
    """A dimension by its VBench name; 'temporal flickering' (constant.py's spelling) works too."""
    key = name.strip().replace(" ", "_")
    if key not in DIMENSIONS:
        raise UserError(f"unknown VBench dimension {name!r}{did_you_mean(key, DIMENSIONS)}; "
                        f"known: {', '.join(DIMENSIONS)}")
    return DIMENSIONS[key]


def total_score(quality: float, semantic: float) -> float:
    return (QUALITY_WEIGHT * quality + SEMANTIC_WEIGHT * semantic) / (QUALITY_WEIGHT + SEMANTIC_WEIGHT)


def aggregate(scores: dict[str, float]) -> dict:
    """Raw per-dimension scores (fractions, as VBench writes them) -> the benchmark's numbers.

    Returns `dimensions` {name: raw, normalised, weight, group}, `quality`, `semantic` and `total`
    (fractions; None where a group is incomplete), `percent` (the same x100, as tables print them),
    `partial` and `missing`. A partial result keeps, per incomplete group, the weighted mean over
    the dimensions it has (`groups[g]["mean_of_present"]`): a diagnostic, never the group's score.
    """
    if not scores:
        raise UserError("no VBench scores to aggregate")
    raw = {}
    for name, value in scores.items():
        dim = dimension(name)
        if dim.name in raw:
            raise UserError(f"VBench dimension {dim.name} is given twice ({name!r})")
        value = float(value)
        if not math.isfinite(value):
            raise UserError(f"VBench {dim.name} score is {value}")
        if value > 1.0:  # every VBench dimension scores a fraction; 95.3 is a leaderboard percentage
            raise UserError(f"VBench {dim.name} score {value} is above 1: VBench writes fractions, "
                            "not the leaderboard's percentages (divide by 100)")
        raw[dim.name] = value
    dims = {name: {"raw": value, "normalised": DIMENSIONS[name].normalise(value), "weight": DIMENSIONS[name].weight,
                   "group": DIMENSIONS[name].group} for name, value in raw.items()}
    groups, score = {}, {}
    for group, members in GROUPS.items():
        present = [d for d in members if d.name in raw]
        mean = (sum(dims[d.name]["normalised"] * d.weight for d in present) / sum(d.weight for d in present)
                if present else None)
        complete = len(present) == len(members)
        score[group] = mean if complete else None
        groups[group] = {"complete": complete, "present": [d.name for d in present]}
        if not complete:
            groups[group]["mean_of_present"] = mean
    total = None
    if score[QUALITY] is not None and score[SEMANTIC] is not None:
        total = total_score(score[QUALITY], score[SEMANTIC])
    missing = [name for name in DIMENSIONS if name not in raw]
    result = {"quality": score[QUALITY], "semantic": score[SEMANTIC], "total": total,
              "partial": bool(missing), "missing": missing, "dimensions": dims, "groups": groups}
    result["percent"] = {k: None if result[k] is None else 100 * result[k] for k in ("quality", "semantic", "total")}
    return result


# ---- temporal flickering: no weights, so the project computes it itself ----------------------

def temporal_flickering(frames: np.ndarray) -> float:
    """One video's score, as VBench's `cal_score`: 1 - (mean over consecutive frame pairs of the
    pair's mean absolute difference) / 255, at full resolution over all pixels and channels.

    VBench decodes the mp4 with OpenCV (BGR; the order does not change a mean over channels) and
    resizes nothing; it takes each pair's mean in float32 and so does this. 1.0 for a static video,
    0.0 for one that alternates black and white. Frames here are the decoded ones: scoring the
    frames a sampler produced, before mp4 compression, can differ from VBench on the mp4.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4:
        raise UserError(f"temporal flickering reads uint8 frames (T, H, W, C); got {frames.dtype} {frames.shape}")
    if len(frames) < 2:
        raise UserError(f"temporal flickering needs at least 2 frames; got {len(frames)}")
    pair_mae = np.array([np.mean(np.abs(frames[i].astype(np.float32) - frames[i + 1].astype(np.float32)))
                         for i in range(len(frames) - 1)], dtype=np.float32)
    return (255.0 - float(np.mean(pair_mae))) / 255.0


def temporal_flickering_score(videos) -> float:
    """The dimension's score: the plain mean of the per-video scores (VBench's `np.mean(sim)`).

    VBench evaluates only videos its RAFT static filter kept (`static_filter.py`: up to 5 static
    ones of the 25 sampled per prompt); the videos given here are taken as already filtered.
    """
    per_video = [temporal_flickering(v) for v in videos]
    if not per_video:
        raise UserError("temporal flickering: no videos")
    return float(np.mean(per_video))


# ---- VBench's result files ------------------------------------------------------------------

def read_result_files(folder: str | Path) -> dict[str, dict]:
    """{dimension: {"score", "n_videos", "file"}} from every `*_eval_results.json` under `folder`.

    VBench writes `{dimension: [mean score, [{"video_path": ..., "video_results": ...}, ...]]}`;
    its `*_full_info.json` beside it (a list of prompts) is not a result and is not read. A
    dimension found in two files with different scores is refused: which run counts is the
    user's choice (upstream's script keeps whichever file it lists last).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"VBench results folder {folder} not found")
    files = sorted(folder.rglob(f"*{RESULT_SUFFIX}"))
    if not files:
        raise UserError(f"no VBench result file (*{RESULT_SUFFIX}) under {folder}")
    out: dict[str, dict] = {}
    for path in files:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise UserError(f"cannot read VBench result file {path}: {err}") from None
        if not isinstance(data, dict):
            raise UserError(f"{path} is not a VBench result file (expected an object of dimensions)")
        for key, value in data.items():
            if not (isinstance(value, list) and value and isinstance(value[0], (int, float))):
                raise UserError(f"{path}: {key} is not [score, per-video results] as VBench writes it")
            name = dimension(key).name
            entry = {"score": float(value[0]), "file": str(path),
                     "n_videos": len(value[1]) if len(value) > 1 and isinstance(value[1], list) else None}
            if name in out and out[name]["score"] != entry["score"]:
                raise UserError(f"{name} has two different scores, in {out[name]['file']} and {path}; "
                                "move the stale file away")
            out[name] = entry
    return out


def read_results(folder: str | Path) -> dict[str, float]:
    """{dimension: raw score} from the VBench result files under `folder` (see read_result_files)."""
    return {name: entry["score"] for name, entry in read_result_files(folder).items()}
