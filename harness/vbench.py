"""Run VBench in its own environment and aggregate its results with the project's code.

    python -m harness.vbench run VIDEOS_DIR --env .vbench-env --out DIR [--dimensions all|a,b]
                                 [--mode standard|custom_input] [--dry-run]
    python -m harness.vbench aggregate RESULTS_DIR --out FILE
    python -m harness.vbench flicker VIDEOS_DIR [--out FILE]

`run` calls VBench's evaluate (`python -m vbench.launch.evaluate`, the wheel's copy of the
repository's evaluate.py) once per dimension with the environment's python, each into its own
DIR/raw/<dimension>/ with its log in DIR/logs/; a dimension whose results are already there is
not run again (--force reruns it). Temporal flickering is scored on the videos VBench's static
filter keeps (`vbench static_filter`, into DIR/static_filter/filtered_videos), unless
--flicker-videos names a folder filtered already or --no-static-filter takes the videos as they
are. Then DIR/vbench.json holds per-dimension raw and normalised scores, Quality, Semantic and
Total (only when no dimension is missing), the commands, the environment's package versions and
the provenance. VBench's evaluate needs a CUDA GPU (it initialises NCCL and uses "cuda").

Videos for `standard` mode are VBench's prompts named `<prompt>-<i>.mp4`, i = 0..4 (the
CogVideoX entries sampled from the GPT-augmented prompt list but are named by the original
prompt); `custom_input` reads each video's prompt from its file name and cannot score object
class, multiple objects, scene, appearance style, color or spatial relationship.

`flicker` computes the weight-free temporal flickering in this environment from decoded frames:
one .npy array (T, H, W, 3) uint8 per video, or one folder of frame PNGs per video. mp4 needs a
decoder, which is VBench's environment: `run --dimensions temporal_flickering`.

A user mistake (no such environment, folder or dimension) is one line on stderr and exit code 2;
a run in which some dimension failed writes its partial result and exits 1.
"""
from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from harness.metrics import vbench as vb
from methods.common.cli import OneLineParser
from methods.common.errors import UserError
from methods.common.provenance import provenance, write_json_atomic

SETUP = "scripts/vbench_env.sh"
MODES = {"standard": "vbench_standard", "custom_input": "custom_input"}
# VBench.check_dimension_requires_extra_info: these need the prompt suite's metadata.
NOT_IN_CUSTOM_INPUT = ("object_class", "multiple_objects", "scene", "appearance_style", "color",
                       "spatial_relationship")
VIDEO_SUFFIXES = (".mp4", ".gif")
ENV_PACKAGES = ("vbench", "torch", "torchvision", "transformers", "tokenizers", "numpy", "timm", "decord",
                "opencv-python", "pyiqa", "openai-clip", "detectron2")
# Run by the environment's python: what it has installed and which GPU it sees; one JSON line.
ENV_QUERY = f"""
import json, platform
from importlib import metadata
out = {{"python": platform.python_version(), "packages": {{}}}}
for name in {ENV_PACKAGES!r}:
    try:
        out["packages"][name] = metadata.version(name)
    except Exception:
        out["packages"][name] = None
try:
    import torch
    out["cuda"] = torch.version.cuda
    out["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
except Exception as err:
    out["torch_error"] = repr(err)
print(json.dumps(out))
"""


# ---- the environment ------------------------------------------------------------------------

def env_python(env: str | Path) -> Path:
    python = Path(env) / "bin" / "python"
    if not python.exists():
        raise UserError(f"VBench environment {env} not found (no {python}); create it with {SETUP} {env}")
    return python


def env_versions(python: Path) -> dict:
    try:
        done = subprocess.run([str(python), "-c", ENV_QUERY], capture_output=True, text=True, timeout=300)
        report = json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError) as err:
        raise UserError(f"cannot query the VBench environment's python {python}: {err}") from None
    if not report["packages"].get("vbench"):
        raise UserError(f"{python} has no vbench installed; create the environment with {SETUP}")
    return report


# ---- run ------------------------------------------------------------------------------------

