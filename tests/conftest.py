import pytest
import torch

from harness.runner import benchmark


def _at_most_two_threads():
    # Two cores: more threads than that only oversubscribes the CPU.
    torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _quiet_threads():
    _at_most_two_threads()
    yield


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """One end-to-end run at the smoke preset (seconds): every code path, meaningless numbers.

    Its tasks run with one torch thread each, whatever this process's count (``harness.executors``),
    so the exact comparisons of later tests hold on any machine."""
    results = tmp_path_factory.mktemp("smoke")
    outcome = benchmark(preset="smoke", results=results, strengths=[0.5, 0.9], log=lambda msg: None)
    return results, outcome


@pytest.fixture(scope="session")
def claims_results(tmp_path_factory):
    """The claims tests' one results folder, so the tiny models one module trains the next reuses.

    ``HARNESS_CLAIMS_RESULTS=DIR`` reuses the models cached in ``DIR/cache``; otherwise a fresh folder."""
    import os

    reuse = os.environ.get("HARNESS_CLAIMS_RESULTS")
    return reuse if reuse else tmp_path_factory.mktemp("claims")
