"""The video sampling bench on the shipped tiny-cogvideox pipeline (CPU): every part timed, shares consistent."""
import json
from pathlib import Path

import pytest

from methods.tdm import bench_sampling

pytestmark = pytest.mark.usefixtures("one_thread")

PIPELINE = str(Path(__file__).resolve().parents[1] / "harness/worlds/tiny_cogvideox/assets/pipeline")


def test_the_bench_times_encoding_steps_and_both_decodes(tmp_path):
    out = tmp_path / "s.json"
    assert bench_sampling.main(["--pipeline", PIPELINE, "--device", "cpu", "--clips", "1", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["clip"] == {"num_frames": 9, "height": 64, "width": 64, "max_sequence_length": 32}
    parts = record["text_encoding_s"] + record["transformer_steps_s"] + record["vae_decode_s"]
    assert record["sample_s"] == pytest.approx(parts, abs=1e-3)
    assert 0 < record["decode_share"] < 1 and record["decode_share"] == pytest.approx(record["vae_decode_s"] / parts,
                                                                                        abs=1e-3)
    assert len(record["per_clip"]) == 1 and record["provenance"]["commit"]


def test_a_folder_that_is_no_pipeline_is_one_line(tmp_path, capsys):
    assert bench_sampling.main(["--pipeline", str(tmp_path), "--device", "cpu", "--out", str(tmp_path / "s.json")]) == 2
    err = capsys.readouterr().err
    assert "is not a pipeline folder" in err and err.count("\n") == 1 and not (tmp_path / "s.json").exists()