def parse_dimensions(text: str, mode: str) -> list[str]:
    if text.strip() == "all":
        names = [n for n in vb.DIMENSIONS if mode == "standard" or n not in NOT_IN_CUSTOM_INPUT]
    else:
        names = [vb.dimension(n).name for n in text.split(",") if n.strip()]
    if not names or len(set(names)) != len(names):
        raise UserError(f"--dimensions must name each dimension once, got {text!r}")
    refused = [n for n in names if mode == "custom_input" and n in NOT_IN_CUSTOM_INPUT]
    if refused:
        raise UserError(f"VBench's custom_input mode cannot score {', '.join(refused)} (they need the prompt "
                        "suite's metadata); use --mode standard")
    return names


def video_files(folder: Path, mode: str) -> list[Path]:
    if not folder.is_dir():
        raise UserError(f"videos folder {folder} not found")
    entries = sorted(folder.iterdir())
    videos = [p for p in entries if p.suffix.lower() in VIDEO_SUFFIXES]
    # Standard mode looks each video up by the suffix of the folder's first entry (os.listdir
    # order), so one stray file (a manifest, a .png) can make every video "missing".
    stray = [p.name for p in entries if p not in videos]
    if mode == "standard" and stray:
        raise UserError(f"{folder} holds {len(stray)} non-video entries (e.g. {stray[0]!r}); VBench's standard "
                        "mode takes the suffix of the first entry it lists for all videos: keep only the videos")
    if not videos:
        raise UserError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) in {folder}")
    return videos


def has_results(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob(f"*{vb.RESULT_SUFFIX}"))


def finished(step: dict) -> bool:
    """Whether a step's output is there: a result file, or the static filter's folder of videos."""
    if step["name"] == "static_filter":
        return (step["output"] / "filtered_videos").is_dir()
    return has_results(step["output"])


