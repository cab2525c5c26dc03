"""What a run would do, and what it still needs: one CellPlan per cell, the prompts, VBench's
environment, the cost; and the plan as text. Reads files only, writes nothing."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

from .config import TRAIN_COMMAND, Table4Config
from .prompts import PromptPlan, prompt_plan, site_packages, vbench_package
from .protocol import (CELLS, COST_BASIS, FPS, FRAMES, GRIT_DIMENSIONS, HEIGHT, LORA_FILE, LORA_REPO, N_FLICKER,
                       N_LINES, N_NAMES, PAPER, RELEASED_TIMESTEPS, STUDENT_CARD, T5_SECONDS, TEACHER_REPO,
                       TRANSFORMER_SECONDS, VAE_SECONDS, VBENCH_SETUP, VBENCH_WEIGHTS, WIDTH, CellSpec)
from .weights import download_hint, lora_file, pipeline_missing, student_folder, teacher_missing, where_looked


@dataclass(frozen=True)
class CostEstimate:
    nfe: int
    seconds_per_video: float
    videos: int
    gpu_hours: float
    basis: tuple[str, ...] = COST_BASIS


@dataclass(frozen=True)
class CellPlan:
    spec: CellSpec
    sampler: str              # one line: base, weights, scheduler, steps, guidance, dtype
    steps: int
    nfe: int
    guidance: float
    timesteps: tuple[int, ...] | None
    frames: int
    height: int
    width: int
    status: str               # "done" | "ready" | "missing weights" | "needs training"
    missing: tuple[str, ...]  # one line per missing file
    how: str                  # how to provide what is missing
    videos: int
    videos_done: int
    cost: CostEstimate
    folder: Path
    result: Path
    paper: dict
    source: str
    notes: str = ""
    recipe: object = None     # baselines.recipe.SamplerRecipe, when it can be built
    sampler_root: Path | None = None  # the weights root the recipe's base is found under

    @property
    def key(self) -> str:
        return self.spec.key


@dataclass(frozen=True)
class VBenchPlan:
    env: Path
    python: Path | None
    package: Path | None      # the installed vbench package folder
    detectron2: bool
    cache_dir: Path
    dimensions: tuple[str, ...]
    missing: tuple[str, ...]          # what stops VBench from running at all
    missing_weights: tuple[str, ...]  # VBench's cache files absent (it would try to download them)


@dataclass(frozen=True)
class Table4Plan:
    config: Table4Config
    prompts: PromptPlan
    cells: tuple[CellPlan, ...]
    vbench: VBenchPlan

    @property
    def videos_per_cell(self) -> int:
        return len(self.prompts.rows) or _expected_videos(self.config)


def _expected_videos(config: Table4Config) -> int:
    names = min(config.limit or N_NAMES, N_NAMES)
    flicker = min(N_FLICKER, names)
    return names * config.samples + flicker * (config.flicker_samples - config.samples)


def _clip(config: Table4Config, frames: int, height: int, width: int) -> tuple[int, int, int]:
    return config.clip if config.clip is not None else (frames, height, width)


def _cost(nfe: int, videos: int) -> CostEstimate:
    seconds = nfe * TRANSFORMER_SECONDS + VAE_SECONDS + T5_SECONDS
    return CostEstimate(nfe, round(seconds, 2), videos, round(videos * seconds / 3600, 1))


def _done(config: Table4Config, key: str, rows) -> tuple[int, Path]:
    folder = config.out / key / "videos"
    done = sum((folder / r.file).is_file() for r in rows) if folder.is_dir() else 0
    return done, (config.results_dir or config.out) / f"{key}.json"


def _status(result: Path, missing, videos: int, dimensions: tuple[str, ...]) -> str:
    """"done" when the cell's result holds every asked-for dimension of exactly these videos."""
    if missing:
        return "missing weights"
    if result.is_file():
        try:
            record = json.loads(result.read_text())
        except ValueError:
            return "ready"
        if (record.get("complete") and record.get("videos", {}).get("n") == videos
                and sorted(record.get("dimensions_run", [])) == sorted(dimensions)):
            return "done"
    return "ready"


def _dims(config: Table4Config) -> tuple[str, ...]:
    from harness.vbench import parse_dimensions

    return tuple(parse_dimensions(config.dimensions, "standard"))


