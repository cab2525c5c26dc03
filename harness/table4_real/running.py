"""A Table 4 run: sample each cell's videos (resuming), score them with VBench in its own
environment, write each cell's record."""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

from methods.common.errors import UserError
from methods.common.provenance import provenance, write_json_atomic

from .config import Table4Config
from .planning import CellPlan, Table4Plan, plan
from .protocol import FPS, GRIT_DIMENSIONS, STUDENT_CARD


def video_backend() -> str | None:
    """What diffusers.utils.export_to_video will write mp4s with: imageio (needs imageio-ffmpeg),
    else OpenCV; None when neither works."""
    if importlib.util.find_spec("imageio") is not None:
        return "imageio" if importlib.util.find_spec("imageio_ffmpeg") is not None else None
    return "opencv" if importlib.util.find_spec("cv2") is not None else None


def write_mp4(frames, path: Path, fps: int = FPS) -> None:
    """uint8 frames (F, H, W, 3) as an mp4 (diffusers.utils.export_to_video)."""
    from diffusers.utils import export_to_video
    from PIL import Image

    export_to_video([Image.fromarray(frame) for frame in frames], str(path), fps=fps)


def _summarise(missing) -> str:
    """Missing files grouped by repository: 'repo : file', or 'repo: N files (a, b, ...)'."""
    groups: dict[str, list[str]] = {}
    for line in missing:
        repo, sep, path = line.partition(" : ")
        groups.setdefault(repo if sep else line, []).append(path)
    parts = []
    for repo, paths in groups.items():
        paths = [p for p in paths if p]
        if len(paths) == 1:
            parts.append(f"{repo} : {paths[0]}")
        elif paths:
            parts.append(f"{repo}: {len(paths)} files ({', '.join(paths[:2])}, ...)")
        else:
            parts.append(repo)
    return "; ".join(parts)


def _preflight(p: Table4Plan, evaluate: bool) -> dict | None:
    """Everything a run needs, checked before anything is written: one UserError naming what is missing."""
    problems = []
    if video_backend() is None:
        problems.append("an mp4 writer: diffusers.utils.export_to_video needs imageio with imageio-ffmpeg "
                        f"(pip install imageio imageio-ffmpeg) or, without imageio, opencv-python, in {sys.executable}")
    problems += list(p.prompts.missing)
    for cell in p.cells:
        if cell.status in ("missing weights", "needs training"):
            problems.append(f"{cell.key} ({cell.status}): {_summarise(cell.missing)}; {cell.how}")
    if evaluate:
        problems += list(p.vbench.missing)
    if problems:
        raise UserError("table4 cannot run; missing " + " | ".join(problems))
    if not evaluate:
        return None
    from harness import vbench as driver

    env = driver.env_versions(driver.env_python(p.config.vbench_env).absolute())
    grit = [d for d in p.vbench.dimensions if d in GRIT_DIMENSIONS]
    if grit and not env["packages"].get("detectron2"):
        raise UserError(f"the VBench environment {p.config.vbench_env} has no detectron2, which {', '.join(grit)} "
                        "need: build it there (VBench's README) or leave them out with --dimensions")
    return env


def _fingerprint(cell: CellPlan, config: Table4Config, device_dtype: str) -> str:
    """What fixes a cell's videos beyond their rows: the recipe as sampled (not its name or notes), the
    precision and the prompt kind; for this project's student, its folder and card."""
    recipe = {k: v for k, v in cell.recipe.describe().items() if k not in ("name", "method", "source", "notes")}
    if cell.spec.kind == "project":
        folder = cell.sampler_root / cell.recipe.base
        recipe["base"] = str(folder.resolve())
        recipe["card_sha256"] = hashlib.sha256((folder / STUDENT_CARD).read_bytes()).hexdigest()
    key = {"recipe": recipe, "prompts": config.prompts, "dtype": device_dtype, "seed_rule": "seed*1e6+100*line+index"}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _check_manifest(cell: CellPlan, fingerprint: str, rows) -> dict:
    """The cell's manifest rows by file, after checking the folder was made by this recipe and prompts."""
    path = cell.folder / "manifest.json"
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text())
    except ValueError:
        raise UserError(f"{path} is unreadable: move {cell.folder} away") from None
    if manifest.get("fingerprint") != fingerprint:
        raise UserError(f"{cell.folder} holds videos of another recipe, prompt list or precision (manifest "
                        f"fingerprint {manifest.get('fingerprint')}, now {fingerprint}): move it away or use "
                        "another --out")
    known = {r["file"]: r for r in manifest.get("rows", [])}
    for row in rows:
        old = known.get(row.file)
        if old is not None and (old["sampled_prompt"], old["seed"]) != (row.sampled_prompt, row.seed):
            raise UserError(f"{cell.folder}: {row.file} was sampled from another prompt or seed than now "
                            f"(--video-seed or --prompts changed?): move the folder away or use another --out")
    return known


