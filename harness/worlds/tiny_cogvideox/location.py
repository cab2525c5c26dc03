"""Where the tiny-cogvideox world's build is: the folder the tables, the provider and the judge read.

By default the build that ships with the project, `harness/worlds/tiny_cogvideox/assets/`
(`pipeline/`, `classifier/`, `build.json`, as `python -m harness.worlds.tiny_cogvideox.build`
writes them; pyproject.toml's package-data ships them). The environment variable
TDM_TINY_COGVIDEOX_WORLD points the world at another build folder instead: a build of one's own,
or the tests' CPU build of a few steps (tests/conftest.py). It is read on every call, so a test
may set it with monkeypatch.setenv after the world's modules are imported.

A missing build is a user error in one line that names the folder and the command that makes it.
"""
from __future__ import annotations

import os
from pathlib import Path

from methods.common.errors import UserError

ASSETS = Path(__file__).resolve().parent / "assets"
ENV = "TDM_TINY_COGVIDEOX_WORLD"
REQUIRED = ("pipeline/model_index.json", "classifier/model.safetensors", "build.json")


def root() -> Path:
    """The build folder in use: $TDM_TINY_COGVIDEOX_WORLD if set, else the shipped assets/."""
    where = os.environ.get(ENV)
    return Path(where).expanduser().resolve() if where else ASSETS


def missing(folder: Path | None = None) -> list[str]:
    """The files of a build that `folder` (default: root()) lacks."""
    folder = root() if folder is None else folder
    return [name for name in REQUIRED if not (folder / name).is_file()]


def require() -> Path:
    """root(), once it holds a whole build; else a UserError naming what is missing and how to build it."""
    folder = root()
    lacking = missing(folder)
    if lacking:
        how = f"${ENV}" if os.environ.get(ENV) else "the shipped assets folder"
        raise UserError(f"the tiny-cogvideox world is not built: {folder} ({how}) lacks {', '.join(lacking)}; "
                        f"build it on a GPU with `python -m harness.worlds.tiny_cogvideox.build --out {folder} "
                        f"--device cuda`, or set {ENV} to a finished build folder")
    return folder


def build_folder(given: str | Path | None = None) -> Path:
    """`given` (a command's --world), or root() when None, once it holds a whole build; else a UserError
    naming the folder and what it lacks."""
    folder = root() if given is None else Path(given)
    lacking = missing(folder)
    if lacking:
        raise UserError(f"{folder} is not a tiny-cogvideox build: {', '.join(lacking)} missing "
                        "(python -m harness.worlds.tiny_cogvideox.build --out ... makes one)")
    return folder


def pipeline() -> Path:
    """The teacher's CogVideoXPipeline folder."""
    return require() / "pipeline"


def classifier() -> Path:
    """The clip classifier's folder (the judge)."""
    return require() / "classifier"
