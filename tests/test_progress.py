"""The grid's progress display: the work in hand, an ETA from the measured step rate, a line per task."""

import time

from harness import progress
from harness.executors import Task


def _tasks():
    noop = lambda *a: None  # noqa: E731
    return {"null:a": Task("null:a", "null", (), noop, (), label="null 1/2 basic-unet", steps=100),
            "null:b": Task("null:b", "null", (), noop, (), label="null 2/2 basic-unet", steps=100),
            "cells:x": Task("cells:x", "cells", ("null:a", "null:b"), noop, (), label="prune 0.5")}


def test_eta_comes_from_the_step_rate_and_the_other_work_from_its_mean_time():
    lines = []
    bar = progress.GridProgress(_tasks(), workers=2, log=lines.append)
    try:
        bar.handle((11, "start", "null:a"))
        bar.handle((12, "start", "null:b"))
        assert bar.eta_seconds() is None  # no step measured yet
        bar.handle((11, "steps", 0, 100))
        bar._first_step_at = time.perf_counter() - 10.0  # 50 steps in 10 s: 5 steps/s over both workers
        bar.handle((11, "steps", 25, 100))
        bar.handle((12, "steps", 25, 100))
        seconds, complete = bar.eta_seconds()
        assert abs(seconds - 150 / 5) < 1.0 and not complete  # 150 steps left at 5 steps/s, + untimed cells
        assert "ETA >= 30s" in bar._bar.desc
        bar._left_by_kind["cells"] = 0
        assert bar.eta_seconds()[1]
        bar.handle((11, "line", "null 1/2 basic-unet-seed1: Dice 0.700"))
        bar.finish("null:a", 20.0, "[1/3] null:a done")
        assert bar._steps_left == 75  # the finished task's remaining steps are not waited for
        assert "null 2/2 basic-unet 25%" in bar._bar.desc
    finally:
        bar.close()
    assert lines[:2] == ["null 1/2 basic-unet-seed1: Dice 0.700", "[1/3] null:a done"]


def test_steps_of_another_training_inside_a_task_do_not_move_its_bar():
    bar = progress.GridProgress(_tasks(), workers=1, log=lambda line: None)
    try:
        bar.handle((11, "start", "null:a"))
        bar.handle((11, "steps", 40, 7))  # e.g. an attack's fine-tuning: not the planned 100 steps
        assert bar._in_hand["null:a"].steps_done == 0
    finally:
        bar.close()


def test_without_a_parent_training_draws_its_own_bar_and_prints_its_line(capsys):
    progress.connect(None)
    steps = progress.training_steps("train", 3)
    for _ in range(3):
        steps.update()
    steps.close()
    progress.model_finished("clean basic-unet: Dice 0.770")
    assert "clean basic-unet: Dice 0.770" in capsys.readouterr().err
