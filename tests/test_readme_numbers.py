"""The README's measured tables say what their committed records say: each printed number is the
record's value at the printed precision. A re-made record whose README row was not updated fails
here, so the README never quotes a number no record holds."""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def table_lines(header_start: str) -> list[str]:
    """The lines of the one README Markdown table whose header line starts with `header_start`."""
    lines = README.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(header_start)]
    assert len(starts) == 1, f"{len(starts)} README tables start with {header_start!r}"
    end = starts[0]
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    assert end - starts[0] > 2, f"the table under {header_start!r} has no rows"
    return lines[starts[0]:end]


def table_after(header_start: str) -> list[list[str]]:
    """The body rows of that table, as cells."""
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in table_lines(header_start)[2:]]


def printed(text: str, value: float | None) -> bool:
    """Whether `text` is `value` at the precision `text` is printed with ("-" for no value)."""
    if text == "-":
        return value is None
    digits = len(text.split(".")[1]) if "." in text else 0
    return value is not None and f"{value:.{digits}f}" == text


SPEED_HEADER = "| backbone | setting | s / iteration |"


def speed_rows():
    return table_after(SPEED_HEADER)


@pytest.mark.parametrize("row", speed_rows(), ids=lambda row: row[-1])
def test_the_speed_table_row_is_its_records(row):
    seconds, ms, peak, tflops, ratio, record = row[2:]
    name, _, section = record.partition(" (")
    data = json.loads((ROOT / "results" / "bench" / f"{name}.json").read_text())
    part = {"": data, "compared)": data.get("compared"), "official)": data.get("official_layout")}[section]
    assert part is not None, f"{name} has no {section[:-1]} run"
    assert printed(seconds, part["seconds_per_iteration"]), (seconds, part["seconds_per_iteration"])
    assert printed(ms, part["ms_per_sample_iteration"]), (ms, part["ms_per_sample_iteration"])
    assert peak.endswith(" GiB") and printed(peak[:-4], part["peak_memory_gib"]), (peak, part["peak_memory_gib"])
    assert printed(tflops, part["achieved_tflops"]), (tflops, part["achieved_tflops"])
    if section == "official)":
        assert ratio == "1"
    else:
        assert printed(ratio.removesuffix("x"), part.get("speedup_vs_official")), (ratio, part.get("speedup_vs_official"))


def test_the_bench_folders_table_rows_are_their_records():
    """results/bench/README.md's table: a file per row, or "same file, `compared`" for a run beside it."""
    text = (ROOT / "results" / "bench" / "README.md").read_text(encoding="utf-8").splitlines()
    start = text.index("| file | setting | s / iteration | ms / sample-iteration | peak GiB | TFLOP/s | vs official |")
    data, checked = None, 0
    for line in text[start + 2:]:
        if not line.startswith("|"):
            break
        file, _, seconds, ms, peak, tflops, ratio = [cell.strip() for cell in line.strip().strip("|").split("|")]
        section = re.fullmatch(r"same file, `(\w+)`", file)
        if section is None:
            data = part = json.loads((ROOT / "results" / "bench" / re.match(r"`([^`]+)`", file)[1]).read_text())
        else:
            part = data[section[1]]
        for text_value, key in ((seconds, "seconds_per_iteration"), (ms, "ms_per_sample_iteration"),
                                (peak, "peak_memory_gib"), (tflops, "achieved_tflops")):
            assert printed(text_value, part[key]), (file, key, text_value, part[key])
        if section and section[1] == "official_layout":
            assert ratio == "1", (file, ratio)
        else:
            assert printed(ratio.removesuffix("x"), part.get("speedup_vs_official")), (file, ratio)
        checked += 1
    assert checked == 16


def test_every_speed_record_named_in_the_readme_is_committed_and_clean():
    for name in {row[-1].partition(" (")[0] for row in speed_rows()}:
        commit = json.loads((ROOT / "results" / "bench" / f"{name}.json").read_text())["provenance"]["commit"]
        assert re.fullmatch(r"[0-9a-f]{40}", commit), f"{name} was made from {commit}"


def test_the_video_worlds_teacher_table_is_its_record():
    record = json.loads((ROOT / "results" / "world" / "tiny-cogvideox" / "teacher.json").read_text())
    by_steps = {str(r["steps"]): r for r in record["rows"]}
    rows = table_after("| teacher steps (CFG 3) |")
    assert [r[0] for r in rows] == ["1", "4", "8", "50", "real clips"]
    for steps, fd_teacher, fd_data, alignment, motion, coverage in rows:
        values = record["floors"] if steps == "real clips" else by_steps[steps]
        assert printed(fd_teacher, values.get("fd_teacher")), (steps, fd_teacher)
        for text, key in ((fd_data, "fd_data"), (alignment, "alignment"), (motion, "motion_accuracy"),
                          (coverage, "mode_coverage")):
            assert printed(text, values[key]), (steps, key, text, values[key])


