"""Cell results -> the table in the paper's layout, ours beside the paper's: CSV (long format),
Markdown, LaTeX and a PNG, plus whether our small world ranks the variants as the paper does.

Every view is made from the long CSV's rows, so the four files always agree. A table with
recipe cells (Tables 1-2) shows each row's backbone, recipe and NFE, says how the cells were
sampled and scored (on tiny-sd15: the world's metrics, plumbing only), and lists the rows that
need training before they can run. Teacher cells (Table 4) have no training seed; the caption says
how the teacher was sampled. A metric a cell could not measure (None, e.g. motion_accuracy when no
object with a named motion was found) is left out of that cell's mean. A row whose records were
made under another configuration than this checkout's (`stale`, set by harness.reproduce) is
labelled "(stale)" in every view, and the caption says how to re-make it.
"""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from .tables import Row, Table

CSV_COLUMNS = ["table", "world", "scale", "row", "variant", "steps", "solver", "metric", "better", "ours_mean",
               "ours_std", "n_seeds", "seeds", "iterations", "batch_size", "n_samples", "paper_metric",
               "paper_value", "paper_value_certain", "stale_seeds"]
RECIPE_COLUMNS = ["backbone", "recipe", "nfe", "resized_for_world"]


def csv_columns(table: Table) -> list[str]:
    return CSV_COLUMNS + (RECIPE_COLUMNS if table.has_recipes else [])


def long_rows(table: Table, records: list[dict]) -> list[dict]:
    """One row per (world, scale, paper row, metric): mean and spread over seeds, the paper's value beside."""
    by_cell = defaultdict(list)
    for rec in records:
        by_cell[(rec["world"], rec["scale"], rec["cell_key"])].append(rec)
    out = []
    for (world, scale) in sorted({(w, s) for w, s, _ in by_cell}):
        for row in table.rows:
            recs = sorted(by_cell.get((world, scale, row.cell.key), []), key=lambda r: r["seed"]) if row.cell else []
            if not recs:
                continue
            training = recs[0].get("training") or {}  # none for a recipe cell
            for metric, better in recs[0]["metric_directions"].items():
                # Beside the paper's number of the same metric where it has one (the real world's
                # hps_average, aesthetic, ...), else beside the table's main published metric.
                paper_metric = metric if table.published_record(row, metric) else table.paper_metric
                paper = table.published_record(row, paper_metric)
                values = [r["metrics"][metric] for r in recs if r["metrics"].get(metric) is not None]
                if not values:  # e.g. the teacher's FID to itself
                    continue
                out.append({
                    "table": table.id, "world": world, "scale": scale, "row": row.label, "kind": row.cell.kind,
                    "variant": row.cell.variant,
                    "steps": row.cell.steps, "solver": row.cell.solver, "metric": metric, "better": better,
                    "ours_mean": float(np.mean(values)),
                    "ours_std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
                    "n_seeds": len(values), "seeds": " ".join(str(r["seed"]) for r in recs
                                                              if r["metrics"].get(metric) is not None),
                    "iterations": training.get("iterations"), "batch_size": training.get("batch_size"),
                    "n_samples": recs[0]["n_samples"], "paper_metric": paper_metric if paper else None,
                    "paper_value": float(paper["value"]) if paper.get("value") else None,
                    "paper_value_certain": paper.get("certain") == "true" if paper else None,
                    "stale_seeds": sum(bool(r.get("stale")) for r in recs
                                       if r["metrics"].get(metric) is not None),
                    **_recipe_columns(row, recs[0]),
                })
    return out


def backbone_label(row: Row) -> str:
    """The row's backbone, with Table 2's customised base: "SD-v1.5 (Realistic)"."""
    return f"{row.backbone} ({row.variant})" if row.backbone and row.variant else row.backbone