def _teacher_cell(config: Table4Config, spec: CellSpec, rows, videos: int) -> CellPlan:
    from baselines.recipe import SamplerRecipe

    frames, height, width = _clip(config, FRAMES, HEIGHT, WIDTH)
    recipe = SamplerRecipe(
        "cogvideox-2b-teacher-50", "CogVideoX-2B", "cogvideox", TEACHER_REPO, scheduler="CogVideoXDDIMScheduler",
        steps=50, guidance=6.0, guidance_mode="cfg", height=height, width=width, frames=frames, dtype=config.dtype,
        source="diffusers 0.42.1 CogVideoXPipeline.__call__ defaults (50 steps, guidance_scale 6, no dynamic CFG); "
               "THUDM/CogVideo inference/cli_demo.py @ 1c2e487 (DDIM trailing, 50 steps, guidance 6.0, 49 frames, "
               "8 fps)",
        notes="the repository's scheduler config (CogVideoXDDIMScheduler, trailing); VBench's SAT entry used "
              "VPSDEDPMPP2MSampler with DynamicCFG (scale 6, exp 5) instead")
    folder, missing = teacher_missing(config.weights_root)
    done, result = _done(config, spec.key, rows)
    return CellPlan(
        spec, f"{TEACHER_REPO}, CogVideoXDDIMScheduler (its own config: trailing), 50 steps, CFG 6, {config.dtype}",
        50, recipe.nfe, 6.0, None, frames, height, width, _status(result, missing, videos, _dims(config)),
        tuple(missing),
        f"{download_hint(TEACHER_REPO, config.weights_root)} (about 13 GB; looked {where_looked(config.weights_root)})",
        videos, done, _cost(recipe.nfe, videos), config.out / spec.key, result, PAPER[spec.paper], recipe.source,
        recipe.notes, recipe, config.weights_root)


def _lora_cell(config: Table4Config, spec: CellSpec, rows, videos: int) -> CellPlan:
    from baselines.recipe import Weights
    from baselines.registry import get_recipe

    frames, height, width = _clip(config, FRAMES, HEIGHT, WIDTH)
    name, path = lora_file(config.weights_root)
    recipe = replace(get_recipe("tdm-cogvideox-2b-lora"), dtype=config.dtype, frames=frames, height=height, width=width)
    if name is not None and name != LORA_FILE:
        recipe = replace(recipe, weights=(Weights("lora", LORA_REPO, name),))
    _, missing = teacher_missing(config.weights_root)
    if path is None:
        missing = missing + [f"{LORA_REPO} : {LORA_FILE} (the diffusers default name; the README names no file)"]
    done, result = _done(config, spec.key, rows)
    timesteps = tuple(recipe.timesteps)
    return CellPlan(
        spec, f"{TEACHER_REPO} + {LORA_REPO} ({name or LORA_FILE}, fused at scale 1), "
              f"CogVideoXTimestepsDDIMScheduler on {list(timesteps)}, guidance 1, {config.dtype}",
        recipe.steps, recipe.nfe, recipe.guidance, timesteps, frames, height, width,
        _status(result, missing, videos, _dims(config)),
        tuple(missing), f"{download_hint(LORA_REPO, config.weights_root)} and the teacher's files "
                        f"(looked {where_looked(config.weights_root)})",
        videos, done, _cost(recipe.nfe, videos), config.out / spec.key, result, PAPER[spec.paper],
        "Luo-Yihong/TDM README.md (TDM-CogVideoX-2B-LoRA, Pre-trained Models) @ 81b019f",
        "the README samples the stock scheduler's 4 steps [999, 749, 499, 249] and notes the LoRA was trained on "
        "[999, 856, 665, 399], which is what this cell samples", recipe, config.weights_root)


