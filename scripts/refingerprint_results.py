"""Move committed table results to the location-independent fingerprint.

Until commit "fingerprints name files by content", a tiny-sd15 result's fingerprint hashed the
evaluation config with the judge's classifier as an absolute path, so a checkout anywhere but
the one that made the results saw every committed cell as stale. Nothing else changed. For each
record under results/<table>/<world>/ and results/sweeps/<name>/<world>/ this script rebuilds the job the record came from, checks
that its stored fingerprint is the old key as this checkout computes it (so the record is valid
for the code as it stands), and only then writes the new key, keeping the old one in
`fingerprint_migrated`. Metrics and provenance are untouched. Run from the checkout that made
the results:

    python scripts/refingerprint_results.py [results]
"""
from __future__ import annotations

import json
import re
import sys
from dataclasses import asdict
from pathlib import Path

from harness.runner import Job, Runner, fingerprint_of
from harness.scales import get_scale
from harness.tables import TABLES, Cell, RecipeCell, Row, Table
from methods.common.provenance import git_commit, write_json_atomic


def refingerprint(results: Path) -> dict[str, int]:
    runner, counts = Runner(results), {"migrated": 0, "current": 0, "unmatched": 0}
    commit = git_commit()
    for path in sorted([*results.glob("table*/*/*.json"), *results.glob("sweeps/*/*/*.json")]):
        record = json.loads(path.read_text())
        job = _job(record, path)
        if job is None or job.result_path(results) != path:
            counts["unmatched"] += 1
            print(f"skipped {path}: not where its job writes", file=sys.stderr)
            continue
        evaluator = runner.evaluator(job)
        new = fingerprint_of(job, evaluator, evaluator.fingerprint_config())
        old = fingerprint_of(job, evaluator, asdict(evaluator.config))
        if record["fingerprint"] == new:
            counts["current"] += 1
        elif record["fingerprint"] == old:
            record["fingerprint_migrated"] = {"from": old, "by_commit": commit,
                                              "why": "the classifier named by content, not by its absolute path"}
            record["fingerprint"] = new
            write_json_atomic(path, record)
            counts["migrated"] += 1
        else:
            counts["unmatched"] += 1
            print(f"left {path}: its fingerprint is neither key for the code as it stands", file=sys.stderr)
    return counts


def _job(record: dict, path: Path) -> Job | None:
    """The job that wrote the record: a table's cell, or a sweep's (its settings are in the file name,
    `<cell>-key=value...-seed<s>`, as harness/sweep.py names them)."""
    if "fingerprint" not in record or "cell" not in record:
        return None
    fields = record["cell"]
    cell = Cell(**fields) if "variant" in fields else RecipeCell(**fields)
    scale = get_scale(record["scale"])
    if record["table"] in TABLES:
        return Job(TABLES[record["table"]], cell, record["seed"], record["world"], scale)
    if not record["table"].startswith("sweeps/"):
        return None
    tag = path.stem[len(record["cell_key"]):-len(f"-seed{record['seed']}")]
    settings = tuple(re.findall(r"-([A-Za-z_][A-Za-z0-9_]*)=(.*?)(?=-[A-Za-z_][A-Za-z0-9_]*=|$)", tag))
    table = Table(record["table"], f"sweep {record['table']}", (Row(record["table"], cell, "sweep"),))
    return Job(table, cell, record["seed"], record["world"], scale, settings)


if __name__ == "__main__":
    print(refingerprint(Path(sys.argv[1] if len(sys.argv) > 1 else "results")))
