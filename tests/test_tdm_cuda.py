"""On a GPU: the fast executions compute what eager iterations compute.

20 iterations of tiny-sd15 at batch 64 (bf16 autocast) for a 4-step student, a DPM-Solver student,
TDM-unify (one graph per K) and the official script's recipe (a fresh generator segment, and a
learning-rate schedule whose rate a replayed step reads from a tensor), each run compared with an
eager run of the same preset:

- `execution=cuda_graph` against eager with `rollout=every_row`: the same calls on the same
  shapes, replayed instead of launched. Any difference is a replay fault (stale inputs, a
  skipped optimiser step, a buffer overwritten), so the tolerance is tight.
- eager with the default per-row roll-out against eager with `rollout=every_row`: the networks
  see batches of other sizes, bf16 kernels round differently, and 20 iterations of training
  let those differences grow. The tolerance is the one a bf16 run meets against itself under a
  change of batch shapes; in fp32 on a CPU the two agree to 1e-5
  (tests/test_tdm_execution.py).

The presets' default per-dimension importance weights are used (the paper's whole-sample ones
would turn rounding into large weight changes: their log is a sum over 1,024 latent dimensions).

At SD-1.5 size (random weights) the compiled, channels-last, graphed path is compared with eager
(marked slow too). Run on a GPU machine: python -m pytest -m gpu tests/test_tdm_cuda.py -s
(all; `-m "gpu and not slow"` leaves out the SD-1.5 one)
"""
import json
from pathlib import Path

import pytest
import torch

from methods.tdm.presets import resolve
from methods.tdm.train import train

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
ITERATIONS = 20
PRESETS = ["tiny-sd15-4step", "tiny-sd15-4step-dpmpp", "tiny-sd15-unify", "tiny-sd15-official-script"]
# (largest relative difference of one logged loss, mean over the run)
REPLAY_TOLERANCE = (1e-2, 1e-3)
SHAPE_TOLERANCE = (1e-1, 2e-2)


def _run(preset: str, out: Path, execution: str, **overrides) -> list[dict]:
    settings = {"tracker": "none", "output_dir": str(out), "export": "false", "checkpoint_every": "0",
                "log_every": "1", "iterations": ITERATIONS, "batch_size": 64, "execution": execution, **overrides}
    summary = train(resolve(preset, [f"{k}={v}" for k, v in settings.items()]), "cuda", show_progress=False)
    assert summary["execution"] == execution
    return [json.loads(line) for line in (out / "losses.jsonl").read_text().splitlines()]


def _assert_close(what: str, reference: list[dict], other: list[dict], tolerance: tuple[float, float]) -> None:
    assert [r["K"] for r in reference] == [r["K"] for r in other]
    assert [set(r) for r in reference] == [set(r) for r in other]  # DMD2 logs the student's loss on its turns
    differences = [abs(b[key] - a[key]) / abs(a[key])
                   for a, b in zip(reference, other) for key in ("loss/fake_score", "loss/student") if key in a]
    mean = sum(differences) / len(differences)
    print(f"{what}: relative difference of the logged losses over {len(reference)} iterations: "
          f"mean {mean:.2e}, largest {max(differences):.2e}")
    assert max(differences) < tolerance[0] and mean < tolerance[1], what


@pytest.mark.parametrize("preset", PRESETS)
def test_cuda_graph_iterations_replay_eager_ones(tmp_path, preset):
    eager = _run(preset, tmp_path / "eager", "eager", rollout="every_row")
    graph = _run(preset, tmp_path / "graph", "cuda_graph")
    _assert_close(f"{preset} graph vs eager (every row)", eager, graph, REPLAY_TOLERANCE)


@pytest.mark.parametrize("preset", PRESETS)
def test_per_row_roll_outs_train_like_every_row_ones(tmp_path, preset):
    every_row = _run(preset, tmp_path / "every", "eager", rollout="every_row")
    per_row = _run(preset, tmp_path / "per-row", "eager")
    _assert_close(f"{preset} eager per row vs every row", every_row, per_row, SHAPE_TOLERANCE)


def test_stratified_graphs_replay_eager_ones(tmp_path):
    """segments=stratified: the roll-out's fixed shapes per step are captured like the rest."""
    eager = _run("tiny-sd15-4step", tmp_path / "eager", "eager", segments="stratified")
    graph = _run("tiny-sd15-4step", tmp_path / "graph", "cuda_graph", segments="stratified")
    _assert_close("tiny-sd15-4step stratified graph vs eager", eager, graph, REPLAY_TOLERANCE)


SD15_ITERATIONS = 20


@pytest.mark.slow
def test_sd15_compiled_graphed_iterations_train_like_eager_ones(tmp_path):
    """At SD-1.5 size (random weights, 512 px, batch 16, bf16): regional compilation, channels-last
    and CUDA graphs against eager, both with stratified segments, for 20 iterations. Compiled
    kernels fuse and round differently, so the tolerance is the change-of-shapes one.
    About 4 minutes on an H200, mostly compilation."""
    from methods.common.random_pipelines import BUILDERS
    from methods.tdm.bench import bench_config

    pipeline = Path("/tmp/sd15")
    if not (pipeline / "model_index.json").is_file():
        BUILDERS["sd15"](str(pipeline))
    runs = {}
    for name, overrides in {"eager": [], "fast": ["compile=true", "compile_scope=blocks", "channels_last=true",
                                                 "execution=cuda_graph"]}.items():
        config = bench_config("sd15", str(pipeline), tmp_path / name, 16, SD15_ITERATIONS,
                              ["segments=stratified", *overrides])
        train(config, "cuda", show_progress=False)
        runs[name] = [json.loads(line) for line in (tmp_path / name / "run" / "losses.jsonl").read_text().splitlines()]
    _assert_close("sd15 compiled + graphs vs eager (stratified)", runs["eager"], runs["fast"], SHAPE_TOLERANCE)


def test_dmd2_graphs_replay_eager_ones(tmp_path, monkeypatch):
    """DMD2's iterations keyed by (K, s, the generator's turn): 8 graphs at K = 4. DMD2 declares no CUDA
    graphs until this passes (methods/dmd2/method.py), so the test lifts that for its own run."""
    from methods.dmd2.method import DMD2

    monkeypatch.setattr(DMD2, "cuda_graphs", True)
    settings = dict(generator_every=2, iterations=48)  # about 6 iterations per key: warm-up, capture, replays
    reference = _run("tiny-sd15-dmd2-4step", tmp_path / "eager", "eager", **settings)
    graphed = _run("tiny-sd15-dmd2-4step", tmp_path / "graph", "cuda_graph", **settings)
    _assert_close("DMD2 cuda_graph against eager", reference, graphed, REPLAY_TOLERANCE)