def _project_cell(config: Table4Config, spec: CellSpec, rows, videos: int) -> CellPlan:
    from baselines.recipe import SamplerRecipe

    folder = student_folder(Path(config.student))
    done, result = _done(config, spec.key, rows)
    cost = _cost(4, videos)
    if folder is None:
        frames, height, width = _clip(config, FRAMES, HEIGHT, WIDTH)
        return CellPlan(
            spec, f"the export of the cogvideox-2b preset, CogVideoXTimestepsDDIMScheduler on "
                  f"{list(RELEASED_TIMESTEPS)}, guidance 1, {config.dtype}",
            4, 4, 1.0, RELEASED_TIMESTEPS, frames, height, width, "needs training",
            (f"{config.student}/student-K4/{STUDENT_CARD} (and the pipeline folder around it)",),
            f"train it: {TRAIN_COMMAND} (exports runs/cogvideox-2b/student-K4), or pass --student DIR",
            videos, done, cost, config.out / spec.key, result, PAPER[spec.paper],
            "methods/tdm/presets.py cogvideox-2b; methods/tdm/backbones_cogvideox.py (export layout)")
    card = json.loads((folder / STUDENT_CARD).read_text())
    timesteps = tuple(int(t) for t in card["timesteps"])
    frames, height, width = _clip(config, int(card.get("frames", FRAMES)), int(card.get("height", HEIGHT)),
                                  int(card.get("width", WIDTH)))
    recipe = SamplerRecipe(
        spec.key, spec.method, "cogvideox", folder.name, scheduler="CogVideoXTimestepsDDIMScheduler",
        steps=len(timesteps), timesteps=timesteps, guidance=float(card.get("guidance_scale", 1.0)),
        guidance_mode="none",
        height=height, width=width, frames=frames, dtype=config.dtype, source=str(folder / STUDENT_CARD),
        notes=card.get("sampling", ""))
    missing = pipeline_missing(folder, str(folder))
    return CellPlan(
        spec, f"{folder} (step count {card['steps']}), CogVideoXTimestepsDDIMScheduler on {list(timesteps)}, "
              f"guidance {recipe.guidance:g}, {config.dtype}",
        recipe.steps, recipe.nfe, recipe.guidance, timesteps, frames, height, width,
        _status(result, missing, videos, _dims(config)),
        tuple(missing), f"re-export the run ({TRAIN_COMMAND})", videos, done, _cost(recipe.nfe, videos),
        config.out / spec.key, result, PAPER[spec.paper], str(folder / STUDENT_CARD), recipe.notes, recipe,
        folder.parent)


def vbench_plan(config: Table4Config) -> VBenchPlan:
    dims = _dims(config)
    env = Path(config.vbench_env)
    python = env / "bin" / "python"
    package = vbench_package(env)
    detectron2 = any((site / "detectron2").is_dir() for site in site_packages(env))
    cache = Path(os.environ.get("VBENCH_CACHE_DIR") or Path.home() / ".cache" / "vbench")
    missing = []
    if not python.exists():
        missing.append(f"VBench environment {env}: no {python}; create it with {VBENCH_SETUP} {env} "
                       "(or pass --vbench-env DIR)")
    elif package is None:
        missing.append(f"VBench environment {env} has no vbench package (no site-packages/vbench/"
                       f"VBench_full_info.json); create it with {VBENCH_SETUP} {env}")
    grit = [d for d in dims if d in GRIT_DIMENSIONS]
    if python.exists() and grit and not detectron2:
        missing.append(f"detectron2 is not installed in {env}, and {', '.join(grit)} need it: build it from "
                       "facebookresearch/detectron2 against the environment's torch (VBench's README), or leave "
                       "those out with --dimensions")
    weights = [f"{cache}/{rel} ({', '.join(d for d in needs if d in dims)})" for rel, needs in VBENCH_WEIGHTS.items()
               if any(d in dims for d in needs) and not (cache / rel).exists()]
    return VBenchPlan(env, python if python.exists() else None, package, detectron2, cache, dims, tuple(missing),
                      tuple(weights))


def plan(config: Table4Config = Table4Config()) -> Table4Plan:
    """What `run` would do with this config, and what it still needs; reads files only, writes nothing."""
    prompts = prompt_plan(config)
    videos = len(prompts.rows) or _expected_videos(config)
    build = {"teacher": _teacher_cell, "lora": _lora_cell, "project": _project_cell}
    cells = tuple(build[CELLS[key].kind](config, CELLS[key], prompts.rows, videos) for key in config.cells)
    return Table4Plan(config, prompts, cells, vbench_plan(config))


def _n(value: int | float) -> str:
    return f"{value:,}"


