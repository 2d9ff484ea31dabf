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
    """One end-to-end run at the smoke preset (seconds): every code path, meaningless numbers."""
    # pytest sets up this session fixture before the function-scoped _quiet_threads of the first test that
    # asks for it, so without this line that test gets the run at torch's default thread count while later
    # tests (test_runner's same-numbers check) recompute at two: training's floats depend on the thread
    # count (measured: smoke metrics differ between 4 and 2 threads), and the exact comparisons would fail
    # on any machine with more than two cores.
    _at_most_two_threads()
    results = tmp_path_factory.mktemp("smoke")
    outcome = benchmark(preset="smoke", results=results, strengths=[0.5, 0.9], log=lambda msg: None)
    return results, outcome
