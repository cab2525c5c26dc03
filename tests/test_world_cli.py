"""`python -m harness.world`: user mistakes end in one line and exit code 2, writing nothing."""
import shutil

import pytest
import torch

from harness import world
from harness.worlds.tiny_sd15.judge import PIPELINE


def run(capsys, *argv):
    try:
        code = world.main(list(argv))
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    return code, capsys.readouterr()


def assert_one_line_error(code, out, *words):
    assert code == 2
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), out.err
    for w in words:
        assert w in lines[0]


def test_unknown_world(capsys, tmp_path):
    code, out = run(capsys, "--world", "tiny-sd14", "evaluate", "--out", str(tmp_path / "t.json"))
    assert_one_line_error(code, out, "tiny-sd14", "did you mean 'tiny-sd15'")
    assert not list(tmp_path.iterdir())


def test_folder_that_is_not_a_pipeline(capsys, tmp_path):
    code, out = run(capsys, "sample", "--pipeline", str(tmp_path), "--prompt", "a red circle on a grey background",
                    "--out", str(tmp_path / "x.png"))
    assert_one_line_error(code, out, "model_index.json")
    assert not list(tmp_path.iterdir())


def test_corrupt_safetensors(capsys, tmp_path):
    broken = tmp_path / "pipeline"
    shutil.copytree(PIPELINE, broken)
    weights = broken / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    out_png = tmp_path / "x.png"
    code, out = run(capsys, "sample", "--pipeline", str(broken), "--prompt", "a red circle on a grey background",
                    "--out", str(out_png))
    assert_one_line_error(code, out, "corrupt", "diffusion_pytorch_model.safetensors")
    assert not out_png.exists()


def test_prompt_outside_the_grammar(capsys, tmp_path):
    code, out = run(capsys, "sample", "--prompt", "a photo of an astronaut riding a horse", "--out",
                    str(tmp_path / "x.png"))
    assert_one_line_error(code, out, "not in the tiny-sd15 grammar")
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_cuda_without_gpu(capsys, tmp_path):
    code, out = run(capsys, "evaluate", "--device", "cuda", "--out", str(tmp_path / "t.json"))
    assert_one_line_error(code, out, "no CUDA GPU")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("argv, words", [
    (["evaluate", "--steps", "0,4"], ["1..1000"]),
    (["evaluate", "--solvers", "euler"], ["unknown solver"]),
    (["build", "--out", "x", "--set", "teacher_lr=fast"], ["teacher_lr"]),
    (["build", "--out", "x", "--set", "no_such_key=1"], ["no_such_key"]),
])
def test_bad_values(capsys, argv, words):
    code, out = run(capsys, *argv)
    assert_one_line_error(code, out, *words)


def test_sample_writes_a_png(capsys, tmp_path):
    out_png = tmp_path / "x.png"
    code, out = run(capsys, "sample", "--prompt", "a large green diamond at the bottom right on a black background",
                    "--steps", "2", "--n", "2", "--out", str(out_png))
    assert code == 0 and out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
