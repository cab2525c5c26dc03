import pytest
import torch

from harness.worlds.tiny_sd15.judge import CLASSIFIER, PIPELINE


@pytest.fixture(scope="session", autouse=True)
def _threads():
    torch.set_num_threads(max(1, torch.get_num_threads()))


@pytest.fixture(scope="session")
def shipped_pipeline():
    from methods.common.pipeline_io import load_sd_pipeline

    return load_sd_pipeline(PIPELINE)


@pytest.fixture(scope="session")
def classifier():
    from harness.worlds.tiny_sd15.classifier import AttributeClassifier

    return AttributeClassifier.load(CLASSIFIER)


@pytest.fixture(scope="module")
def one_thread():
    """Small networks on a 2-core machine: thread start-up dominates, one thread is fastest and
    keeps CPU results reproducible. Modules opt in with pytestmark = usefixtures("one_thread")."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def reference_package(name: str):
    """A reference implementation's module (open_clip, cleanfid, hpsv2, ...) for a parity test: the
    test skips where it is not installed, except under TDM_REQUIRE_PARITY=1 (make test-metrics, CI),
    where a failed import fails the test instead of hiding it."""
    import importlib
    import os

    if os.environ.get("TDM_REQUIRE_PARITY") == "1":
        return importlib.import_module(name)
    return pytest.importorskip(name, reason=f"{name} is a reference package: run `make test-metrics`")


@pytest.fixture(scope="session")
def tiny_cogvideox_world(tmp_path_factory):
    """A tiny-cogvideox build of one or two steps per stage on the CPU (the path, not the quality)."""
    from harness.worlds.tiny_cogvideox import build

    out = tmp_path_factory.mktemp("tiny-cogvideox") / "world"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert build.main(["--out", str(out), "--device", "cpu", *TINY_COGVIDEOX_BUILD]) == 0
    finally:
        torch.set_num_threads(before)
    return out


TINY_COGVIDEOX_BUILD = ["vae_steps=1", "vae_batch=1", "classifier_steps=2", "classifier_batch=2", "bank_size=4",
                        "teacher_steps=2", "teacher_batch=2", "teacher_warmup=1", "probe_every=1", "probe_size=2"]
