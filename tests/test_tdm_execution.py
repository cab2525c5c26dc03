"""The ways an iteration can execute compute the same thing (CPU).

- the vectorised per-row solver step equals the per-group step it replaced, bit for bit;
- rolling out only the rows that need each step gives each row the same state as rolling out
  every row (the student's calls see fewer rows; results agree to float32 rounding);
- gradient accumulation over micro-batches gives the same losses and weights as one pass;
- inputs made ahead in data-loader workers are the inputs made in the training process.

CUDA graphs and compilation run on a GPU only: tests/test_tdm_cuda.py.
"""
import json
from pathlib import Path

import pytest
import torch

from harness.worlds.gmm import sd15_schedule
from methods.tdm.objective import CLEAN, interval_bounds
from methods.tdm.presets import resolve
from methods.tdm.train import train
from methods.tdm.trajectory import _per_row_step, _step, rollout, rollout_segments

pytestmark = pytest.mark.usefixtures("one_thread")
SCHEDULE = sd15_schedule()


@pytest.mark.parametrize("solver", ["ddim", "dpmpp"])
def test_per_row_step_equals_the_step_of_each_group(solver):
    K, n = 4, 64
    bounds = interval_bounds(K)
    g = torch.Generator().manual_seed(0)
    m = torch.arange(n) % K
    x, x0, x0_prev = (torch.randn(n, 4, 3, 3, generator=g) for _ in range(3))
    table = torch.tensor(bounds)
    out = _per_row_step(SCHEDULE, solver, x, x0, table[m + 1], table[m], x0_prev, table[(m + 2).clamp(max=K)],
                        m < K - 1)
    for k in range(K):
        rows = m == k
        prev = None if k == K - 1 else (x0_prev[rows], bounds[k + 2])
        expected = _step(SCHEDULE, solver, x[rows], x0[rows], bounds[k + 1], bounds[k], prev)
        assert torch.equal(out[rows], expected), k
    assert torch.equal(out[m == 0], x0[m == 0])  # the clean end is the prediction itself
    assert bounds[0] == CLEAN


class CountingStudent:
    """A smooth, row-wise student that counts the rows it is called on."""

    def __init__(self):
        self.rows = 0

    def x0(self, x, t, cond, step_cond=None):
        self.rows += len(x)
        return torch.tanh(x * (1 + t.float().view(-1, *[1] * (x.dim() - 1)) / 1000)) * cond["scale"]


@pytest.mark.parametrize("solver", ["ddim", "dpmpp"])
def test_rolling_out_only_the_rows_that_need_it_gives_the_same_states(solver):
    K, n = 4, 32
    g = torch.Generator().manual_seed(1)
    noise, scale = torch.randn(n, 2, generator=g), torch.rand(n, 1, generator=g) + 0.5
    m = torch.randint(0, K, (n,), generator=g)
    every, some = CountingStudent(), CountingStudent()
    full = rollout(every, SCHEDULE, noise, {"scale": scale}, K, m, solver)
    rows = rollout(some, SCHEDULE, noise, {"scale": scale}, K, m, solver, m_host=m)
    torch.testing.assert_close(rows.x_start, full.x_start, rtol=0, atol=1e-6)
    torch.testing.assert_close(rows.x0_prev, full.x0_prev, rtol=0, atol=1e-6)
    assert every.rows == n * (K - 1 - int(m.min()))
    needed = [int((m <= j - 2).sum()) for j in range(K, 1, -1)]  # 1.5 calls per row for uniform m
    assert some.rows == sum(needed)  # on a CPU no padding (a GPU pads to multiples of n / 8)
    assert some.rows < every.rows


@pytest.mark.parametrize("solver", ["ddim", "dpmpp"])
def test_stratified_segments_roll_out_the_same_states_in_fixed_shapes(solver):
    """Each segment on n / K rows: the roll-out runs exactly the rows each step needs, (j - 1) n / K
    of them at step b_j -> b_{j-1} whatever the draw, and every row ends where rolling out all rows puts it."""
    from methods.tdm.randomness import BatchRandom, draw_segments

    K, n = 4, 32
    g = torch.Generator().manual_seed(2)
    noise, scale = torch.randn(n, 2, generator=g), torch.rand(n, 1, generator=g) + 0.5
    for draw in range(3):
        m = draw_segments(BatchRandom(torch.Generator().manual_seed(draw), n), K, stratified=True)
        every, strata = CountingStudent(), CountingStudent()
        calls = []
        strata.x0 = (lambda inner: lambda x, *a: calls.append(len(x)) or inner(x, *a))(strata.x0)
        full = rollout(every, SCHEDULE, noise, {"scale": scale}, K, m, solver)
        (rows,) = rollout_segments(strata, SCHEDULE, noise, {"scale": scale}, K, [m], solver, strata=True)
        torch.testing.assert_close(rows.x_start, full.x_start, rtol=0, atol=1e-6)
        torch.testing.assert_close(rows.x0_prev, full.x0_prev, rtol=0, atol=1e-6)
        assert calls == [24, 16, 8]  # 1.5 calls per row, the same shapes for every draw
        assert every.rows == n * (K - 1)