def test_a_number_off_by_its_last_digit_is_caught():
    assert printed("30.9", 30.907) and not printed("31.0", 30.907) and not printed("30.90", 30.907)
    assert printed("-", None) and not printed("-", 1.0) and not printed("1.0", None)


def test_the_readme_quotes_table5_on_tiny_sd15_as_rendered():
    """Its caption and every line of its table stand in paper_tables/table5.md (what the records render to)."""
    rendered = (ROOT / "paper_tables" / "table5.md").read_text(encoding="utf-8").splitlines()
    captions = [line for line in README.splitlines() if line.startswith("table5 (") and "on tiny-sd15, full" in line]
    quoted = captions + table_lines("| row | steps | test solver | paper HPS |")
    assert len(captions) == 1 and len(quoted) == 18
    missing = [line for line in quoted if line not in rendered]
    assert not missing, missing


def test_the_real_size_video_table_is_its_records():
    """CogVideoX-2B at 49 x 480 x 720: sampling by part, and the TDM LoRA iteration with and without checkpointing."""
    bench = ROOT / "results" / "bench"
    sampling = json.loads((bench / "cogvideox-2b-sampling-h200.json").read_text())
    lora = json.loads((bench / "tdm-cogvideox-2b-lora-h200.json").read_text())
    nockpt = json.loads((bench / "tdm-cogvideox-2b-lora-nockpt-h200.json").read_text())
    rows = {row[0]: row[1:] for row in table_after("| what | seconds | peak memory |")}
    expected = {  # row -> (seconds, peak GiB or None)
        "T5-XXL encoding of one prompt": (sampling["text_encoding_s"], None),
        "4 transformer steps (guidance 1, as the student samples)": (sampling["transformer_steps_s"],
                                                                     sampling["steps_peak_gib"]),
        "3D VAE decode": (sampling["vae_decode_s"], sampling["vae_decode_peak_gib"]),
        "3D VAE decode, tiled (`vae.enable_tiling()`)": (sampling["vae_decode_tiled_s"],
                                                         sampling["vae_decode_tiled_peak_gib"]),
        "a TDM training iteration, LoRA rank 64, gradient checkpointing (the preset), batch 1":
            (lora["seconds_per_iteration"], lora["peak_memory_gib"]),
        "the same without gradient checkpointing": (nockpt["seconds_per_iteration"], nockpt["peak_memory_gib"]),
    }
    for what, (seconds, peak) in expected.items():
        text_seconds, text_peak = rows[what]
        assert printed(text_seconds, seconds), (what, text_seconds, seconds)
        assert printed(text_peak.removesuffix(" GiB"), peak), (what, text_peak, peak)
    sample = rows["a 4-step sample"][0]
    assert sample == (f"{sampling['sample_s']:.2f} (decode {100 * sampling['decode_share']:.0f} %; tiled "
                      f"{sampling['sample_tiled_s']:.2f}, {100 * sampling['decode_share_tiled']:.0f} %)")


def test_the_readmes_table4_on_the_video_world_is_the_rendered_one():
    """Its rows, in order, are paper_tables/table4.csv's full-scale rows on tiny-cogvideox: steps, the
    paper's VBench total, and each metric's mean (± std over seeds)."""
    import csv

    rendered = [r for r in csv.DictReader((ROOT / "paper_tables" / "table4.csv").open())
                if (r["world"], r["scale"]) == ("tiny-cogvideox", "full")]
    by_row = {}
    for r in rendered:
        by_row.setdefault(r["row"], {})[r["metric"]] = r
    rows = table_after("| row | steps | paper VBench total | fd_teacher | fd_data |")
    assert len(rows) == len(by_row)
    metrics = ("fd_teacher", "fd_data", "alignment", "motion_accuracy", "temporal_consistency", "mode_coverage")
    for quoted, cells in zip(rows, by_row.values()):
        first = next(iter(cells.values()))
        assert quoted[1] == first["steps"], quoted
        assert printed(quoted[2], float(first["paper_value"]) if first["paper_value"] else None), quoted
        for text, metric in zip(quoted[3:], metrics):
            mean, _, std = text.partition(" ± ")
            cell = cells.get(metric)
            assert printed(mean, float(cell["ours_mean"]) if cell else None), (quoted[0], metric, text)
            assert printed(std or "-", float(cell["ours_std"]) if cell and cell["ours_std"] else None), \
                (quoted[0], metric, text)
