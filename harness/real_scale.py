"""Real-scale evaluation of a sampler, as Tables 1 and 2 measure it: the HPSv2 benchmark prompts,
one image per prompt, scored with the paper's metrics (harness/metrics/registry.py).

    python -m harness.reproduce table2 --world real --weights-root /models --device cuda [--scale reduced]

For each sampler: `prompts_per_style` prompts of each of the four HPSv2 benchmark styles (800 in
the benchmark; fewer at reduced scales, and then every HPS number is marked partial), one image
per prompt with a seed fixed by (style, prompt index, seed), written as PNG with a manifest under
`<results>/runs/cache/real/samples/<recipe>-<digest>` (kept: an interrupted evaluation resumes
where it stopped, and the same samples are scored again without sampling), then scored by
`harness.score.score_folder`. FID is taken against the teacher of the sampler's base (the
recipe `<pipeline>-teacher-25` on the same base), sampled on the same prompts and seeds, so the
teacher's images are made once per base and shared. Table 1's and 2's columns (`hps_<style>`,
`hps_average`, `aesthetic`, `clip_score`, `fid`) come from the registry's `column` fields.

The benchmark's prompts are the HPDv2 dataset's `benchmark/<style>.json` files (Hugging Face
dataset zhwang/HPDv2), found under `<weights-root>/zhwang/HPDv2/benchmark/` or in the Hugging
Face cache.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from baselines.recipe import SamplerRecipe
from baselines.registry import get_recipe, load_sampler
from methods.common.cli import apply_overrides
from methods.common.errors import UserError

from .metrics.hps import STYLES  # the benchmark's styles, which name its prompt files
from .metrics.registry import DISTRIBUTION, get_metric
from .scales import Scale

PROMPTS_REPO = "zhwang/HPDv2"
SAMPLES = "samples"


@dataclass(frozen=True)
class RealEvalConfig:
    prompts_per_style: int = 800          # the HPSv2 benchmark: 4 styles x 800 prompts, one image each
    metrics: tuple[str, ...] = ("hps-v2.1", "aes", "clip")
    fid_to_teacher: bool = True           # FID against the same base's 25-step teacher (Table 2)
    seed: int = 0
    batch_size: int = 0                   # images per pipeline call; 0: 16 on a GPU, 2 on a CPU


def image_seed(style: int, index: int, seed: int) -> int:
    """The sampling seed of prompt `index` of style `style`: a function of those and the base seed
    only, so that any sampler and its teacher draw the same noise for the same prompt."""
    return seed * 1_000_000 + style * 10_000 + index


def benchmark_prompts(weights_root: Path | None, per_style: int) -> list[dict]:
    """Manifest rows (prompt, style, seed-less) of the first `per_style` prompts of each style."""
    from baselines.weights import locate

    rows = []
    for s, style in enumerate(STYLES):
        path = locate(PROMPTS_REPO, f"benchmark/{style}.json", weights_root)
        if path is None:
            raise UserError(f"no benchmark/{style}.json of the HPSv2 benchmark prompts under "
                            f"{weights_root or '<weights-root>'}/{PROMPTS_REPO} or in the Hugging Face cache: "
                            f"download the dataset {PROMPTS_REPO} (its benchmark/ folder) there")
        prompts = json.loads(Path(path).read_text())
        if len(prompts) < per_style:
            raise UserError(f"{path} holds {len(prompts)} prompts; the scale asks for {per_style}")
        rows += [{"file": f"{style}-{i:05d}.png", "prompt": p, "style": style, "style_index": s, "index": i}
                 for i, p in enumerate(prompts[:per_style])]
    return rows


def teacher_of(recipe: SamplerRecipe) -> SamplerRecipe:
    """The 25-step teacher on the recipe's own base, by the name its table cell has: the reference
    of the recipe's FID-to-teacher."""
    from baselines.recipes import BASES

    teacher = get_recipe(f"{recipe.pipeline}-teacher-25")
    if recipe.base == teacher.base:
        return teacher
    base = next((key for key, repo in BASES.items() if repo == recipe.base), recipe.base)
    return get_recipe(f"{teacher.name}@{base}")


