"""Table 3, training cost: what our runs cost (measured), what a real-size run would cost
(projected from the SD-1.5 benchmark), beside the paper's figures.

Our rows come from the cell records of Tables 5-8 (each record carries its training run's
summary), one row per world, scale and training variant, averaged over seeds. A recipe cell
(a published checkpoint) cost us no training: its record has `training: null` and no row here.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from .tables import Table

COST_COLUMNS = ["table", "source", "world", "scale", "method", "backbone", "steps", "metric", "value", "n_runs",
                "note"]
BENCH = Path(__file__).resolve().parent.parent / "results" / "bench" / "tdm-sd15-h200.json"  # the trainer's defaults (eager)
# Appendix D: iterations and global batch of the SD-1.5 runs, for the projection.
PAPER_RUNS = {"TDM (4 steps)": (3000, 256), "TDM-unify": (20000, 256)}


def measured_rows(records: list[dict]) -> list[dict]:
    runs = {}
    for rec in records:  # one entry per training run, whatever cells used it
        if rec.get("training"):
            runs[(rec["world"], rec["scale"], rec["cell"]["variant"], rec["seed"])] = rec
    grouped = defaultdict(list)
    for (world, scale, variant, _), rec in runs.items():
        grouped[(world, scale, variant)].append(rec)
    out = []
    for (world, scale, variant), recs in sorted(grouped.items()):
        train = [r["training"] for r in recs]
        s_per_it = [t["seconds_per_iteration"] for t in train if t["seconds_per_iteration"]]
        flops = [t["flops_per_iteration"] for t in train if t["flops_per_iteration"]]
        device = recs[0]["device"]
        metrics = {
            "iterations": train[0]["iterations"], "batch_size": train[0]["batch_size"],
            "seconds_per_iteration": float(np.mean(s_per_it)) if s_per_it else None,
            "device_hours": float(np.mean(s_per_it)) * train[0]["iterations"] / 3600 if s_per_it else None,
            "flops_per_iteration": float(np.mean(flops)) if flops else None,
            "total_flops": float(np.mean(flops)) * train[0]["iterations"] if flops else None,
        }
        note = (f"device: {device}; FLOPs counted with torch.utils.flop_counter on one iteration "
                f"(K={train[0]['flops_counted_at_K']}); seconds per iteration measured after warm-up")
        out += [_row("ours", world, scale, variant, world, metric, value, len(recs), note)
                for metric, value in metrics.items()]
    return out


def projected_rows(bench_path: Path = BENCH) -> list[dict]:
    """Real-size SD-1.5 cost from the measured benchmark iteration, scaled to the paper's batch."""
    if not bench_path.is_file():
        return []
    bench = json.loads(bench_path.read_text())
    s_per_it, batch = bench["seconds_per_iteration"], bench["config"]["method"]["batch_size"]
    out = []
    for method, (iterations, paper_batch) in PAPER_RUNS.items():
        hours = s_per_it * paper_batch / batch * iterations / 3600
        note = (f"projected: {s_per_it:.3f} s per iteration at batch {batch} on {bench['provenance']['device']} "
                f"({bench_path.name}), times {paper_batch // batch} for batch {paper_batch}, times {iterations} "
                "iterations (App. D); random weights, so only the cost is real")
        out.append(_row("projection", "sd15", "real size", method, "SD-v1.5", "device_days", hours / 24, 1, note))
    return out


def published_rows(table: Table) -> list[dict]:
    return [{"table": table.id, "source": "paper", "world": "", "scale": "", "method": r["method"],
             "backbone": r["backbone"], "steps": r["steps"], "metric": r["metric"], "value": float(r["value"]),
             "n_runs": "", "note": r["note"]} for r in table.published()]


def _row(source, world, scale, method, backbone, metric, value, n_runs, note) -> dict:
    return {"table": "table3", "source": source, "world": world, "scale": scale, "method": method,
            "backbone": backbone, "steps": "", "metric": metric, "value": value, "n_runs": n_runs, "note": note}


