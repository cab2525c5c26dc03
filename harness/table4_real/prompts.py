"""VBench's prompts as a config samples them: which files were found, and one row per video (its
file name, the text sampled, its seed)."""
from __future__ import annotations

import glob
import json
from dataclasses import dataclass
from pathlib import Path

from methods.common.errors import UserError

from .config import Table4Config
from .protocol import (AUGMENTED, DIMENSION_SUITE, FULL_INFO, N_LINES, ORIGINAL, PER_DIMENSION, SUITES, VBENCH_SETUP,
                       VBENCH_URL)


@dataclass(frozen=True)
class PromptFile:
    what: str                 # what it is for
    relpath: str              # its path in a VBench checkout
    path: Path | None         # where it was found
    count: int | None         # its prompts
    expected: int | None


@dataclass(frozen=True)
class VideoRow:
    file: str                 # <original prompt>-<index>.mp4
    prompt: str               # the original prompt (VBench looks the video up by it)
    sampled_prompt: str       # what the model is given: the augmented text, or the original
    line: int                 # 0-based line in the prompt list
    index: int
    seed: int


@dataclass(frozen=True)
class PromptPlan:
    kind: str                                  # "augmented" | "original"
    files: tuple[PromptFile, ...]
    per_dimension: dict                        # dimension -> prompts it is scored on
    per_dimension_source: str
    n_lines: int | None
    n_names: int | None
    duplicates: tuple[tuple[str, tuple[int, ...]], ...]  # prompt, its 1-based lines
    flicker_prompts: int | None
    rows: tuple[VideoRow, ...]                 # empty while a file is missing
    missing: tuple[str, ...]                   # one line per missing file: what, and where to get it


def site_packages(env: Path) -> list[Path]:
    return [Path(p) for p in sorted(glob.glob(str(env / "lib" / "python*" / "site-packages")))]


def vbench_package(env: Path) -> Path | None:
    """The vbench package folder installed in VBench's environment, or None."""
    for site in site_packages(env):
        if (site / "vbench" / "VBench_full_info.json").is_file():
            return site / "vbench"
    return None


def checkout_of_env(env: Path) -> Path | None:
    """The VBench checkout an editable install (`pip install -e <checkout>`) points at, or None."""
    for site in site_packages(env):
        for record in sorted(site.glob("vbench-*.dist-info/direct_url.json")):
            try:
                url = json.loads(record.read_text()).get("url", "")
            except (OSError, ValueError):
                continue
            if url.startswith("file://") and (Path(url[len("file://"):]) / "prompts").is_dir():
                return Path(url[len("file://"):])
    return None


def _lines(path: Path) -> list[str]:
    """Prompts one per line, stripped as VBench's loops strip them; trailing blank lines dropped."""
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if any(not line for line in lines):
        raise UserError(f"{path} has a blank line at line {lines.index('') + 1}: not a VBench prompt list")
    return lines


