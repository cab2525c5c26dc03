"""Command-line helpers shared by every entry point: one-line argparse errors and typed
`key=value` overrides of frozen dataclass configs."""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from .errors import UserError


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line on stderr (and exit code 2, as argparse does)."""

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _parse(type_name: str, value: str) -> Any:
    """A string from the command line as the field's annotated type (annotations are strings here)."""
    type_name = type_name.replace(" ", "")
    if type_name == "bool":
        if value.lower() not in ("0", "1", "true", "false"):
            raise ValueError(value)
        return value.lower() in ("1", "true")
    if type_name in ("int", "float", "str"):
        return {"int": int, "float": float, "str": str}[type_name](value)
    if type_name.startswith("tuple["):
        inner = type_name[len("tuple["):-1].split(",")
        bare = value.replace("(", "").replace(")", "").replace("[", "").replace("]", "")
        items = [v for v in bare.split(",") if v != ""]  # "1,2,4", "(1, 2, 4)", "[1,2,4]"; "": ()
        kinds = [inner[0]] * len(items) if inner[-1] == "..." else inner
        if len(kinds) != len(items):
            raise ValueError(value)
        return tuple(_parse(k, v) for k, v in zip(kinds, items))
    raise ValueError(f"no parser for type {type_name}")


def settable_fields(config) -> dict[str, tuple[object, dataclasses.Field]]:
    """Flat name -> (owning dataclass instance, field), one level into nested dataclass configs."""
    out = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            for inner in dataclasses.fields(value):
                out[inner.name] = (value, inner)
        else:
            out[field.name] = (config, field)
    return out


def apply_overrides(config, items: list[str] | dict):
    """A copy of a frozen dataclass config with KEY=VALUE strings (or a dict) applied.

    Keys are flat: a field of a nested dataclass config is named by its own name. A bad key or
    value raises UserError naming it; so does a value the config's own checks reject.
    """
    fields = settable_fields(config)
    pairs = items.items() if isinstance(items, dict) else [item.partition("=")[::2] for item in items]
    top, nested = {}, {}
    for key, value in pairs:
        if key not in fields:
            raise UserError(f"unknown setting {key!r}; known: {', '.join(sorted(fields))}")
        owner, field = fields[key]
        if isinstance(value, str) and field.type != "str":
            try:
                value = _parse(str(field.type), value)
            except ValueError:
                raise UserError(f"setting {key}={value!r} is not a {field.type}") from None
        (top if owner is config else nested.setdefault(id(owner), (owner, {}))[1])[key] = value
    try:
        for owner, changes in nested.values():
            name = next(f.name for f in dataclasses.fields(config) if getattr(config, f.name) is owner)
            top[name] = dataclasses.replace(owner, **changes)
        return dataclasses.replace(config, **top)
    except ValueError as err:
        raise UserError(str(err)) from None


def quiet_libraries() -> None:
    """Keep command output to our own lines: no transformers/diffusers warnings or loading bars
    (transformers warns at import that it falls back from torchvision, which this project omits)."""
    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import diffusers
    import transformers

    for library in (transformers, diffusers):
        library.utils.logging.set_verbosity_error()
        library.utils.logging.disable_progress_bar()


def check_device(name: str | None) -> str | None:
    """The device name, or a UserError when a CUDA device is asked for and none is visible."""
    import torch

    if name is not None and name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name} was asked for, but torch {torch.__version__} sees no CUDA GPU")
    return name


def is_main_launch_process() -> bool:
    """True unless this is a non-main process of `accelerate launch` / torchrun (RANK > 0).

    For output made before, or outside, an Accelerator: only the main process prints and reports.
    """
    import os

    return os.environ.get("RANK", "0") == "0"


def parse_seeds(text: str, option: str = "--seeds") -> tuple[int, ...]:
    """"0,1,2" as seeds: non-negative integers, at least one; a bad list is a UserError."""
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip() != "")
    except ValueError:
        raise UserError(f"{option} expects comma-separated integers, got {text!r}") from None
    if not seeds or min(seeds) < 0:
        raise UserError(f"{option} expects non-negative integers, got {text!r}")
    return seeds
