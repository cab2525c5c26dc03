"""Where a number came from: commit, date, device, package versions; and atomic JSON writes.

Shared by the harness and the methods' own tools (bench, scaling), which never import the harness."""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path

import torch

REPOSITORY = Path(__file__).resolve().parents[2]  # methods/common/provenance.py -> the checkout
PACKAGES = ("torch", "diffusers", "transformers", "accelerate", "peft", "safetensors", "numpy")


def git_commit() -> str:
    root = REPOSITORY
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def source_tree() -> str:
    """The git tree hash of the code as it is on disk (tracked and untracked files, minus ignored
    ones), whatever HEAD says. A copy of the repository whose HEAD is older than its files still
    names the exact code it ran: the tree equals `git rev-parse <commit>^{tree}` of the commit
    that holds those files."""
    root = REPOSITORY
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "GIT_INDEX_FILE": str(Path(tmp) / "index")}
        try:
            subprocess.run(["git", "add", "-A", "."], cwd=root, env=env, capture_output=True, check=True)
            return subprocess.run(["git", "write-tree"], cwd=root, env=env, capture_output=True, text=True,
                                  check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "unknown"


def device_name(device: str | torch.device) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def package_versions(*names: str) -> dict[str, str | None]:
    """Installed distributions' versions by name; None where one is not installed."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, read in 16 MiB blocks (weights files are gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def provenance(device: str | torch.device, packages: tuple[str, ...] = ()) -> dict:
    """`packages`: distributions to record beside PACKAGES (None where not installed)."""
    versions = package_versions(*PACKAGES, *packages)
    return {
        "commit": git_commit(),
        "source_tree": source_tree(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": device_name(device),
        "python": platform.python_version(),
        "versions": versions,
    }


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, data: dict) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")
