"""VBench's aggregation (harness.metrics.vbench) against VBench's own `scripts/cal_final_score.py`
(`vbench_parity`)."""
from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

from methods.common.errors import UserError

from .common import _result, _row, _versions
from .tolerances import VBENCH_TOLERANCE


def vbench_parity(scripts: str | Path | None = None, trials: int = 20, seed: int = 0) -> dict:
    """harness.metrics.vbench.aggregate against VBench's `scripts/cal_final_score.py` (its normalisation,
    Quality, Semantic and final score) on random per-dimension scores. That script is in VBench's
    repository, not its wheel: `scripts` is a copy of the repository's scripts/ folder (with constant.py)."""
    started = time.time()

    from harness.metrics.vbench import CONSTANTS_SOURCE, DIMENSIONS, aggregate

    folder = Path(scripts) if scripts else None
    if folder is None or not (folder / "cal_final_score.py").is_file():
        raise UserError("the VBench comparison needs a copy of VBench's scripts/ folder (cal_final_score.py, "
                        "constant.py) from the repository Vchitect/VBench: pass --vbench-scripts DIR")
    sys.path.insert(0, str(folder))  # cal_final_score imports its neighbour constant.py
    try:
        spec = importlib.util.spec_from_file_location("vbench_cal_final_score", folder / "cal_final_score.py")
        upstream = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(upstream)
    finally:
        sys.path.remove(str(folder))
    rng = np.random.default_rng(seed)
    worst, examples = 0.0, []
    for trial in range(trials):
        ours_in = {name: float(rng.uniform(0.0, 1.0)) for name in DIMENSIONS}
        theirs_in = {name.replace("_", " "): value for name, value in ours_in.items()}  # as submission() keys them
        normalised = upstream.get_nomalized_score(theirs_in)
        quality, semantic = upstream.get_quality_score(normalised), upstream.get_semantic_score(normalised)
        final = upstream.get_final_score(quality, semantic)
        ours = aggregate(ours_in)
        diffs = [abs(ours["quality"] - quality), abs(ours["semantic"] - semantic), abs(ours["total"] - final)]
        diffs += [abs(ours["dimensions"][n]["normalised"] * DIMENSIONS[n].weight - normalised[n.replace("_", " ")])
                  for n in DIMENSIONS]
        worst = max(worst, *diffs)
        if trial < 2:
            examples.append({"quality": [ours["quality"], quality], "semantic": [ours["semantic"], semantic],
                             "total": [ours["total"], final]})
    diff = {"max_abs": worst, "max_rel": worst}
    row = _row("aggregation", VBENCH_TOLERANCE, scores=diff)
    row["n"] = trials
    return _result("vbench", f"Vchitect/VBench scripts/cal_final_score.py from {folder}", _versions(),
                   f"normalised dimensions, Quality, Semantic and Total of {trials} random sets of the 16 "
                   "dimensions' raw scores", trials, [row],
                   f"the project's constants are read from {CONSTANTS_SOURCE}; upstream reads constant.py beside "
                   "its script; the same formula, float64 both sides", {"examples (ours, theirs)": examples},
                   started)
