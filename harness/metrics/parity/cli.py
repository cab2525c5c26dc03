"""The command line, `python -m harness.metrics.parity`: runs the comparisons asked for (`RUNNERS`), prints
their `table` and writes the JSON record (`main`)."""
from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

import torch

from .aesthetic import aesthetic_parity
from .clip import clip_parity
from .common import COMPARISONS, PACKAGES, SHARED_HEAD
from .fid import fid_parity
from .hps import hps_parity
from .vbench import vbench_parity

RUNNERS = {"hps": hps_parity, "aes": aesthetic_parity, "clip": clip_parity, "fid": fid_parity, "vbench": vbench_parity}


def _format(d: dict | None) -> str:
    return "-" if d is None else f"{d['max_abs']:.1e} / {d['max_rel']:.1e}"


def table(results: dict) -> str:
    """One line per row of each comparison: differences (max abs / max rel) and the tolerances (abs)."""
    header = ("metric", "variant", "N", "pixels abs/rel", "features abs/rel", "scores abs/rel",
              "tolerance pix/feat/score", "ok", "s")
    lines = [header]
    for name, result in results.items():
        if "error" in result:
            lines.append((name, "not run", "-", "-", "-", "-", "-", "ERROR", "-"))
            continue
        for row in result["rows"]:
            tol = row["tolerance"]
            lines.append((result["metric"], row["label"], str(row.get("n", result["n"])), _format(row.get("pixels")),
                          _format(row.get("features")), _format(row.get("scores")),
                          " / ".join(f"{tol[k]:g}" if k in tol else "-" for k in ("pixels", "features", "scores")),
                          "yes" if row["within_tolerance"] else "NO", str(result["seconds"])))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    legend = ("abs: max |ours - reference|; rel: abs / max |reference|; tolerances are absolute; "
              "fid's score is the FID itself")
    return "\n".join(["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines]
                     + [legend])


def _quiet_transformers() -> None:
    """No loading reports (a vision model read from a full CLIP folder lists the text tower as unexpected, as
    with the real repository) and no progress bars between the table's lines."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()


def main(argv=None) -> int:
    package_doc = sys.modules[__package__].__doc__  # harness.metrics.parity's docstring
    parser = argparse.ArgumentParser(prog="python -m harness.metrics.parity",
                                     description=package_doc.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the JSON record to write")
    parser.add_argument("--only", default=None,
                        help=f"comma-separated subset of {','.join(COMPARISONS)},vbench (default: "
                             f"{','.join(COMPARISONS)}, and vbench where --vbench-scripts is given)")
    parser.add_argument("--aesthetic-head", "--aes-head", default=None,
                        help=f"the LAION head sac+logos+ava1-l14-linearMSE.pth (default: {SHARED_HEAD})")
    parser.add_argument("--device", default="cpu",
                        help="cpu (float32, the default) or cuda (hpsv2's float16 autocast for HPS beside float32; "
                             "float32 with TF32 off for the rest, plus clip.load's float16 for the aesthetic score)")
    parser.add_argument("--vbench-scripts", metavar="DIR",
                        help="a copy of VBench's repository scripts/ folder: adds the vbench comparison")
    args = parser.parse_args(argv)
    names = [n.strip() for n in (args.only or ",".join(COMPARISONS)).split(",") if n.strip()]
    if args.vbench_scripts and "vbench" not in names and args.only is None:  # an explicit --only decides
        names.append("vbench")
    unknown = [n for n in names if n not in RUNNERS]
    if unknown or not names:
        print(f"error: --only {args.only!r}: known comparisons are {', '.join(RUNNERS)}", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    if device.type not in ("cpu", "cuda") or (device.type == "cuda" and not torch.cuda.is_available()):
        print(f"error: --device {args.device!r}: cpu, or cuda where a CUDA GPU is visible", file=sys.stderr)
        return 2
    if args.aesthetic_head and "aes" in names and not Path(args.aesthetic_head).is_file():
        print(f"error: --aes-head {args.aesthetic_head}: no such file", file=sys.stderr)
        return 2
    from methods.common.provenance import provenance, write_json_atomic

    _quiet_transformers()
    results = {}
    for name in names:
        print(f"[parity] {name} ...", file=sys.stderr, flush=True)
        try:
            options = {"hps": {"device": args.device}, "aes": {"head": args.aesthetic_head, "device": args.device},
                       "clip": {"device": args.device}, "fid": {"device": args.device},
                       "vbench": {"scripts": args.vbench_scripts}}  # float64 arithmetic, device-free
            results[name] = RUNNERS[name](**options.get(name, {}))
        except Exception as error:  # a missing reference package, or a reference that fails: recorded, not hidden,
            results[name] = {"error": f"{type(error).__name__}: {error}"}  # and the other comparisons still run
            print(f"[parity] {name} failed: {results[name]['error']}", file=sys.stderr, flush=True)
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(table(results))
    where = ("CPU" if device.type == "cpu" else
             "CUDA GPU (hpsv2's float16 autocast for HPS, float32 and TF32 off elsewhere)")
    record = {"what": "metric scorers against the reference implementations, random weights of the real "
                      f"architectures, {where}",
              "command": " ".join(["python -m harness.metrics.parity", *(sys.argv[1:] if argv is None else argv)]),
              "provenance": provenance(args.device, packages=PACKAGES), "results": results}
    write_json_atomic(args.out, record)
    print(f"wrote {args.out}", file=sys.stderr)
    failed = [n for n, r in results.items() if "error" in r or not r["within_tolerance"]]
    return 1 if failed else 0