def _recipe_columns(row: Row, record: dict) -> dict:
    recipe = row.cell.sampler_recipe if row.cell.kind == "recipe" else None
    return {"backbone": backbone_label(row), "recipe": recipe.name if recipe else None,
            "nfe": recipe.nfe if recipe else None, "resized_for_world": record.get("resized_for_world"),
            # for the caption only (not CSV columns): how the cell was sampled and what its metrics are worth
            "sampling_note": record.get("sampling_note"), "metrics_note": record.get("metrics_note")}


def ranking_agreement(rows: list[dict], across_steps: bool = False) -> list[dict]:
    """Kendall's tau between the paper's HPS and each of our metrics, over pairs of distinct cells
    with the same step count (comparing a 1-step with a 4-step model says nothing about a variant);
    `across_steps`: over every pair (Table 4, whose claim is TDM at 4 steps against its teacher at 50).

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
                if a["steps"] != b["steps"] and not across_steps:
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
                    steps = f"{a['steps']} steps" if a["steps"] == b["steps"] else f"{a['steps']} vs {b['steps']} steps"
                    disagreements.append(f"{_name(a)} vs {_name(b)} ({steps}){within}")
        pairs = concordant + discordant
        out.append({"table": rows[0]["table"], "world": world, "scale": scale, "metric": metric,
                    "kendall_tau": (concordant - discordant) / pairs if pairs else None,
                    "concordant": concordant, "discordant": discordant, "ties": ties,
                    "disagreements": "; ".join(disagreements)})
    return out


def _label(row: dict) -> str:
    """The row's label as shown: "(stale)" after it when some of its records are."""
    return row["row"] + (" (stale)" if row.get("stale_seeds") else "")


def _name(row: dict) -> str:
    if row.get("recipe"):
        return f"{_label(row)} ({row['backbone']})"
    if row.get("kind") == "teacher":
        return _label(row)
    return _label(row) if row["solver"] == "dpmpp" or "test" in row["row"] else f"{_label(row)} [{row['solver']}]"


def _fmt(mean, std) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    digits = 3 if abs(mean) < 10 else 1
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def _headers(table: Table) -> tuple[list[str], list[str]]:
    """Markdown and LaTeX headers of the columns before the metrics."""
    if table.has_recipes:
        return (["row", "backbone", "steps", "sampler", "NFE", "paper HPSv2.1"],
                ["Method", "Backbone", "Steps", "Sampler", "NFE", "HPSv2.1 (paper)"])
    return (["row", "steps", "test solver", f"paper {table.paper_column}"],
            ["Method", "Steps", "Solver", f"{table.paper_column} (paper)"])


def _labels(table: Table, row: dict) -> list[str]:
    """The cells of a line before the paper's value: the row and how it was sampled."""
    if table.has_recipes:
        sampler = row["recipe"] or f"{row['variant']} ({row['solver']})"
        nfe = "-" if row["nfe"] is None else str(row["nfe"])
        return [_label(row), row["backbone"], str(row["steps"]), sampler, nfe]
    return [_label(row), str(row["steps"]), row["solver"]]


def _line_key(row: dict) -> tuple:
    """What makes a line of the paper's layout: Table 1 prints "TCD" at 4 steps on SD-v1.5 and on SDXL."""
    return row["row"], row.get("backbone", ""), row["steps"], row["solver"]


def _views(table: Table, rows: list[dict]):
    """(world, scale, metrics, lines): one paper-layout table per world and scale."""
    for world, scale in sorted({(r["world"], r["scale"]) for r in rows}):
        part = [r for r in rows if (r["world"], r["scale"]) == (world, scale)]
        # In the order of the line with the most metrics (Table 4's teacher row has no fd_teacher).
        per_line = [[r["metric"] for r in part if _line_key(r) == key] for key in dict.fromkeys(map(_line_key, part))]
        metrics = list(dict.fromkeys(m for line in sorted(per_line, key=len, reverse=True) for m in line))
        lines = []
        for label_row in dict.fromkeys(_line_key(r) for r in part):
            cells = {r["metric"]: r for r in part if _line_key(r) == label_row}
            first = next(iter(cells.values()))
            main = next((r for r in cells.values() if r["paper_metric"] == table.paper_metric), first)
            paper = "-" if main["paper_value"] is None else f"{main['paper_value']:.2f}"
            lines.append(_labels(table, first) + [paper] + [_ours(cells[m]) if m in cells else "" for m in metrics])
        yield world, scale, part, metrics, lines