def markdown(table: Table, rows: list[dict]) -> str:
    out = [f"# {table.id}: {table.title}", "", "## Ours, measured", "",
           "| world | scale | variant | runs | iterations | batch | s / iteration | device hours | "
           "GFLOPs / iteration | total PFLOPs |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for (world, scale, method, n), m in _measured(rows).items():
        out.append(f"| {world} | {scale} | {method} | {n} | {m['iterations']} | {m['batch_size']} | "
                   f"{_num(m['seconds_per_iteration'], 3)} | {_num(m['device_hours'], 3)} | "
                   f"{_num(m['flops_per_iteration'], 1, 1e9)} | {_num(m['total_flops'], 1, 1e15)} |")
    devices = {r["note"].split(";")[0] for r in rows if r["source"] == "ours"}
    out += ["", "; ".join(sorted(devices)) + ".", "", "## Real size, projected", ""]
    out += [f"- {r['method']} on SD-v1.5: {r['value']:.2f} device-days. {r['note']}."
            for r in rows if r["source"] == "projection"]
    out += ["", "## The paper", "", "| method | backbone | HPS | training cost |", "|---|---|---:|---|"]
    paper = defaultdict(dict)
    for r in rows:
        if r["source"] == "paper":
            paper[(r["method"], r["backbone"])][r["metric"]] = r["value"]
    for (method, backbone), m in paper.items():
        cost = [f"{v:g} {k.replace('training_cost_', '').replace('_', ' ')}" for k, v in m.items() if k != "hps"]
        out.append(f"| {method} | {backbone} | {m.get('hps', '')} | {', '.join(cost)} |")
    return "\n".join(out) + "\n"


def _measured(rows: list[dict]) -> dict:
    ours = defaultdict(dict)
    for r in rows:
        if r["source"] == "ours":
            ours[(r["world"], r["scale"], r["method"], r["n_runs"])][r["metric"]] = r["value"]
    return ours


def latex(table: Table, rows: list[dict]) -> str:
    out = [r"\begin{table}[t]", r"\centering", r"\small", r"\begin{tabular}{lllrrrrr}", r"\toprule",
           r"World & Variant & Runs & Iterations & Batch & s/iter & Device hours & GFLOPs/iter \\", r"\midrule"]
    for (world, scale, method, n), m in _measured(rows).items():
        out.append(f"{world} ({scale}) & {method} & {n} & {m['iterations']} & {m['batch_size']} & "
                   f"{_num(m['seconds_per_iteration'], 3)} & {_num(m['device_hours'], 3)} & "
                   f"{_num(m['flops_per_iteration'], 1, 1e9)} \\\\")
    out += [r"\bottomrule", r"\end{tabular}", r"\caption{Measured training cost of our runs (Table 3 of the paper "
            r"reports A800/A100 days for real backbones).}", r"\end{table}", ""]
    return "\n".join(out).replace("_", r"\_")


def plot(rows: list[dict], path: Path) -> None:
    """Device hours per training variant, one panel per world."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ours = _measured(rows)
    worlds = sorted({(w, s) for w, s, _, _ in ours})
    fig, axes = plt.subplots(1, len(worlds), figsize=(5 * len(worlds), 3.2), squeeze=False)
    for ax, (world, scale) in zip(axes[0], worlds):
        items = [(method, m) for (w, s, method, _), m in ours.items() if (w, s) == (world, scale)]
        ax.bar(range(len(items)), [m["device_hours"] or 0 for _, m in items], color="tab:blue")
        ax.set_xticks(range(len(items)), [name for name, _ in items], rotation=30, ha="right", fontsize=7)
        ax.set_title(f"{world} ({scale}): device hours per run", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _num(value, digits, unit=1.0) -> str:
    return "-" if value is None else f"{value / unit:.{digits}f}"
