"""Explainer cost against the model's own forward passes (pytest-benchmark; not in the default run).

    .venv/bin/python -m pytest tests/benchmarks

Each explainer explains one image of the tiny preset with 1,000 perturbations
over an 8x8 grid, in batches of 64; the floor forwards 1,000 perturbed images
in batches of 64 and nothing else. ``extra_info`` holds each explainer's ratio
to the floor (goal: <= 1.2 for perturbation explainers; captum-ig runs a
backward pass per step and is white-box). Timings are reported, not asserted:
a loaded machine moves them. ``python -m harness bench explainers`` prints the
same comparison as a table.
"""

import pytest

from harness.bench import GOAL_RATIO, bench_scene, warm_up
from harness.registry import EXPLAINERS

N_SAMPLES = 1000
BATCH = 64


@pytest.fixture(scope="module")
def scene():
    scene = bench_scene("basic-unet", "tiny", n_samples=N_SAMPLES, batch_size=BATCH, seed=0)
    scene.floor()  # warm-up
    return scene


@pytest.fixture(scope="module")
def floor_s(scene):
    import time

    best = float("inf")
    for _ in range(2):
        tic = time.perf_counter()
        scene.floor()
        best = min(best, time.perf_counter() - tic)
    return best


def test_forward_floor(benchmark, scene):
    benchmark.extra_info.update(images=N_SAMPLES, batch_size=BATCH)
    benchmark.pedantic(scene.floor, rounds=2, iterations=1)


def test_one_image_per_forward(benchmark, scene):
    benchmark.extra_info.update(images=N_SAMPLES, batch_size=1)
    benchmark.pedantic(scene.one_by_one, rounds=1, iterations=1)


@pytest.mark.parametrize("name", EXPLAINERS.names())
def test_explainer(benchmark, scene, floor_s, name):
    explainer = EXPLAINERS.get(name)()
    warm_up(scene, explainer)
    weights = benchmark.pedantic(scene.explain, args=(explainer, N_SAMPLES), rounds=1, iterations=1)
    assert weights.shape == (scene.mask.max() + 1,)
    ratio = benchmark.stats.stats.min / floor_s
    benchmark.extra_info.update(
        floor_s=round(floor_s, 4), ratio=round(ratio, 3), white_box=explainer.white_box,
        goal=("white-box" if explainer.white_box else ratio <= GOAL_RATIO),
    )