def _ours(row: dict) -> str:
    """Our mean (± std); with the paper's value of the same metric beside it where it has one."""
    text = _fmt(row["ours_mean"], row["ours_std"])
    if row["paper_metric"] == row["metric"] and row["paper_value"] is not None:
        text += f" (paper {row['paper_value']:.2f})"
    return text


def _caption(table: Table, part: list[dict], world: str, scale: str) -> str:
    trained = [r for r in part if r.get("kind", "trained") == "trained"]
    recipes = [r for r in part if r.get("recipe")]
    teachers = [r for r in part if r.get("kind") == "teacher"]
    text = [f"{table.id} ({table.title}) on {world}, {scale} scale:"]
    if trained:
        first = trained[0]
        counts = sorted({r["n_seeds"] for r in trained})
        seeds = sorted({int(s) for r in trained for s in r["seeds"].split()})
        per_cell = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
        text.append(f"{first['iterations']} iterations at batch {first['batch_size']}, {first['n_samples']} samples "
                    f"per cell, mean ± std over {per_cell} training seeds per cell (seeds {', '.join(map(str, seeds))};"
                    " the CSV's n_seeds gives each cell's).")
    if teachers:
        note = teachers[0].get("sampling_note") or "the world's teacher"
        text.append(f"Teacher rows: {note}.")
        metrics_note = teachers[0].get("metrics_note")
        if metrics_note:
            text.append(f"Metrics: {metrics_note}.")
    if recipes:
        first = recipes[0]
        note = first.get("metrics_note") or ""
        text.append(f"published checkpoints {first['sampling_note']}, one result per cell (no training seed)."
                    + (f" {note[0].upper() + note[1:]}." if note else ""))
    stale = [r for r in part if r.get("stale_seeds")]
    if stale:
        n = len(dict.fromkeys(map(_line_key, stale)))
        text.append(f"The {n} {'row' if n == 1 else 'rows'} marked (stale) {'was' if n == 1 else 'were'} made "
                    "under another configuration than this checkout's (their fingerprints differ: the world's "
                    "teacher, the preset or the evaluation changed since); `python -m harness.reproduce "
                    f"{table.id} --world {world} --scale {scale}` re-makes {'it' if n == 1 else 'them'}.")
    return " ".join(text + [f"Paper: {table.paper_label}."])


def _steps(n: int) -> str:
    return f"{n} step" + ("" if n == 1 else "s")


def _not_shown(table: Table, rows: list[dict]) -> list[str]:
    """Markdown lines naming the rows missing from the table above: recipe cells without a result,
    and this paper's own models, which cannot run yet."""
    shown = {r["variant"] for r in rows}
    absent = [row.cell.recipe for row in table.rows if row.cell is not None and row.cell.kind == "recipe"
              and row.cell.recipe not in shown]
    out = []
    if absent:
        out += [f"No result yet for {len(absent)} recipe cells (their weights were missing, or --variants left them "
                f"out; `python -m harness.reproduce {table.id} --dry-run` lists the files each needs): "
                f"{', '.join(absent)}.", ""]
    if table.pending():
        out += ["Not runnable yet: this paper's own models, each needing a real-size training run first:", ""]
        for row in table.pending():
            paper = table.published_value(row)
            out.append(f"- {row.label} ({backbone_label(row)}, {_steps(row.paper_steps)}; paper "
                       f"{'-' if paper is None else f'{paper:.2f}'}): needs {row.needs}")
        out.append("")
    return out


