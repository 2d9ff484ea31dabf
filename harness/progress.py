"""What a person sees while a grid runs: one overall bar, the work in hand, an ETA, a line per model.

Worker processes (``harness.executors``) do not draw: ``training_steps`` and
``model_finished`` send events to the parent through a queue (``connect``),
and the parent's ``GridProgress`` draws one bar for the whole grid:

    [7/24] 02:41 null 8/10 unet 41% | null 9/10 unet 12% | ETA >= 2m10s

The ETA is the training steps still to run divided by the step rate measured
so far (over all workers), plus, for work that is not training (scores,
attacks), the mean time of the finished tasks of its kind; ">=" while some
kind of work has no finished task to time yet. In a single
process with no ``GridProgress`` (a test, ``harness nulls``), training shows
its own transient tqdm bar, as it always did.
"""

from __future__ import annotations

import os
import queue as queue_module
import sys
import time
from dataclasses import dataclass, field

from tqdm.auto import tqdm

# A step report every this many steps: often enough for a smooth bar, rare enough to cost nothing.
REPORT_EVERY = 10

_sink = None  # in a worker process: the queue to the parent


def connect(sink) -> None:
    """Send this process's events to ``sink`` (a multiprocessing queue) instead of drawing them."""
    global _sink
    _sink = sink


def task_started(key: str) -> None:
    """In a worker: tell the parent which task this process has begun."""
    _send(("start", key))


def _send(event: tuple) -> bool:
    if _sink is None:
        return False
    _sink.put((os.getpid(), *event))
    return True


class _Steps:
    """A training loop's progress: events to the parent, or a transient bar of its own."""

    def __init__(self, desc: str, total: int):
        self.total, self.done, self._sent = total, 0, 0
        self._bar = None
        if not _send(("steps", 0, total)):
            self._bar = tqdm(total=total, desc=desc, unit="step", leave=False, dynamic_ncols=True)

    def update(self, loss=None) -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.update()
            if loss is not None and self.done % 20 == 0:  # .item() waits for a GPU: not every step
                self._bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        elif self.done - self._sent >= REPORT_EVERY or self.done == self.total:
            _send(("steps", self.done, self.total))
            self._sent = self.done

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def training_steps(desc: str, total: int) -> _Steps:
    return _Steps(desc, total)


def model_finished(line: str, log=None) -> None:
    """One line for a finished model (its Dice and time): to the parent, else to ``log``/stderr."""
    if not _send(("line", line)):
        (log or (lambda text: print(text, file=sys.stderr)))(line)


@dataclass
class _InHand:
    label: str
    kind: str
    steps_done: int = 0
    steps_total: int = 0


@dataclass
class GridProgress:
    """The parent's view: ``start``/``finish`` from the executor, worker events through ``handle``."""

    tasks: dict  # key -> Task (its ``label``, ``kind`` and ``steps``)
    workers: int = 1
    log: object = print
    _bar: object = None
    _in_hand: dict = field(default_factory=dict)  # key -> _InHand
    _by_pid: dict = field(default_factory=dict)  # pid -> key
    _steps_run: int = 0
    _steps_left: int = 0
    _first_step_at: float | None = None
    _seconds_by_kind: dict = field(default_factory=dict)
    _left_by_kind: dict = field(default_factory=dict)

    def __post_init__(self):
        for task in self.tasks.values():
            self._steps_left += task.steps
            if not task.steps:
                self._left_by_kind[task.kind] = self._left_by_kind.get(task.kind, 0) + 1
        self._bar = tqdm(total=len(self.tasks), unit="task", dynamic_ncols=True, file=sys.stderr,
                         bar_format="[{n_fmt}/{total_fmt}] {elapsed} {desc}", disable=None)

    def start(self, key: str, pid: int | None = None) -> None:
        task = self.tasks[key]
        self._in_hand[key] = _InHand(task.label or key, task.kind, 0, task.steps)
        if pid is not None:
            self._by_pid[pid] = key
        self._draw()

    def handle(self, event: tuple) -> None:
        pid, what, *rest = event
        key = self._by_pid.get(pid)
        if what == "start":
            self.start(rest[0], pid)
        elif what == "line":
            self.write(rest[0])
        elif what == "steps" and key in self._in_hand:
            hand = self._in_hand[key]
            done, total = rest
            if total != hand.steps_total:  # not the task's planned training (an attack's fine-tuning)
                return
            if self._first_step_at is None and done:
                self._first_step_at = time.perf_counter()
            self._steps_run += max(done - hand.steps_done, 0)
            self._steps_left -= max(done - hand.steps_done, 0)
            hand.steps_done = done
            self._draw()

    def finish(self, key: str, seconds: float, line: str) -> None:
        hand = self._in_hand.pop(key, None)
        task = self.tasks[key]
        if hand is not None:
            self._steps_left -= max(task.steps - hand.steps_done, 0)
        if not task.steps:
            self._seconds_by_kind.setdefault(task.kind, []).append(seconds)
            self._left_by_kind[task.kind] -= 1
        self._by_pid = {p: k for p, k in self._by_pid.items() if k != key}
        self.write(line)
        self._bar.update()
        self._draw()

    def write(self, line: str) -> None:
        if self._bar.disable:
            self.log(line)
        else:
            self._bar.write(line, file=sys.stderr)

    def eta_seconds(self) -> tuple[float, bool] | None:
        """(seconds, complete): training still to run at the step rate so far, plus the other work at
        its mean time so far. ``complete`` is False while some kind of work has no measured time yet
        (the seconds are then a lower bound); None before the first training step is measured."""
        if self._steps_left > 0 and (self._first_step_at is None or self._steps_run == 0):
            return None
        seconds, complete = 0.0, True
        if self._steps_left > 0:
            rate = self._steps_run / max(time.perf_counter() - self._first_step_at, 1e-9)
            seconds += self._steps_left / rate
        for kind, left in self._left_by_kind.items():
            if left > 0:
                done = self._seconds_by_kind.get(kind)
                if done:
                    seconds += sum(done) / len(done) * left / self.workers
                else:
                    complete = False
        return seconds, complete

    def _draw(self) -> None:
        parts = [f"{h.label} {100 * h.steps_done // h.steps_total}%" if h.steps_total else h.label
                 for h in self._in_hand.values()]
        eta = self.eta_seconds()
        parts.append("ETA " + ("estimating" if eta is None else ("" if eta[1] else ">= ") + _minutes(eta[0])))
        self._bar.set_description_str(" | ".join(parts), refresh=True)

    def drain(self, events) -> None:
        """Handle every event waiting in ``events`` (a queue), without blocking."""
        while True:
            try:
                self.handle(events.get_nowait())
            except (queue_module.Empty, EOFError, OSError):
                return

    def close(self) -> None:
        self._bar.close()


def _minutes(seconds: float) -> str:
    """
    >>> _minutes(190.4), _minutes(42)
    ('3m10s', '42s')
    """
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
