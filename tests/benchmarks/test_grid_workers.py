"""The tiny grid (grids/tiny.yaml) from a cold cache on a local Dask cluster of 1 and of 2 workers.

    .venv/bin/python -m pytest tests/benchmarks/test_grid_workers.py -s

Outside the default test run: each run trains 7 tiny models (about 12 minutes
in all on 2 cores). Each worker is one single-threaded process, so 2 workers
use both cores. The speedup is reported (goal: >= 1.7 on 2 cores), not
asserted; the two leaderboards must be identical apart from ``attack_seconds``.
Run it on a quiet machine: another process on the cores stretches both runs.
"""

import csv
import time
from pathlib import Path

import pytest

from harness.grid import load_grid, run_grid, with_overrides

GRID = Path(__file__).parents[2] / "grids" / "tiny.yaml"
TIMES: dict[int, float] = {}
RESULTS: dict[int, Path] = {}


def _board(results: Path) -> list[dict]:
    with open(results / "leaderboard.csv") as handle:
        return [{k: v for k, v in row.items() if k != "attack_seconds"} for row in csv.DictReader(handle)]


@pytest.mark.parametrize("workers", [1, 2])
def test_tiny_grid_on_dask_workers(benchmark, tmp_path_factory, workers):
    results = RESULTS[workers] = tmp_path_factory.mktemp(f"workers{workers}")
    grid = with_overrides(load_grid(GRID), results=str(results), threads=1)

    def run():
        tic = time.perf_counter()
        outcome = run_grid(grid, executor="dask", workers=workers, log=lambda msg: None)
        TIMES[workers] = time.perf_counter() - tic
        return outcome

    outcome = benchmark.pedantic(run, rounds=1, iterations=1)
    assert not outcome.failed and len(outcome.records) == 10
    benchmark.extra_info.update({"workers": workers, "cells": len(outcome.records), "seconds": TIMES[workers]})
    if workers == 2 and 1 in TIMES:
        speedup = TIMES[1] / TIMES[2]
        benchmark.extra_info["speedup_vs_1_worker"] = speedup
        print(f"\ntiny grid: 1 worker {TIMES[1]:.0f} s, 2 workers {TIMES[2]:.0f} s, speedup {speedup:.2f} (goal 1.7)")
        assert _board(RESULTS[1]) == _board(results)
