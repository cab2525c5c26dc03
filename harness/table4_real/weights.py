"""Which weight files a cell lacks: CogVideoX-2B's pipeline folder, the released LoRA, this project's
exported student; and how to get them."""
from __future__ import annotations

import json
from pathlib import Path

from .protocol import LORA_FILE, LORA_REPO, STUDENT_CARD, TEACHER_FILES, TEACHER_REPO, WEIGHT_SUFFIXES


def _locate(repo: str, path: str | None, root: Path | None) -> Path | None:
    from baselines import weights as weight_files

    return weight_files.locate(repo, path, root)


def pipeline_missing(folder: Path, label: str) -> list[str]:
    """What a diffusers CogVideoXPipeline folder lacks: model_index.json, then per component its
    config and weights (every shard an index names), the tokenizer's files, the scheduler config."""
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        return [f"{label} : model_index.json"]
    try:
        index = json.loads(index_path.read_text())
    except ValueError:
        return [f"{label} : model_index.json (unreadable)"]
    out = []
    for component in ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"):
        if component not in index:
            out.append(f"{label} : {component} (not in model_index.json)")
            continue
        sub = folder / component
        if component == "scheduler":
            if not (sub / "scheduler_config.json").is_file():
                out.append(f"{label} : scheduler/scheduler_config.json")
            continue
        if component == "tokenizer":
            if not sub.is_dir() or not any(sub.iterdir()):
                out.append(f"{label} : tokenizer/ (spiece.model and its configs)")
            continue
        if not (sub / "config.json").is_file():
            out.append(f"{label} : {component}/config.json")
        indexes = sorted(sub.glob("*.index.json")) if sub.is_dir() else []
        shards: set[str] = set()
        for path in indexes:
            try:
                shards |= set(json.loads(path.read_text()).get("weight_map", {}).values())
            except ValueError:
                out.append(f"{label} : {component}/{path.name} (unreadable)")
        if shards:
            out += [f"{label} : {component}/{s}" for s in sorted(shards) if not (sub / s).is_file()]
        elif not sub.is_dir() or not any(p.suffix in WEIGHT_SUFFIXES for p in sub.iterdir()):
            out.append(f"{label} : {component}/diffusion_pytorch_model.safetensors (or model weights)")
    return out


def teacher_missing(root: Path | None) -> tuple[Path | None, list[str]]:
    folder = _locate(TEACHER_REPO, None, root)
    if folder is None:
        return None, [f"{TEACHER_REPO} : {f}" for f in TEACHER_FILES]
    return folder, pipeline_missing(folder, TEACHER_REPO)


def lora_file(root: Path | None) -> tuple[str | None, Path | None]:
    """(file name in the repository, local path) of the released LoRA: the default name, else the
    repository folder's only .safetensors file (what diffusers' load_lora_weights guesses)."""
    path = _locate(LORA_REPO, LORA_FILE, root)
    if path is not None:
        return LORA_FILE, path
    folder = _locate(LORA_REPO, None, root)
    if folder is not None and folder.is_dir():
        files = [p for p in folder.glob("*.safetensors")
                 if not any(s in p.name for s in ("scheduler", "optimizer", "checkpoint"))]
        if len(files) == 1:
            return files[0].name, files[0]
    return None, None


def student_folder(path: Path) -> Path | None:
    """The exported 4-step student: PATH itself, or PATH/student-K4, when it holds tdm_student.json."""
    for folder in (path, path / "student-K4"):
        if (folder / STUDENT_CARD).is_file():
            return folder
    return None


def where_looked(root: Path | None) -> str:
    return f"under {root}/<owner>/<name>/ or in the Hugging Face cache" if root else \
        "in the Hugging Face cache (or pass --weights-root DIR, laid out DIR/<owner>/<name>/<file>)"


def download_hint(repo: str, root: Path | None) -> str:
    target = f"{root}/{repo}" if root else f"<weights-root>/{repo}"
    return f"huggingface-cli download {repo} --local-dir {target}"