class RealScaleEvaluator:
    """Tables 1-2 at real scale: the evaluator interface of harness/evaluation.py."""

    world = "real"
    main_metric = "hps_average"
    metrics_note = ""  # the paper's own metrics: nothing to qualify

    def __init__(self, scale: Scale, device: str, cache_dir: Path, weights_root: Path | None = None):
        self.config = apply_overrides(RealEvalConfig(), scale.eval.get(self.world, {}))
        self.device, self.weights_root = device, weights_root
        self.cache_dir = Path(cache_dir) / self.world
        self.batch_size = self.config.batch_size or (16 if torch.device(device).type == "cuda" else 2)
        self._metrics = [get_metric(name) for name in self.config.metrics]
        self._recipe: SamplerRecipe | None = None
        self._parts: dict = {}

    @property
    def metrics(self) -> dict[str, str]:
        """Column -> "higher" | "lower", from the registry."""
        out = {}
        for m in self._metrics + ([get_metric("fid")] if self.config.fid_to_teacher else []):
            out.update({column: m.better for column in m.style_columns.values()})
            out[m.column] = m.better
        return out

    @property
    def n_samples(self) -> int:
        return self.config.prompts_per_style * len(STYLES)

    @property
    def sampling_note(self) -> str:
        n = self.config.prompts_per_style
        part = "" if n == 800 else ", a partial benchmark (the whole one has 800)"
        return (f"sampled by their recipes at their own size on the HPSv2 benchmark prompts, {n} per style{part}, "
                f"one image per prompt with seeds fixed by style and prompt index, {self.n_samples} samples per cell")

    def missing(self) -> list[str]:
        """The metrics' weights and the benchmark's prompt files that are not on disk."""
        from baselines.weights import locate

        metrics = self._metrics + ([get_metric("fid")] if self.config.fid_to_teacher else [])
        out = [line for m in metrics for line in m.missing(self.weights_root)]
        return out + [f"{PROMPTS_REPO} : benchmark/{style}.json" for style in STYLES
                      if locate(PROMPTS_REPO, f"benchmark/{style}.json", self.weights_root) is None]

    def fingerprint_config(self) -> dict:
        return asdict(self.config)

    def recipe_for_world(self, recipe: SamplerRecipe) -> SamplerRecipe:
        return recipe  # its own size, prompts and settings: nothing is changed at real scale

    def recipe_sampler(self, recipe: SamplerRecipe, weights_root: Path | None):
        started = time.perf_counter()
        self._recipe = recipe
        sampler = load_sampler(self.recipe_for_world(recipe), self.device, weights_root or self.weights_root,
                               batch_size=self.batch_size)
        sampler.pipe.set_progress_bar_config(disable=True)
        self._parts["sampler_load_seconds"] = round(time.perf_counter() - started, 2)
        return sampler

    def sampler(self, run_dir: Path, cell):
        raise UserError(f"{cell.key} is a trained cell; at real scale only recipe cells run until the real-size "
                        "students are trained (python -m harness.reproduce TABLE --world real --dry-run lists them)")

    def samples(self, sampler, name: str) -> Path:
        """The sampler's benchmark images and manifest, made once (resuming a half-made folder)."""
        rows = benchmark_prompts(self.weights_root, self.config.prompts_per_style)
        for row in rows:
            row["seed"] = image_seed(row.pop("style_index"), row.pop("index"), self.config.seed)
            row["sampler"] = name
        key = json.dumps([{k: v for k, v in sampler.describe().items() if k != "name"},
                          [{k: v for k, v in r.items() if k != "sampler"} for r in rows]], sort_keys=True, default=str)
        folder = self.cache_dir / SAMPLES / f"{name.replace('/', '_')}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
        if (folder / "manifest.json").is_file():
            return folder
        folder.mkdir(parents=True, exist_ok=True)
        todo = [r for r in rows if not (folder / r["file"]).is_file()]
        from PIL import Image

        for start in tqdm(range(0, len(todo), self.batch_size), desc=f"sampling {name}", unit="batch",
                          disable=not todo):
            part = todo[start:start + self.batch_size]
            images = sampler.sample([r["prompt"] for r in part], [r["seed"] for r in part])
            for row, image in zip(part, images):
                Image.fromarray(image).save(folder / row["file"])
        (folder / "manifest.json").write_text(json.dumps(rows, indent=1) + "\n")  # last: marks the folder complete
        return folder

    def score(self, sampler) -> dict:
        from .score import score_folder

        if self._recipe is None:
            raise RuntimeError("score() follows recipe_sampler()")
        recipe, started = self._recipe, time.perf_counter()
        folder = self.samples(sampler, recipe.name)
        sampled = time.perf_counter()
        record = score_folder(folder, self._metrics, self.weights_root, self.device, batch_size=32)
        metrics = self._columns(record)
        teacher = teacher_of(recipe)
        if self.config.fid_to_teacher and replace(teacher, name=recipe.name) != recipe:  # not the teacher itself
            reference = self.samples(self.recipe_sampler(teacher, None), teacher.name)
            fid = score_folder(folder, [get_metric("fid")], self.weights_root, self.device, reference=reference)
            metrics.update(self._columns(fid))
            record["metrics"].update(fid["metrics"])
        self._recipe = recipe
        self._parts.update(sampling_seconds=round(sampled - started, 2),
                           scoring_seconds=round(time.perf_counter() - sampled, 2),
                           samples=str(folder), partial=record["partial"], scores=record["metrics"])
        return metrics

    def _columns(self, record: dict) -> dict:
        """The table's columns from a score record, named by the registry."""
        out = {}
        for name, result in record["metrics"].items():
            metric = get_metric(name)
            benchmark = result.get("benchmark")
            if benchmark:
                out[metric.column] = benchmark["average"]
                out.update({column: benchmark["styles"][style]["mean"]
                            for style, column in metric.style_columns.items() if style in benchmark["styles"]})
            else:
                out[metric.column] = result["value"] if metric.kind == DISTRIBUTION else result["mean"]
        return out

    def take_parts(self) -> dict:
        parts, self._parts = self._parts, {}
        return parts