def sample_cell(cell: CellPlan, rows, config: Table4Config, device: str, batch_size: int = 1,
                show_progress: bool = True) -> dict:
    """Sample the cell's missing videos (existing ones are kept); returns the sampling record."""
    import torch
    from tqdm.auto import tqdm

    from baselines.diffusers_sampler import DiffusersSampler

    videos, tmp = cell.folder / "videos", cell.folder / "tmp"
    device_dtype = cell.recipe.dtype if torch.device(device).type == "cuda" else "float32"
    fingerprint = _fingerprint(cell, config, device_dtype)
    known = _check_manifest(cell, fingerprint, rows)
    todo = [r for r in rows if not (videos / r.file).is_file()]
    record = {"videos": len(rows), "sampled_now": len(todo), "kept": len(rows) - len(todo), "fingerprint": fingerprint}
    sampler_json = cell.folder / "sampler.json"
    if not todo:
        if sampler_json.is_file():
            record["sampler"] = json.loads(sampler_json.read_text())
        return record
    started = time.perf_counter()
    sampler = DiffusersSampler(cell.recipe, device=device, weights_root=cell.sampler_root, batch_size=batch_size)
    if batch_size > 1:
        sampler.pipe.vae.enable_slicing()  # one clip decoded at a time: the same frames, a fraction of the memory
    describe = sampler.describe()
    load_seconds = time.perf_counter() - started
    videos.mkdir(parents=True, exist_ok=True)
    tmp.mkdir(parents=True, exist_ok=True)
    known.update({r.file: asdict(r) for r in rows})
    write_json_atomic(cell.folder / "manifest.json", {
        "cell": cell.key, "fingerprint": fingerprint, "recipe": cell.recipe.describe(), "prompts": config.prompts,
        "fps": FPS, "rows": sorted(known.values(), key=lambda r: (r["line"], r["index"]))})
    write_json_atomic(sampler_json, describe)
    bar = tqdm(total=len(rows), initial=len(rows) - len(todo), desc=cell.key, unit="video", disable=not show_progress,
               dynamic_ncols=True)
    started = time.perf_counter()
    for start in range(0, len(todo), batch_size):
        part = todo[start:start + batch_size]
        clips = sampler.sample([r.sampled_prompt for r in part], [r.seed for r in part])
        for row, clip in zip(part, clips):
            partial = tmp / row.file
            write_mp4(clip, partial, FPS)
            os.replace(partial, videos / row.file)
        bar.update(len(part))
    bar.close()
    shutil.rmtree(tmp, ignore_errors=True)
    seconds = time.perf_counter() - started
    record.update(sampler=describe, sampler_load_seconds=round(load_seconds, 2), sampling_seconds=round(seconds, 2),
                  seconds_per_video=round(seconds / len(todo), 3), nfe_per_video=sampler.last_nfe)
    del sampler
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
    return record


def evaluate_cell(cell: CellPlan, config: Table4Config, force: bool = False) -> tuple[int, dict]:
    """harness.vbench's `run` on the cell's videos (VBench in its environment, then the aggregation)."""
    from harness import vbench as driver

    args = argparse.Namespace(videos=str(cell.folder / "videos"), env=str(config.vbench_env),
                              dimensions=config.dimensions, out=str(cell.folder / "vbench"), mode="standard",
                              flicker_videos=None, no_static_filter=False, hub_weights=config.hub_weights,
                              force=force, dry_run=False)
    code = driver.cmd_run(args)
    return code, json.loads((cell.folder / "vbench" / "vbench.json").read_text())


