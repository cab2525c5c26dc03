"""Cell results -> the table in the paper's layout, ours beside the paper's: CSV (long format),
Markdown, LaTeX and a PNG, plus whether our small world ranks the variants as the paper does.

Every view is made from the long CSV's rows, so the four files always agree.
"""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from .tables import Table

CSV_COLUMNS = ["table", "world", "scale", "row", "variant", "steps", "solver", "metric", "better", "ours_mean",
               "ours_std", "n_seeds", "seeds", "iterations", "batch_size", "n_samples", "paper_metric",
               "paper_value", "paper_value_certain"]


def long_rows(table: Table, records: list[dict]) -> list[dict]:
    """One row per (world, scale, paper row, metric): mean and spread over seeds, the paper's value beside."""
    by_cell = defaultdict(list)
    for rec in records:
        by_cell[(rec["world"], rec["scale"], rec["cell_key"])].append(rec)
    published = {(r["method"], r["variant"], r["steps"], r["metric"]): r for r in table.published()}
    out = []
    for (world, scale) in sorted({(w, s) for w, s, _ in by_cell}):
        for row in table.rows:
            recs = sorted(by_cell.get((world, scale, row.cell.key), []), key=lambda r: r["seed"])
            if not recs:
                continue
            paper = published.get((row.method, row.variant, str(row.cell.steps), "hps"), {})
            for metric, better in recs[0]["metric_directions"].items():
                values = [r["metrics"][metric] for r in recs]
                out.append({
                    "table": table.id, "world": world, "scale": scale, "row": row.label, "variant": row.cell.variant,
                    "steps": row.cell.steps, "solver": row.cell.solver, "metric": metric, "better": better,
                    "ours_mean": float(np.mean(values)),
                    "ours_std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
                    "n_seeds": len(values), "seeds": " ".join(str(r["seed"]) for r in recs),
                    "iterations": recs[0]["training"]["iterations"], "batch_size": recs[0]["training"]["batch_size"],
                    "n_samples": recs[0]["n_samples"], "paper_metric": "hps" if paper else None,
                    "paper_value": float(paper["value"]) if paper.get("value") else None,
                    "paper_value_certain": paper.get("certain") == "true" if paper else None,
                })
    return out


def ranking_agreement(rows: list[dict]) -> list[dict]:
    """Kendall's tau between the paper's HPS and each of our metrics, over pairs of distinct cells
    with the same step count (comparing a 1-step with a 4-step model says nothing about a variant).

    Our metric is oriented so that larger is better, as HPS is. tau = (C - D) / (C + D); pairs tied
    on either side are counted as ties and left out. Also lists the disagreeing pairs."""
    out = []
    groups = defaultdict(dict)
    for r in rows:
        if r["paper_value"] is not None:
            groups[(r["world"], r["scale"], r["metric"])][(r["variant"], r["steps"], r["solver"])] = r
    for (world, scale, metric), cells in sorted(groups.items()):
        concordant = discordant = ties = 0
        disagreements = []
        items = list(cells.values())
        for i, a in enumerate(items):
            for b in items[i + 1:]:
                if a["steps"] != b["steps"]:
                    continue
                sign = 1 if a["better"] == "higher" else -1
                ours = sign * (a["ours_mean"] - b["ours_mean"])
                paper = a["paper_value"] - b["paper_value"]
                if ours == 0 or paper == 0:
                    ties += 1
                elif (ours > 0) == (paper > 0):
                    concordant += 1
                else:
                    discordant += 1
                    spread = max(a["ours_std"] or 0.0, b["ours_std"] or 0.0)
                    within = " (within seed spread)" if abs(ours) < spread else ""
                    disagreements.append(f"{_name(a)} vs {_name(b)} ({a['steps']} steps){within}")
        pairs = concordant + discordant
        out.append({"table": rows[0]["table"], "world": world, "scale": scale, "metric": metric,
                    "kendall_tau": (concordant - discordant) / pairs if pairs else None,
                    "concordant": concordant, "discordant": discordant, "ties": ties,
                    "disagreements": "; ".join(disagreements)})
    return out


def _name(row: dict) -> str:
    return row["row"] if row["solver"] == "dpmpp" or "test" in row["row"] else f"{row['row']} [{row['solver']}]"


def _fmt(mean, std) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    digits = 3 if abs(mean) < 10 else 1
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def _views(table: Table, rows: list[dict]):
    """(world, scale, metrics, lines): one paper-layout table per world and scale."""
    for world, scale in sorted({(r["world"], r["scale"]) for r in rows}):
        part = [r for r in rows if (r["world"], r["scale"]) == (world, scale)]
        metrics = list(dict.fromkeys(r["metric"] for r in part))
        lines = []
        for label_row in dict.fromkeys((r["row"], r["steps"], r["solver"]) for r in part):
            cells = {r["metric"]: r for r in part if (r["row"], r["steps"], r["solver"]) == label_row}
            first = next(iter(cells.values()))
            paper = "-" if first["paper_value"] is None else f"{first['paper_value']:.2f}"
            lines.append([label_row[0], str(label_row[1]), label_row[2], paper]
                         + [_fmt(cells[m]["ours_mean"], cells[m]["ours_std"]) for m in metrics])
        yield world, scale, part, metrics, lines


def _caption(table: Table, part: list[dict], world: str, scale: str) -> str:
    first = part[0]
    counts = sorted({r["n_seeds"] for r in part})
    seeds = sorted({int(s) for r in part for s in r["seeds"].split()})
    per_cell = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return (f"{table.id} ({table.title}) on {world}, {scale} scale: {first['iterations']} iterations at batch "
            f"{first['batch_size']}, {first['n_samples']} samples per cell, mean ± std over {per_cell} training "
            f"seeds per cell (seeds {', '.join(map(str, seeds))}; the CSV's n_seeds gives each cell's). "
            "Paper: HPSv2.1 on SD-v1.5.")


