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


@pytest.fixture(scope="session")
def assert_reproduces_committed():
    """The claims tests' one comparison: re-run records against the committed ``results/runs``, metric by
    metric to 1e-6. ``section`` names the regeneration script's section that commits them."""
    from pathlib import Path

    from harness.records import load_records

    committed = {r.run_id: r for r in load_records(Path(__file__).parents[1] / "results") if r.status == "ok"}

    def check(rerun, compared, section: str) -> None:
        from harness.records import cpu_identity

        missing = [f"{r.spec['watermark']} x {r.spec['attack']}" for r in rerun if r.run_id not in committed]
        assert not missing, f"no committed record for {missing}: run scripts/regenerate_results.sh {section}"
        # Another processor generation runs other float kernels: the digits compared here are defined on the
        # CPU the records were computed on (harness.records.cpu_identity), and only there.
        theirs = {committed[r.run_id].versions.get("cpu") for r in rerun}
        if theirs != {cpu_identity()}:
            pytest.skip(f"the committed records of {section} were computed on {sorted(map(str, theirs))}, this "
                        f"machine is {cpu_identity()!r}: exact reproduction needs the same CPU kernels")
        for record in rerun:
            assert record.status == "ok", record.error
            mine, theirs = record.metrics, committed[record.run_id].metrics
            for name in compared:
                assert mine.get(name) == pytest.approx(theirs.get(name), abs=1e-6, nan_ok=True), \
                    (record.spec["watermark"], record.spec["attack"], name)

    return check