def cell_record(cell: CellPlan, config: Table4Config, sampling: dict, report: dict, device: str) -> dict:
    """The cell's result: VBench Total, Quality and Semantic in percent (Table 4's scale) beside the paper's."""
    percent = report.get("percent") or {}
    metrics = {f"vbench_{k}": percent.get(k) for k in ("total", "quality", "semantic")}
    complete = not report.get("partial", True) and not report.get("failed")
    return {
        "table": "table4", "world": "real", "cell": cell.key, "row": cell.spec.row, "method": cell.spec.method,
        "backbone": "CogVideoX-2B", "steps": cell.steps, "nfe": cell.nfe, "metrics": metrics,
        "fractions": {k: report.get(k) for k in ("total", "quality", "semantic")}, "paper": cell.paper,
        "partial": not (complete and config.protocol), "complete": complete, "protocol": config.protocol,
        "dimensions_run": report.get("dimensions_run", []), "missing_dimensions": report.get("missing", []),
        "failed_dimensions": report.get("failed", []), "dimensions": report.get("dimensions", {}),
        "vbench_report": str(cell.folder / "vbench" / "vbench.json"), "vbench_env": report.get("vbench_env"),
        "videos": {"folder": str(cell.folder / "videos"), "manifest": str(cell.folder / "manifest.json"),
                   "n": sampling["videos"], "prompts": config.prompts, "samples_per_prompt": config.samples,
                   "flicker_samples": config.flicker_samples, "limit": config.limit, "seed": config.seed,
                   "frames": cell.frames, "height": cell.height, "width": cell.width, "fps": FPS},
        "sampling": {k: v for k, v in sampling.items() if k != "sampler"}, "sampler": sampling.get("sampler"),
        "recipe": cell.recipe.describe(), "source": cell.source, "notes": cell.notes,
        "provenance": provenance(device),
    }


def run(config: Table4Config, device: str = "cuda", batch_size: int = 1, evaluate: bool = True, force: bool = False,
        show_progress: bool = True) -> list[dict]:
    """Sample every cell of the config (resuming), run VBench on each, write <out>/<cell>.json.

    Everything needed is checked first (UserError, nothing written). `evaluate=False` only samples.
    A finished cell (its JSON complete) is not evaluated again unless `force`. Returns the cell records
    (for cells only sampled: their sampling records)."""
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")
    p = plan(config)
    _preflight(p, evaluate)
    import torch

    for cell in p.cells:  # a folder of another recipe or prompt list stops the run before any work
        dtype = cell.recipe.dtype if torch.device(device).type == "cuda" else "float32"
        _check_manifest(cell, _fingerprint(cell, config, dtype), p.prompts.rows)
    out = []
    for cell in p.cells:
        if evaluate and cell.status == "done" and not force:
            print(f"table4: {cell.key}: done ({cell.result}); kept (--force reevaluates)", file=sys.stderr)
            out.append(json.loads(cell.result.read_text()))
            continue
        sampling = sample_cell(cell, p.prompts.rows, config, device, batch_size, show_progress)
        print(f"table4: {cell.key}: {sampling['videos']} videos in {cell.folder / 'videos'} "
              f"({sampling['sampled_now']} sampled now)", file=sys.stderr)
        if not evaluate:
            out.append({"cell": cell.key, "sampling": sampling})
            continue
        # New videos make every finished dimension stale: harness.vbench keeps those unless forced.
        code, report = evaluate_cell(cell, config, force or sampling["sampled_now"] > 0)
        record = cell_record(cell, config, sampling, report, device)
        record["vbench_returncode"] = code
        write_json_atomic(cell.result, record)
        print(f"table4: wrote {cell.result}", file=sys.stderr)
        out.append(record)
    return out


def summary(records: list[dict]) -> str:
    lines = [f"{'cell':<28}{'total':>8}{'quality':>9}{'semantic':>10}   paper (total/quality/semantic)"]
    for r in records:
        if "metrics" not in r:
            lines.append(f"{r['cell']:<28}  sampled only ({r['sampling']['videos']} videos)")
            continue
        m, pp = r["metrics"], r["paper"]
        cells = "".join(f"{'-' if m[k] is None else f'{m[k]:.2f}':>{w}}"
                        for k, w in (("vbench_total", 8), ("vbench_quality", 9), ("vbench_semantic", 10)))
        lines.append(f"{r['cell']:<28}{cells}   {pp['vbench_total']:.2f}/{pp['vbench_quality']:.2f}/"
                     f"{pp['vbench_semantic']:.2f}" + ("  (partial)" if r["partial"] else ""))
    return "\n".join(lines)