def markdown(table: Table, rows: list[dict], agreement: list[dict]) -> str:
    out = [f"# {table.id}: {table.title}", ""]
    labels = _headers(table)[0]
    align = "|" + "|".join("---:" if name in ("steps", "NFE") or name.startswith("paper") else "---"
                           for name in labels) + "|"
    for world, scale, part, metrics, lines in _views(table, rows):
        out += [_caption(table, part, world, scale), "",
                "| " + " | ".join(labels) + " | " + " | ".join(
                    f"{m} ({'↓' if part[[r['metric'] for r in part].index(m)]['better'] == 'lower' else '↑'})"
                    for m in metrics) + " |",
                align + "---:|" * len(metrics)]
        out += ["| " + " | ".join(line) + " |" for line in lines]
        pairs = "pairs of rows with a published number, at any step counts" if table.across_steps else \
            "pairs with equal steps"
        out += ["", f"Ranking agreement with the paper (Kendall's tau over {pairs}):", ""]
        for a in agreement:
            if (a["world"], a["scale"]) == (world, scale):
                tau = "n/a" if a["kendall_tau"] is None else f"{a['kendall_tau']:+.2f}"
                verdict = "agrees" if a["discordant"] == 0 and a["concordant"] else (
                    "no comparable pairs" if not a["concordant"] + a["discordant"] else "disagrees")
                out.append(f"- {a['metric']}: tau {tau} ({a['concordant']} agree, {a['discordant']} disagree, "
                           f"{a['ties']} tied): {verdict}" + (f"; disagreeing: {a['disagreements']}"
                                                              if a["disagreements"] else ""))
        out.append("")
    return "\n".join(out + _not_shown(table, rows))


def latex(table: Table, rows: list[dict]) -> str:
    out = []
    labels = _headers(table)[1]
    for world, scale, part, metrics, lines in _views(table, rows):
        cols = ("llrlr" if table.has_recipes else "lrl") + "r" * (1 + len(metrics))
        header = labels + [m.replace("_", r"\_") for m in metrics]
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
            paper_title = "paper: HPSv2.1 (average) ↑" if table.has_recipes else f"paper: {table.paper_plot_title} ↑"
            ax.set_title(f"{world} ({scale}): {metric}{better}" if not paper else paper_title, fontsize=9)
        for j in range(len(metrics_per_view[i]), ncols):
            axes[i][j].axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _draw(ax, table: Table, sel: list[dict], paper: bool) -> None:
    value = (lambda r: r["paper_value"]) if paper else (lambda r: r["ours_mean"])
    if table.plot == "steps":
        for i, row in enumerate(dict.fromkeys(r["row"] for r in sel)):  # same colour per row in every panel
            pts = sorted((r["steps"], value(r), r["ours_std"]) for r in sel if r["row"] == row
                         and value(r) is not None)
            label = row + (" (stale)" if any(r.get("stale_seeds") for r in sel if r["row"] == row) else "")
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
    labels = [_name(r) if r.get("recipe") else _label(r) for r in sel]
    ys = [value(r) if value(r) is not None else np.nan for r in sel]
    errs = None if paper else [r["ours_std"] or 0 for r in sel]
    ax.bar(range(len(sel)), ys, yerr=errs, capsize=3, color="tab:gray" if paper else "tab:blue")
    ax.set_xticks(range(len(sel)), [label[:22] for label in labels], rotation=30, ha="right", fontsize=6)
    finite = [y for y in ys if not np.isnan(y)]
    if finite:
        lo, hi = min(finite), max(finite)
        pad = (hi - lo) * 0.5 + 1e-9 * abs(hi) + (0.05 * abs(hi) if hi == lo else 0) or 1.0  # all zero: any span
        ax.set_ylim(lo - pad, hi + pad)
