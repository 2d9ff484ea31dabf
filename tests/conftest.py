import pytest
import torch

from harness.runner import benchmark


@pytest.fixture(autouse=True)
def _quiet_threads():
    # Two cores: more threads than that only oversubscribes the CPU.
    torch.set_num_threads(min(2, torch.get_num_threads()))
    yield


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """One end-to-end run at the smoke preset (seconds): every code path, meaningless numbers."""
    results = tmp_path_factory.mktemp("smoke")
    outcome = benchmark(preset="smoke", results=results, strengths=[0.5, 0.9], log=lambda msg: None)
    return results, outcome