def test_stratified_segments_are_uniform_per_row_and_balanced_per_block():
    from methods.tdm.randomness import BatchRandom, draw_segments

    K, n, draws = 4, 64, 400
    ms = torch.stack([draw_segments(BatchRandom(torch.Generator().manual_seed(s), n), K, stratified=True)
                      for s in range(draws)])
    for block in ms.view(draws, n // K, K):  # every K consecutive rows: a permutation of the K segments
        assert torch.equal(block.sort(dim=1).values, torch.arange(K).expand(n // K, K))
    frequency = torch.stack([(ms == k).float().mean(0) for k in range(K)])  # per row, over draws
    assert (frequency - 1 / K).abs().max() < 0.1  # uniform: 400 draws give a std of about 0.022
    assert not torch.equal(ms[0], ms[1])
    with pytest.raises(ValueError, match="multiple of K = 3"):
        draw_segments(BatchRandom(torch.Generator(), 16), 3, stratified=True)


def test_stratified_segments_need_a_batch_of_multiples_of_every_K():
    from methods.tdm.config import TDMConfig

    TDMConfig(steps=(1, 2, 4), batch_size=16, segments="stratified")
    with pytest.raises(ValueError, match="multiple of every K"):
        TDMConfig(steps=(1, 2, 3, 4), batch_size=16, segments="stratified")


def test_rows_are_padded_to_few_batch_sizes_on_a_gpu_only():
    from methods.tdm.trajectory import _padded_rows

    needed = torch.zeros(64, dtype=torch.bool)
    needed[[3, 9, 20]] = True
    assert _padded_rows(needed, "cpu").tolist() == [3, 9, 20]
    if torch.cuda.is_available():
        assert _padded_rows(needed, "cuda").tolist() == [3, 9, 20, 3, 3, 3, 3, 3]  # a multiple of 64 / 8


def _losses(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "losses.jsonl").read_text().splitlines()]


def _run(preset, out, **overrides):
    settings = {"tracker": "none", "output_dir": str(out), "export": "false", "checkpoint_every": "0",
                "log_every": "1", **{k: str(v) for k, v in overrides.items()}}
    return train(resolve(preset, [f"{k}={v}" for k, v in settings.items()]), "cpu", show_progress=False)


@pytest.mark.parametrize("preset, overrides", [
    ("gmm-4step", dict(iterations=5, batch_size=64)),
    ("tiny-sd15-unify", dict(iterations=3, batch_size=8, lr_student=1e-4, lr_fake=1e-3)),
])
def test_gradient_accumulation_is_the_same_update(tmp_path, preset, overrides):
    one = _run(preset, tmp_path / "one", **overrides)
    two = _run(preset, tmp_path / "two", grad_accumulation=2, **overrides)
    assert one["iterations"] == two["iterations"]
    for a, b in zip(_losses(tmp_path / "one"), _losses(tmp_path / "two")):
        for key in ("loss/fake_score", "loss/student"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-7), (a["step"], key)


def test_gradient_accumulation_must_divide_the_batch():
    from methods.common.errors import UserError

    with pytest.raises(UserError, match="grad_accumulation"):
        resolve("gmm-4step", ["batch_size=64", "grad_accumulation=3"])


def test_inputs_made_in_workers_are_the_same(tmp_path):
    from methods.tdm.backbones import load_backbone
    from methods.common.method import get_method
    from methods.tdm.inputs import step_inputs

    config = resolve("tiny-sd15-4step", ["batch_size=4", "iterations=4", f"output_dir={tmp_path}"])
    backbone = load_backbone(config, torch.device("cpu"), torch.float32)
    tdm = get_method("tdm")
    here = list(step_inputs(backbone, config, tdm, 1, 0, 1, workers=0, pin_memory=False))
    ahead = list(step_inputs(backbone, config, tdm, 1, 0, 1, workers=2, pin_memory=False))
    assert [item["step"] for item in ahead] == [1, 2, 3]
    for a, b in zip(here, ahead):
        assert a["K"] == b["K"] and torch.equal(a["batch"]["noise"], b["batch"]["noise"])
        assert torch.equal(a["batch"]["text"], b["batch"]["text"])
        assert all(torch.equal(x, y) for x, y in zip(a["draws"].tensors(), b["draws"].tensors()))


@pytest.mark.parametrize("preset", ["tiny-sd15-4step-dpmpp", "tiny-sd15-unify"])
def test_training_with_per_row_and_every_row_roll_outs_agree(tmp_path, preset):
    """CUDA graphs roll out every row, eager runs only the rows that need it: in fp32 the two
    trainings stay together (20 iterations at batch 64 agreed to 1.3e-6 for the DPM-Solver preset)."""
    losses = {}
    for mode in ("auto", "every_row"):
        _run(preset, tmp_path / mode, iterations=4, batch_size=16, importance_weights="per_dim_mean", rollout=mode)
        losses[mode] = _losses(tmp_path / mode)
    for a, b in zip(losses["auto"], losses["every_row"]):
        for key in ("loss/fake_score", "loss/student"):
            assert b[key] == pytest.approx(a[key], rel=1e-5), (a["step"], key)


@pytest.mark.parametrize("preset", ["tiny-sd15-4step", "tiny-sd15-unify"])
def test_training_with_strata_and_every_row_roll_outs_agree(tmp_path, preset):
    """segments=stratified rolls out only the rows each step needs, in fixed shapes; the training
    is the one that rolls every row out, to float32 rounding."""
    losses, summaries = {}, {}
    for mode in ("auto", "every_row"):
        summaries[mode] = _run(preset, tmp_path / mode, iterations=3, batch_size=16, segments="stratified",
                               rollout=mode)
        losses[mode] = _losses(tmp_path / mode)
    assert summaries["auto"]["rollout"] == "strata" and summaries["every_row"]["rollout"] == "every_row"
    for a, b in zip(losses["auto"], losses["every_row"]):
        for key in ("loss/fake_score", "loss/student"):
            assert b[key] == pytest.approx(a[key], rel=1e-5), (a["step"], key)


def test_weights_stepped_inside_an_autocast_region_are_used_at_once():
    """An iteration runs in one autocast region, which caches bf16 copies of trainable weights:
    after a role's optimiser step its next pass must see the new weights, not the cached copy."""
    from methods.tdm.trainer import update

    torch.manual_seed(0)
    net, x = torch.nn.Linear(8, 8), torch.randn(4, 8)
    optimiser = torch.optim.SGD(net.parameters(), lr=1.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.no_grad():
            before = net(x)
        update(optimiser, net(x).square().mean(), grad_clip=1e9)
        with torch.no_grad():
            inside = net(x)
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        fresh = net(x)
    assert not torch.equal(inside, before)
    assert torch.equal(inside, fresh)


def test_compile_compiles_the_networks(tmp_path, monkeypatch):
    """compile=true must reach dynamo: FLOPs are counted on step 0 under a dispatch mode, under
    which dynamo would give up on the networks' code for the whole run."""
    from torch._dynamo.testing import CompileCounter

    counter, real = CompileCounter(), torch.compile
    monkeypatch.setattr(torch, "compile", lambda module, **kwargs: real(module, backend=counter))
    torch._dynamo.reset()
    _run("tiny-sd15-4step", tmp_path, iterations=3, batch_size=4, compile="true")
    torch._dynamo.reset()
    assert counter.frame_count >= 1


def test_compile_by_blocks_compiles_each_block_shape_once_for_all_networks(tmp_path, monkeypatch):
    """compile_scope=blocks: the UNets' resnet and transformer blocks reach dynamo; the three
    networks share the compiled code, so frames stay few (one per block shape and grad mode)."""
    from torch._dynamo.testing import CompileCounter

    counter, real = CompileCounter(), torch.compile
    monkeypatch.setattr(torch, "compile", lambda module, **kwargs: real(module, backend=counter))
    torch._dynamo.reset()
    _run("tiny-sd15-4step", tmp_path, iterations=3, batch_size=4, compile="true", compile_scope="blocks")
    torch._dynamo.reset()
    assert 1 <= counter.frame_count <= 60
