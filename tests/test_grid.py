"""Grids: the YAML file, comma-separated runs, fault isolation, kill -9 and resume, and Dask == local.

All on the seconds-long smoke preset. Leaderboards are compared without
``attack_seconds``, the one wall-clock column.
"""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from attacks.prune import GlobalL1Prune
from harness.cli import main
from harness.errors import HarnessError
from harness.grid import Grid, load_grid, run_grid
from harness.records import load_records
from harness.runner import benchmark

REPO = Path(__file__).parents[1]
QUIET = lambda msg: None  # noqa: E731


def leaderboard_without_timing(results) -> list[dict]:
    with open(Path(results) / "leaderboard.csv") as handle:
        return [{k: v for k, v in row.items() if k != "attack_seconds"} for row in csv.DictReader(handle)]


def write_grid(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# -- the grid file -------------------------------------------------------------------


def test_grid_file_is_read_as_plain_data(tmp_path):
    grid = load_grid(write_grid(tmp_path / "g.yaml", """
watermarks: [stealthmark, badnets]
models: basic-unet, unet
attacks: [prune]
strengths: [0.5, 0.9]
seeds: [0, 1]
presets: smoke
null_seeds: 3
"""))
    assert grid.models == ["basic-unet", "unet"] and grid.seeds == [0, 1] and grid.strengths == [0.5, 0.9]
    assert len(grid.settings()) == 4  # 2 models x 2 seeds


@pytest.mark.parametrize("text, message", [
    ("modles: [unet]\n", "did you mean 'models'"),
    ("- just\n- a list\n", "expected a mapping"),
    ("watermarks: !!python/object/apply:os.system ['echo owned']\n", "not valid YAML data"),
    ("watermarks: [stealthmark\n", "not valid YAML data"),
    ("watermarks: []\n", "is empty"),
    ("null_models: [unet]\n", "the nulls are always of the suspect's own architecture"),
])
def test_bad_grid_files_fail_with_one_line(tmp_path, text, message):
    with pytest.raises(HarnessError, match=message) as info:
        load_grid(write_grid(tmp_path / "bad.yaml", text))
    assert "\n" not in str(info.value)


def test_grid_names_are_validated_before_any_work(tmp_path):
    grid = Grid(watermarks=["stealthmark"], models=["basic-unet", "unett"], presets=["smoke"], results=str(tmp_path))
    with pytest.raises(HarnessError, match="did you mean 'unet'"):
        run_grid(grid, log=QUIET)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache").exists()


def test_missing_grid_file_is_one_line_exit_2(tmp_path, capsys):
    assert main(["grid", str(tmp_path / "nope.yaml")]) == 2
    assert capsys.readouterr().err.strip() == f"error: grid file not found: {tmp_path / 'nope.yaml'}"


# -- comma-separated run values -----------------------------------------------------


def test_run_with_comma_separated_values_crosses_them(tmp_path):
    outcome = benchmark(watermarks=["badnets"], model="basic-unet,unet", seed="0", preset="smoke", strengths=[0.5],
                        null_seeds=3, results=tmp_path, log=QUIET)
    assert sorted(r.spec["model"] for r in outcome.records) == ["basic-unet", "unet"]
    assert all(r.status == "ok" for r in outcome.records)
    # One file per embedded model, named by its full stem when there are several.
    assert {p.name for p in outcome.keys.values()} == {
        "badnets-patch-basic-unet-synthetic-polyp-smoke-seed0.npz", "badnets-patch-unet-synthetic-polyp-smoke-seed0.npz"}


# -- fault isolation ------------------------------------------------------------------


def test_a_failing_cell_is_recorded_the_grid_goes_on_and_a_rerun_retries_only_it(tmp_path, monkeypatch, capsys):
    original = GlobalL1Prune.apply

    def explodes_at_90(self, model, kit, strength, seed):
        if strength == 0.9:
            raise RuntimeError("plugin exploded")
        return original(self, model, kit, strength, seed)

    monkeypatch.setattr(GlobalL1Prune, "apply", explodes_at_90)
    argv = ["run", "--watermark", "badnets,stealthmark", "--preset", "smoke", "--strength", "0.5,0.9",
            "--null-seeds", "3", "--workers", "1", "--results", str(tmp_path)]  # in this process: patched
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "2 of 4 cells failed" in err and "plugin exploded" in err
    records = {(r.spec["watermark"], r.spec["strength"]): r for r in load_records(tmp_path)}
    assert {k: r.status for k, r in records.items()} == {
        ("badnets", 0.5): "ok", ("stealthmark", 0.5): "ok", ("badnets", 0.9): "error", ("stealthmark", 0.9): "error"}
    assert "RuntimeError: plugin exploded" in records[("badnets", 0.9)].error
    assert len(leaderboard_without_timing(tmp_path)) == 2  # failed cells never reach the leaderboard
    ok_before = {k: (tmp_path / "runs" / f"{r.run_id}.json").read_bytes() for k, r in records.items() if r.status == "ok"}

    monkeypatch.setattr(GlobalL1Prune, "apply", original)
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "2 of 4 cells already recorded" in err
    assert "cells:" in err and ":0.5 " not in err, "only the failed strength is recomputed"
    after = {(r.spec["watermark"], r.spec["strength"]): r for r in load_records(tmp_path)}
    assert all(r.status == "ok" for r in after.values())
    for k, body in ok_before.items():
        assert (tmp_path / "runs" / f"{after[k].run_id}.json").read_bytes() == body


def test_a_failing_artifact_fails_only_its_downstream_cells(tmp_path, monkeypatch):
    from baselines.badnets import BadNets

    def broken_embed(self, model, splits, preset, seed):
        raise RuntimeError("embedding broke")

    monkeypatch.setattr(BadNets, "embed", broken_embed)
    outcome = benchmark(watermarks=["badnets", "stealthmark"], preset="smoke", strengths=[0.5], null_seeds=3,
                        workers=1, results=tmp_path, log=QUIET)  # in this process, where the patch is
    status = {r.spec["watermark"]: r for r in outcome.records}
    assert status["stealthmark"].status == "ok"
    assert status["badnets"].status == "error" and "embedding broke" in status["badnets"].error
    assert status["badnets"].error.startswith("upstream mark:badnets-patch")


# -- kill -9 and resume ---------------------------------------------------------------

RUN = ["--watermark", "badnets,stealthmark", "--preset", "smoke", "--strength", "0.1,0.3,0.5,0.7,0.9",
       "--explainer", "lime,kernelshap", "--null-seeds", "3", "--threads", "1"]


def _cli(results: Path, *extra) -> list[str]:
    return [sys.executable, "-m", "harness", "run", *RUN, "--results", str(results), *extra]


def test_kill_9_then_rerun_gives_the_uninterrupted_leaderboard(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = tmp_path / "killed"
    process = subprocess.Popen(_cli(killed), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not list((killed / "runs").glob("*.json")):
        time.sleep(0.02)
    assert process.poll() is None, "the run finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    partial = list((killed / "runs").glob("*.json"))
    assert 1 <= len(partial) < 20
    for record in load_records(killed):  # no half-written record, ever
        assert record.status == "ok"

    resumed = subprocess.run(_cli(killed), cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"{len(partial)} of 20 cells already recorded" in resumed.stderr
    straight = tmp_path / "straight"
    done = subprocess.run(_cli(straight), cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert leaderboard_without_timing(killed) == leaderboard_without_timing(straight)
    assert len(leaderboard_without_timing(killed)) == 20
    assert not list(killed.rglob("*.tmp")), "no temporary file survives the resumed run"


# -- Dask -----------------------------------------------------------------------------


def test_every_executor_and_worker_count_gives_the_same_leaderboard(tmp_path):
    """One thread per task by default: this process, two local worker processes and two Dask
    workers compute bit-identical numbers."""
    common = dict(watermarks=["badnets", "stealthmark"], preset="smoke", strengths=[0.5, 0.9], null_seeds=3,
                  log=QUIET)
    alone = benchmark(results=tmp_path / "alone", workers=1, **common)
    pool = benchmark(results=tmp_path / "pool", workers=2, **common)
    distributed = benchmark(results=tmp_path / "dask", executor="dask", workers=2, **common)
    for outcome in (alone, pool, distributed):
        assert [r.status for r in outcome.records] == ["ok"] * 4, [r.error for r in outcome.records]
        assert [r.run_id for r in outcome.records] == [r.run_id for r in alone.records]
    assert leaderboard_without_timing(tmp_path / "pool") == leaderboard_without_timing(tmp_path / "alone")
    assert leaderboard_without_timing(tmp_path / "dask") == leaderboard_without_timing(tmp_path / "alone")


def test_the_progress_shows_each_finished_model_with_its_dice(tmp_path):
    lines = []
    benchmark(watermarks=["badnets"], preset="smoke", strengths=[0.5], null_seeds=3, workers=2,
              results=tmp_path, log=lines.append)
    text = "\n".join(lines)
    assert "null 1/3 basic-unet-seed1: Dice" in text and "null 3/3 basic-unet-seed3: Dice" in text, text
    assert "clean basic-unet: Dice" in text and "badnets basic-unet (embedded, keyed, calibrated): Dice" in text
    assert text.count("test images") == 5


def test_executor_options_are_checked(tmp_path):
    with pytest.raises(HarnessError, match="--scheduler needs --executor dask"):
        benchmark(preset="smoke", scheduler="tcp://localhost:1", results=tmp_path, log=QUIET)
    with pytest.raises(HarnessError, match="--workers must be a whole number >= 1"):
        benchmark(preset="smoke", workers=0, results=tmp_path, log=QUIET)
    with pytest.raises(HarnessError, match="unknown executor 'dusk'"):
        benchmark(preset="smoke", executor="dusk", results=tmp_path, log=QUIET)
    with pytest.raises(HarnessError, match="no CUDA device|unknown device"):
        benchmark(preset="smoke", device="cuda" if not _has_cuda() else "tpu", results=tmp_path, log=QUIET)


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_a_cached_model_of_an_older_architecture_is_rebuilt(tmp_path):
    import torch

    from harness.cache import ArtifactCache

    cache = ArtifactCache(tmp_path)
    trained = []

    def train(model):
        trained.append(model)
        return model

    cache.model("clean", {"x": 1}, torch.nn.Linear(3, 2), train)
    model, loaded = cache.model("clean", {"x": 1}, torch.nn.Linear(3, 4), train)  # same spec, new shapes
    assert not loaded and len(trained) == 2 and model.weight.shape == (4, 3)
    _, loaded = cache.model("clean", {"x": 1}, torch.nn.Linear(3, 4), train)
    assert loaded and len(trained) == 2


def test_threads_apply_to_the_grid_tasks_only(tmp_path):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        benchmark(watermarks=["badnets"], preset="smoke", strengths=[0.5], null_seeds=3, threads=1,
                  results=tmp_path, log=QUIET)
        assert torch.get_num_threads() == 2, "a grid's --threads must not leak into the caller's process"
    finally:
        torch.set_num_threads(before)


def test_a_folder_dataset_runs_end_to_end_and_is_named_by_its_files(tmp_path):
    import numpy as np
    from PIL import Image

    from harness.registry import DATASETS

    folder = tmp_path / "Kvasir-SEG"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    source = DATASETS.get("synthetic-polyp")(image_size=48)
    for i in range(40):
        image, mask = source.sample(i, 7)
        Image.fromarray(image).save(folder / "images" / f"c{i:03d}.png")
        Image.fromarray((mask * 255).astype(np.uint8)).save(folder / "masks" / f"c{i:03d}.png")
    outcome = benchmark(watermarks=["badnets"], dataset="kvasir", data_dir=str(folder), preset="smoke",
                        strengths=[0.5], null_seeds=3, results=tmp_path / "results", log=QUIET)
    (record,) = outcome.records
    assert record.status == "ok" and record.spec["dataset"].startswith("kvasir:")
    # 40 images at smoke leave no room for a disjoint null: the key says how much the resampled nulls share.
    from harness.watermark import Key

    assert 0 < Key.load(outcome.keys["badnets"]).meta["null_data_overlap"] <= 1
    (folder / "masks" / "c000.png").unlink()  # a changed copy is a different dataset, checked before any work
    with pytest.raises(HarnessError, match="c000.png has no mask"):
        benchmark(watermarks=["badnets"], dataset="kvasir", data_dir=str(folder), preset="smoke", strengths=[0.5],
                  null_seeds=3, results=tmp_path / "results", log=QUIET)