def format_plan(p: Table4Plan) -> str:
    c, pr = p.config, p.prompts
    frames, height, width = _clip(c, FRAMES, HEIGHT, WIDTH)
    kind = ("GPT-augmented (prompts/augmented_prompts/gpt_enhanced_prompts, as VBench's CogVideoX-2B entries)"
            if pr.kind == "augmented" else "original")
    lines = [f"table4 on real: CogVideoX-2B against TDM at 4 steps on VBench; {len(p.cells)} cells, "
             f"{_n(p.videos_per_cell)} videos each"
             + ("" if c.protocol else " (not VBench's protocol: --limit, --samples or --clip)"),
             f"  prompts: VBench's all-dimension suite, sampled from the {kind} prompts, files named "
             f"<original prompt>-<i>.mp4"]
    for f in pr.files:
        found = f"{f.path} ({f.count} prompts)" if f.path else "not found"
        lines.append(f"    {f.relpath:<70} {found}; {f.what}, {f.expected} expected")
    counts = (f"{pr.n_lines} lines, {pr.n_names} distinct names" if pr.n_names is not None
              else f"{N_LINES} lines and {N_NAMES} distinct names expected")
    lines.append(f"    {counts}")
    for prompt, at in pr.duplicates:
        lines.append(f"    listed twice (lines {', '.join(map(str, at))}): {prompt!r}; the later line's text is "
                     "sampled")
    lines.append("    per dimension (" + pr.per_dimension_source + "): "
                 + ", ".join(f"{d} {n}" for d, n in pr.per_dimension.items()))
    flicker = pr.flicker_prompts if pr.flicker_prompts is not None else f"{N_FLICKER} expected"
    lines.append(f"  samples: {c.samples} per prompt (i = 0..{c.samples - 1}), {c.flicker_samples} per temporal-"
                 f"flickering prompt ({flicker} prompts; VBench's static filter keeps up to 5); seed of video i of "
                 f"line l: {c.seed} * 1e6 + 100 l + i; {frames} frames at {height}x{width}, mp4 at {FPS} fps"
                 + (f"; only the first {c.limit} prompts" if c.limit else ""))
    for line in pr.missing:
        lines.append(f"  missing prompts: {line}")
    v = p.vbench
    lines.append(f"  VBench: environment {v.env} ({'vbench at ' + str(v.package) if v.package else 'not ready'}), "
                 f"standard mode, {len(v.dimensions)} dimensions, python -m harness.vbench run on each cell's videos")
    for line in v.missing:
        lines.append(f"  missing for the evaluation: {line}")
    if v.missing_weights:
        lines.append(f"  VBench's weights not in its cache {v.cache_dir} (it downloads them itself when online; "
                     f"offline, place them there: {VBENCH_SETUP} lists them):")
        lines += [f"      {w}" for w in v.missing_weights]
    lines.append(f"  weights: looked {where_looked(c.weights_root)}; results under {c.out}")
    listed: set[str] = set()
    for cell in p.cells:
        lines.append(f"  {cell.key}  [Table 4 row: {cell.spec.row}]")
        lines.append(f"      {cell.sampler}")
        lines.append(f"      {cell.steps} steps, {cell.nfe} NFE; {_n(cell.videos)} videos "
                     f"({_n(cell.videos_done)} made); at 49x480x720 about {cell.cost.seconds_per_video} s per "
                     f"video, {cell.cost.gpu_hours} GPU-hours (estimate); paper: "
                     + ", ".join(f"{k.split('_')[1]} {v:.2f}" for k, v in cell.paper.items()))
        if cell.status in ("missing weights", "needs training"):
            lines.append(f"      {cell.status}:")
            again = [m for m in cell.missing if m in listed]
            lines += [f"        {m}" for m in cell.missing if m not in listed]
            if again:
                repos = sorted({m.split(" : ")[0] for m in again})
                lines.append(f"        and the {len(again)} files of {', '.join(repos)} listed above")
            listed.update(cell.missing)
            lines.append(f"      how: {cell.how}")
        else:
            lines.append(f"      {cell.status}" + (f": {cell.result}" if cell.status == "done" else ""))
    lines.append("  cost basis: " + "; ".join(COST_BASIS))
    return "\n".join(lines)