def markdown(table: Table, rows: list[dict], agreement: list[dict]) -> str:
    out = [f"# {table.id}: {table.title}", ""]
    for world, scale, part, metrics, lines in _views(table, rows):
        out += [_caption(table, part, world, scale), "",
                "| row | steps | test solver | paper HPS | " + " | ".join(
                    f"{m} ({'↓' if part[[r['metric'] for r in part].index(m)]['better'] == 'lower' else '↑'})"
                    for m in metrics) + " |",
                "|---|---:|---|---:|" + "---:|" * len(metrics)]
        out += ["| " + " | ".join(line) + " |" for line in lines]
        out += ["", "Ranking agreement with the paper (Kendall's tau over pairs with equal steps):", ""]
        for a in agreement:
            if (a["world"], a["scale"]) == (world, scale):
                tau = "n/a" if a["kendall_tau"] is None else f"{a['kendall_tau']:+.2f}"
                verdict = "agrees" if a["discordant"] == 0 and a["concordant"] else (
                    "no comparable pairs" if not a["concordant"] + a["discordant"] else "disagrees")
                out.append(f"- {a['metric']}: tau {tau} ({a['concordant']} agree, {a['discordant']} disagree, "
                           f"{a['ties']} tied): {verdict}" + (f"; disagreeing: {a['disagreements']}"
                                                              if a["disagreements"] else ""))
        out.append("")
    return "\n".join(out)


def latex(table: Table, rows: list[dict]) -> str:
    out = []
    for world, scale, part, metrics, lines in _views(table, rows):
        cols = "lrl" + "r" * (1 + len(metrics))
        header = ["Method", "Steps", "Solver", "HPS (paper)"] + [m.replace("_", r"\_") for m in metrics]
        out += [r"\begin{table}[t]", r"\centering", r"\small", rf"\begin{{tabular}}{{{cols}}}", r"\toprule",
                " & ".join(header) + r" \\", r"\midrule"]
        out += [" & ".join(_tex(c) for c in line) + r" \\" for line in lines]
        out += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{_tex(_caption(table, part, world, scale))}}}",
                r"\end{table}", ""]
    return "\n".join(out)


def _tex(text: str) -> str:
    for a, b in [("\\", r"\textbackslash{}"), ("_", r"\_"), ("&", r"\&"), ("%", r"\%"), ("#", r"\#"),
                 ("±", r"$\pm$"), ("^", r"\^{}")]:
        text = text.replace(a, b)
    return text


def plot(table: Table, rows: list[dict], path: Path) -> None:
    """Table 5 style (metric against steps, one line per variant) or bars per row; paper's HPS first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    views = list(_views(table, rows))
    metrics_per_view = [["hps (paper)"] + metrics for *_, metrics, _ in views]
    ncols = max(len(m) for m in metrics_per_view)
    fig, axes = plt.subplots(len(views), ncols, figsize=(3.6 * ncols, 3.0 * len(views)), squeeze=False)
    for i, (world, scale, part, _, _) in enumerate(views):
        for j, metric in enumerate(metrics_per_view[i]):
            ax = axes[i][j]
            paper = metric == "hps (paper)"
            sel = [r for r in part if r["metric"] == part[0]["metric"]] if paper else \
                [r for r in part if r["metric"] == metric]
            _draw(ax, table, sel, paper)
            better = "" if paper else (" ↓" if sel[0]["better"] == "lower" else " ↑")
            ax.set_title(f"{world} ({scale}): {metric}{better}" if not paper else "paper: HPS on SD-v1.5 ↑",
                         fontsize=9)
        for j in range(len(metrics_per_view[i]), ncols):
            axes[i][j].axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _draw(ax, table: Table, sel: list[dict], paper: bool) -> None:
    value = (lambda r: r["paper_value"]) if paper else (lambda r: r["ours_mean"])
    if table.plot == "steps":
        for i, label in enumerate(dict.fromkeys(r["row"] for r in sel)):  # same colour per row in every panel
            pts = sorted((r["steps"], value(r), r["ours_std"]) for r in sel if r["row"] == label
                         and value(r) is not None)
            if pts:
                xs, ys = [p[0] for p in pts], [p[1] for p in pts]
                errs = None if paper or pts[0][2] is None else [p[2] or 0 for p in pts]
                ax.errorbar(xs, ys, yerr=errs, marker="o" if len(pts) > 1 else "s", capsize=3, color=f"C{i}",
                            label=label[:34], linestyle="-" if len(pts) > 1 else "none")
        ax.set_xlabel("steps")
        ax.set_xticks([1, 2, 4])
        if not paper and sel and (sel[0]["metric"].startswith("fd") or sel[0]["metric"] == "sliced_wasserstein"):
            ax.set_yscale("log")
        if paper:
            ax.legend(fontsize=6)
        return
    labels = [f"{r['row']}" for r in sel]
    ys = [value(r) if value(r) is not None else np.nan for r in sel]
    errs = None if paper else [r["ours_std"] or 0 for r in sel]
    ax.bar(range(len(sel)), ys, yerr=errs, capsize=3, color="tab:gray" if paper else "tab:blue")
    ax.set_xticks(range(len(sel)), [label[:22] for label in labels], rotation=30, ha="right", fontsize=6)
    finite = [y for y in ys if not np.isnan(y)]
    if finite:
        lo, hi = min(finite), max(finite)
        pad = (hi - lo) * 0.5 + 1e-9 * abs(hi) + (0.05 * abs(hi) if hi == lo else 0)
        ax.set_ylim(lo - pad, hi + pad)