def run_logged(command: list[str], log: Path, cwd: Path) -> tuple[int, float]:
    """Run `command`, its output on stderr and in `log`; (exit code, seconds)."""
    print(f"vbench: {shlex.join(command)}", file=sys.stderr, flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with log.open("w") as out:
        try:
            process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        except OSError as err:  # e.g. an environment without the `vbench` console script
            print(f"vbench: cannot start {command[0]}: {err}", file=out)
            print(f"vbench: cannot start {command[0]}: {err}", file=sys.stderr)
            return 127, 0.0
        for line in process.stdout:
            out.write(line)
            sys.stderr.write(line)
        code = process.wait()
    return code, round(time.monotonic() - start, 1)


def plan(args, python: Path, dims: list[str], out: Path) -> tuple[list[dict], Path]:
    """The steps of a run, [{"name", "command", "output"}] with the static filter first where it
    is needed, and the folder temporal flickering reads."""
    videos = Path(args.videos).resolve()
    steps = []
    flicker_videos = videos
    if "temporal_flickering" in dims:
        if args.flicker_videos:
            flicker_videos = Path(args.flicker_videos).resolve()
        elif not args.no_static_filter:
            filtered = out / "static_filter"
            # `vbench static_filter` keeps up to 5 static videos per flickering prompt (scope
            # temporal_flickering) or filters every video (scope all, for file-name prompts).
            scope = "temporal_flickering" if args.mode == "standard" else "all"
            steps.append({"name": "static_filter", "output": filtered, "command": [
                str(python.parent / "vbench"), "static_filter", "--videos_path", str(videos),
                "--result_path", str(filtered), "--filter_scope", scope]})
            flicker_videos = filtered / "filtered_videos"
    for name in dims:
        source = flicker_videos if name == "temporal_flickering" else videos
        command = [str(python), "-m", "vbench.launch.evaluate", "--videos_path", str(source), "--dimension", name,
                   "--output_path", str(out / "raw" / name), "--mode", MODES[args.mode]]
        if not args.hub_weights:  # read CLIP and DINO from VBench's cache folder, not their hubs
            command += ["--load_ckpt_from_local", "True"]
        steps.append({"name": name, "output": out / "raw" / name, "command": command})
    return steps, flicker_videos


def cmd_run(args) -> int:
    dims = parse_dimensions(args.dimensions, args.mode)
    videos = video_files(Path(args.videos), args.mode)
    out = Path(args.out).resolve()
    if args.dry_run:
        python = Path(args.env) / "bin" / "python"
        if not python.exists():
            print(f"vbench: note: {args.env} does not exist yet; create it with {SETUP} {args.env}", file=sys.stderr)
        for step in plan(args, python.absolute(), dims, out)[0]:
            print(shlex.join(step["command"]))
        return 0
    python = env_python(args.env).absolute()
    if args.flicker_videos and not Path(args.flicker_videos).is_dir():
        raise UserError(f"--flicker-videos {args.flicker_videos} is not a folder")
    env = env_versions(python)
    steps, flicker = plan(args, python, dims, out)
    out.mkdir(parents=True, exist_ok=True)
    records, failed = [], []
    for step in steps:
        record = {"step": step["name"], "command": shlex.join(step["command"]), "argv": step["command"],
                  "log": str(out / "logs" / f"{step['name']}.log")}
        if step["name"] == "temporal_flickering" and "static_filter" in failed:
            record["status"] = "skipped"  # no filtered videos to score
            failed.append(step["name"])
        elif finished(step) and not args.force:
            print(f"vbench: {step['name']}: results in {step['output']} already; kept (--force reruns)",
                  file=sys.stderr)
            record["status"] = "kept"
        else:
            if step["output"].exists():
                shutil.rmtree(step["output"])
            step["output"].mkdir(parents=True)
            record["returncode"], record["seconds"] = run_logged(step["command"], Path(record["log"]), out)
            ok = record["returncode"] == 0 and finished(step)
            record["status"] = "ok" if ok else "failed"
            if not ok:
                failed.append(step["name"])
        records.append(record)
    raw = out / "raw"
    entries = vb.read_result_files(raw) if raw.is_dir() and any(raw.rglob(f"*{vb.RESULT_SUFFIX}")) else {}
    report = {"benchmark": "VBench", "videos": str(Path(args.videos).resolve()), "n_videos": len(videos),
              "mode": MODES[args.mode], "dimensions_run": dims, "steps": records, "failed": failed}
    if "temporal_flickering" in dims:
        report["temporal_flickering"] = {
            "videos": str(flicker), "static_filtered": bool(args.flicker_videos) or not args.no_static_filter,
            "n_videos": sum(1 for p in flicker.glob("*") if p.suffix.lower() in VIDEO_SUFFIXES) if flicker.is_dir()
            else 0}
    report.update(result_record(entries))
    report["vbench_env"] = {"path": str(Path(args.env).absolute()), **env}
    report["provenance"] = provenance("cpu")
    write_json_atomic(out / "vbench.json", report)
    print(summary(report))
    print(f"vbench: wrote {out / 'vbench.json'}", file=sys.stderr)
    if failed:
        logs = ", ".join(r["log"] for r in records if r["step"] in failed)
        print(f"error: VBench failed on {', '.join(failed)}; see {logs}", file=sys.stderr)
        return 1
    return 0


# ---- aggregate ------------------------------------------------------------------------------

def result_record(entries: dict[str, dict]) -> dict:
    """The aggregated numbers of VBench result entries, with where each came from."""
    if not entries:
        return {"partial": True, "missing": list(vb.DIMENSIONS), "quality": None, "semantic": None, "total": None}
    result = vb.aggregate({name: e["score"] for name, e in entries.items()})
    for name, entry in entries.items():
        result["dimensions"][name].update(n_videos=entry["n_videos"], file=entry["file"])
    return {"vbench_version": vb.VBENCH_VERSION, "constants": vb.CONSTANTS_SOURCE,
            "scale": "fractions (cal_final_score.py); 'percent' is x100 as the leaderboard and Table 4", **result}


def cmd_aggregate(args) -> int:
    report = {"benchmark": "VBench", "results": str(Path(args.results).resolve()),
              **result_record(vb.read_result_files(args.results)), "provenance": provenance("cpu")}
    if args.out:
        write_json_atomic(args.out, report)
        print(f"vbench: wrote {args.out}", file=sys.stderr)
    print(summary(report))
    return 0


def summary(report: dict) -> str:
    lines = [f"{'dimension':<24}{'raw':>9}{'normalised':>12}"]
    for name, d in report.get("dimensions", {}).items():
        lines.append(f"{name:<24}{d['raw']:>9.4f}{d['normalised']:>12.4f}")
    for key in ("quality", "semantic", "total"):
        value = report.get(key)
        lines.append(f"{key:<24}{'-' if value is None else f'{100 * value:.2f}%':>9}")
    if report.get("partial"):
        lines.append(f"partial: no Total; missing {', '.join(report['missing'])}")
    return "\n".join(lines)


# ---- flicker --------------------------------------------------------------------------------

def natural_key(path: Path):
    """frame2 before frame10: the digits in a name compare as numbers."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def load_frames(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    from PIL import Image

    frames = sorted(path.glob("*.png"), key=natural_key)
    if not frames:
        raise UserError(f"{path} holds no frame PNGs")
    return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in frames])


def cmd_flicker(args) -> int:
    folder = Path(args.videos)
    if not folder.is_dir():
        raise UserError(f"videos folder {folder} not found")
    entries = sorted(folder.iterdir(), key=natural_key)
    encoded = [p.name for p in entries if p.suffix.lower() in VIDEO_SUFFIXES]
    if encoded:
        raise UserError(f"{folder} holds encoded videos ({encoded[0]}, ...): decoding them needs VBench's environment; "
                        f"run `python -m harness.vbench run {folder} --dimensions temporal_flickering --out DIR`")
    videos = [p for p in entries if p.suffix == ".npy" or p.is_dir()]
    if not videos:
        raise UserError(f"no videos in {folder}: expected .npy arrays (T, H, W, 3) uint8 or folders of frame PNGs")
    per_video = {}
    for path in videos:
        try:
            per_video[path.name] = vb.temporal_flickering(load_frames(path))
        except UserError as err:
            raise UserError(f"{path}: {err}") from None
    score = float(np.mean(list(per_video.values())))
    report = {"benchmark": "VBench", "dimension": "temporal_flickering", "implementation": "harness.metrics.vbench",
              "score": score, "n_videos": len(per_video), "per_video": per_video,
              "note": "frames as given: VBench scores the mp4s its static filter keeps, decoded by OpenCV",
              "provenance": provenance("cpu")}
    if args.out:
        write_json_atomic(args.out, report)
    print(f"temporal_flickering {score:.6f} over {len(per_video)} videos")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m harness.vbench", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run VBench in its environment, then aggregate")
    run.add_argument("videos", metavar="VIDEOS_DIR")
    run.add_argument("--env", default=".vbench-env", help=f"VBench's environment (made by {SETUP})")
    run.add_argument("--dimensions", default="all", help="all (default) or a comma-separated list")
    run.add_argument("--out", required=True, metavar="DIR")
    run.add_argument("--mode", default="standard", choices=tuple(MODES))
    run.add_argument("--flicker-videos", metavar="DIR", help="temporal flickering's videos, static-filtered already")
    run.add_argument("--no-static-filter", action="store_true",
                     help="score temporal flickering on VIDEOS_DIR as it is (not VBench's protocol)")
    run.add_argument("--hub-weights", action="store_true",
                     help="let VBench fetch CLIP and DINO from their hubs instead of its cache folder")
    run.add_argument("--force", action="store_true", help="rerun dimensions whose results exist")
    run.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    agg = commands.add_parser("aggregate", help="aggregate existing VBench result files")
    agg.add_argument("results", metavar="RESULTS_DIR")
    agg.add_argument("--out", metavar="FILE")
    flick = commands.add_parser("flicker", help="temporal flickering from .npy arrays or frame folders")
    flick.add_argument("videos", metavar="VIDEOS_DIR")
    flick.add_argument("--out", metavar="FILE")
    args = parser.parse_args(argv)
    try:
        return {"run": cmd_run, "aggregate": cmd_aggregate, "flicker": cmd_flicker}[args.command](args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
