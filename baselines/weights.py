"""Where a recipe's weights are on disk; nothing here reaches for the network.

A weights folder mirrors the Hugging Face repositories: `<root>/<owner>/<name>/<path in repo>`
(what `huggingface-cli download <repo> --local-dir <root>/<repo>` writes). Without a folder,
or for a repository not in it, the Hugging Face cache is searched with `local_files_only`.
Project-trained students (`project/<name>`) live under `<root>/project/<name>` only.
"""
from __future__ import annotations

from pathlib import Path

from methods.common.errors import UserError

from .recipe import SamplerRecipe, Weights


def _from_cache(repo: str, path_in_repo: str | None) -> Path | None:
    """The cached snapshot's file or folder, or None. `path_in_repo` None: the whole snapshot."""
    from huggingface_hub import snapshot_download, try_to_load_from_cache
    from huggingface_hub.errors import LocalEntryNotFoundError

    if path_in_repo is not None and "." in Path(path_in_repo).name:
        found = try_to_load_from_cache(repo, path_in_repo)
        return Path(found) if isinstance(found, str) else None
    try:
        snapshot = Path(snapshot_download(repo, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None
    target = snapshot / path_in_repo if path_in_repo else snapshot
    return target if target.exists() else None


def locate(repo: str, path_in_repo: str | None, root: Path | None) -> Path | None:
    if root is not None:
        target = root / repo / path_in_repo if path_in_repo else root / repo
        if target.exists():
            return target
    if repo.startswith("project/"):
        return None
    return _from_cache(repo, path_in_repo)


def weights_path(w: Weights) -> str | None:
    """The file's path inside its repository, or None for a whole model folder at the root."""
    return "/".join(p for p in (w.subfolder, w.file) if p) or None


def needed(recipe: SamplerRecipe) -> list[tuple[str, str | None]]:
    """(repository, path in it) for the base pipeline and every attached file."""
    return [(recipe.base, None)] + [(w.repo, weights_path(w)) for w in recipe.weights]


def missing(recipe: SamplerRecipe, root: Path | None) -> list[str]:
    """One readable line per missing piece of the recipe; empty when all are on disk."""
    out = []
    for repo, path in needed(recipe):
        if locate(repo, path, root) is None:
            what = f"{repo} : {path}" if path else f"{repo} (the whole repository)"
            out.append(what)
    return out


def how_to_provide(recipe: SamplerRecipe, root: Path | None) -> str:
    lost = missing(recipe, root)
    where = f"under {root}/<repository>/" if root is not None else "in the Hugging Face cache"
    if recipe.is_project_trained:
        hint = (f"{recipe.base} is a student this project trains: export it to "
                f"<weights folder>/{recipe.base} and pass --weights-root")
    else:
        hint = ("download on a machine with internet (huggingface-cli download <repository> [file] "
                "--local-dir <weights folder>/<repository>) and pass --weights-root, or copy the Hugging Face cache")
    return f"{recipe.name}: missing weights {'; '.join(lost)} (looked {where}); {hint}"


def require(recipe: SamplerRecipe, root: Path | None) -> None:
    if missing(recipe, root):
        raise UserError(how_to_provide(recipe, root))