def _full_info(path: Path) -> list[dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        assert isinstance(data, list) and all(isinstance(e["prompt_en"], str) and isinstance(e["dimension"], list)
                                              for e in data)
    except (OSError, ValueError, AssertionError, KeyError, TypeError):
        raise UserError(f"{path} is not VBench's full-info file (a list of {{prompt_en, dimension}})") from None
    return data


def _first(*paths: Path | None) -> Path | None:
    return next((p for p in paths if p is not None and p.is_file()), None)


def video_seed(line: int, index: int, seed: int) -> int:
    """The seed of video `index` of prompt line `line` (0-based): the same in every cell."""
    return seed * 1_000_000 + line * 100 + index


def _checked_name(prompt: str, index: int) -> str:
    name = f"{prompt}-{index}.mp4"
    if "/" in prompt or "\0" in prompt or len(name.encode()) > 255:
        raise UserError(f"prompt {prompt[:60]!r}... cannot name a file ({name!r}): VBench's standard mode needs "
                        "<prompt>-<i>.mp4")
    return name


def prompt_plan(config: Table4Config) -> PromptPlan:
    """VBench's prompts as this config samples them: which files were found, counts, and the videos."""
    root = config.vbench_root
    checkout = root if root is not None else checkout_of_env(config.vbench_env)
    package = vbench_package(config.vbench_env)
    at = (lambda rel: checkout / rel if checkout is not None else None)
    # The names: the evaluating vbench's full-info file first (it is what looks the videos up).
    info_path = _first(package / "VBench_full_info.json" if package else None, at(FULL_INFO))
    original_path = _first(at(ORIGINAL))
    augmented_path = _first(at(AUGMENTED)) if config.prompts == "augmented" else None
    info = _full_info(info_path) if info_path else None
    names = [e["prompt_en"] for e in info] if info else (_lines(original_path) if original_path else None)
    original = _lines(original_path) if original_path else None
    augmented = _lines(augmented_path) if augmented_path else None

    where = (f"looked in {checkout}" if checkout is not None else
             "no VBench checkout given (--vbench-root)") + f" and in the environment {config.vbench_env}"
    missing = []
    if names is None:
        missing.append(f"VBench's prompt list: neither {FULL_INFO} (in the vbench wheel: create the environment with "
                       f"{VBENCH_SETUP} {config.vbench_env}) nor {ORIGINAL} (a checkout of {VBENCH_URL}, "
                       f"--vbench-root DIR) was found; {where}")
    if config.prompts == "augmented" and augmented is None:
        missing.append(f"{AUGMENTED}: the GPT-augmented prompts, not in the vbench wheel: clone {VBENCH_URL} and pass "
                       f"--vbench-root <checkout> (or --prompts original); {where}")
    flicker = None
    if info:
        flicker = {e["prompt_en"] for e in info if "temporal_flickering" in e["dimension"]}
    elif _first(at(PER_DIMENSION.format("temporal_flickering"))):
        flicker = set(_lines(at(PER_DIMENSION.format("temporal_flickering"))))
    elif names is not None and config.flicker_samples > config.samples:
        missing.append(f"which prompts are temporal flickering's: neither {FULL_INFO} nor "
                       f"{PER_DIMENSION.format('temporal_flickering')} was found; {where}")
    if names is not None and original is not None and original != names:
        line = next((i for i, (a, b) in enumerate(zip(original, names)) if a != b), min(len(original), len(names)))
        missing.append(f"{original_path} differs from {info_path} at line {line + 1} (or in length, "
                       f"{len(original)} against {len(names)}): the augmented prompts align with the first, VBench "
                       "looks videos up by the second; use a checkout of the installed vbench's version")
    if names is not None and augmented is not None and len(augmented) != len(names):
        missing.append(f"{augmented_path} has {len(augmented)} prompts but the prompt list has {len(names)}: "
                       "they must align line by line")

    if info:
        per_dimension = {d: sum(d in e["dimension"] for e in info) for d in DIMENSION_SUITE}
        per_source = str(info_path)
    else:
        per_dimension = {d: SUITES[s] for d, s in DIMENSION_SUITE.items()}
        per_source = "expected (VBench prompts/README.md at 45e79ec); not read from a file"
    files = (
        PromptFile("the prompt list VBench evaluates by", FULL_INFO, info_path, len(info) if info else None, N_LINES),
        PromptFile("the original prompts (file names)", ORIGINAL, original_path,
                   len(original) if original else None, N_LINES),
    ) + ((PromptFile("the GPT-augmented prompts (sampled)", AUGMENTED, augmented_path,
                     len(augmented) if augmented else None, N_LINES),) if config.prompts == "augmented" else ())
    duplicates, rows = (), ()
    if names is not None:
        seen: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            seen.setdefault(name, []).append(i + 1)
        duplicates = tuple((name, tuple(lines)) for name, lines in seen.items() if len(lines) > 1)
        if not missing:
            rows = tuple(_rows(config, names, augmented, flicker or set()))
    return PromptPlan(config.prompts, files, per_dimension, per_source, len(names) if names else None,
                      len(set(names)) if names else None, duplicates, len(flicker) if flicker is not None else None,
                      rows, tuple(missing))


def _rows(config: Table4Config, names: list[str], augmented: list[str] | None, flicker: set[str]):
    """One row per video, in sampling order: each name once, sampled from its LAST line's text."""
    last = {name: i for i, name in enumerate(names)}
    order = [name for i, name in enumerate(names) if last[name] == i]
    order.sort(key=lambda name: last[name])
    if config.limit is not None:
        order = order[:config.limit]
    for name in order:
        line = last[name]
        count = config.flicker_samples if name in flicker else config.samples
        for index in range(count):
            yield VideoRow(_checked_name(name, index), name, augmented[line] if augmented else name, line, index,
                           video_seed(line, index, config.seed))
