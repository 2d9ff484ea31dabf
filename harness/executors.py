"""Where a grid's tasks run, on this machine's cores or on a Dask distributed cluster, and the task runtime.

A ``Task`` is one node of a plan: ``run(ctx, *args, deps)``. ``guarded`` runs
it and turns any exception into ``Failed`` with a one-line reason, so a task
never takes the grid down. Both executors run the same tasks and return
``{task key: Done | Failed}``; only the scheduling differs. Tasks exchange
nothing but small values (the before-attack scores, counts): models travel
through the content-addressed cache on a shared filesystem. ``ctx`` is opaque
here, except for its ``threads``.

Every task runs with ``ctx.threads`` torch threads (default 1), wherever it
runs: float reductions depend on the thread count, so a fixed count makes the
numbers independent of the executor, the number of workers and the machine's
cores. The local executor fills the cores with that many single-threaded
processes instead: on two cores, two one-thread trainings do 1.3x the images/s
of one two-thread training (``harness bench train``).
"""

from __future__ import annotations

import os
import signal
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from harness import progress
from harness.errors import HarnessError
from harness.training import DEFAULT_THREADS  # torch threads per task; see the module docstring


@dataclass
class Done:
    key: str
    value: object = None
    seconds: float = 0.0


@dataclass
class Failed:
    key: str
    message: str


@dataclass
class Task:
    """One node of the plan: ``run(ctx, *args, deps)`` returns what it made; ``deps`` maps key -> result."""

    key: str
    kind: str  # null | clean | mark | before | cells
    deps: tuple[str, ...]
    run: Callable
    args: tuple
    cells: tuple = ()  # CellSpecs this task records (cells tasks only)
    gpu: bool = False
    label: str = ""  # what a person reads on the progress bar, e.g. "null 3/10 basic-unet"
    steps: int = 0  # planned training steps (0: the task trains nothing it can count up front)


def upstream_failure(key: str, results) -> Failed | None:
    """``Failed`` for ``key`` naming the first failed input (never nesting "upstream ... failed"), else None."""
    failed = [r for r in results if isinstance(r, Failed)]
    if not failed:
        return None
    first = failed[0]
    return Failed(key, first.message if first.message.startswith("upstream") else
                  f"upstream {first.key} failed: {first.message}")


def failure_reason(exc: Exception) -> str:
    """One line for a record: an input error's own message, else the exception and where it was raised."""
    if isinstance(exc, HarnessError):
        return str(exc)
    where = traceback.extract_tb(exc.__traceback__)[-1]
    return f"{type(exc).__name__}: {exc} (at {Path(where.filename).name}:{where.lineno})"


def guarded(task: Task, ctx, *dep_results):
    """Run a task; any exception becomes ``Failed`` (with its one-line reason), never a crash.

    A cells task runs even when an input failed: it records its cells as failed, with the reason."""
    failed = upstream_failure(task.key, dep_results)
    if failed is not None and task.kind != "cells":
        return failed
    threads = torch.get_num_threads()
    # For this task only: the caller's process keeps its own setting.
    torch.set_num_threads(int(ctx.threads or DEFAULT_THREADS))
    tic = time.perf_counter()
    try:
        value = task.run(ctx, *task.args, dict(zip(task.deps, dep_results)))
    except Exception as exc:  # a bug in a plugin too: keep the grid going, keep the evidence
        return Failed(task.key, failure_reason(exc))
    finally:
        torch.set_num_threads(threads)
    return Done(task.key, value, time.perf_counter() - tic)


def _finished_line(finished: int, total: int, result, started: float) -> str:
    status = "done" if isinstance(result, Done) else f"FAILED: {result.message}"
    return f"[{finished}/{total}] {result.key} {status} ({time.perf_counter() - started:.0f} s elapsed)"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def local_workers(workers: int | None, gpu: bool) -> int:
    """Processes for the local executor: as asked, else one per core (one in all on a GPU, which they would share)."""
    if workers is not None:
        return workers
    return 1 if gpu else usable_cores()


def check_options(executor: str, workers: int | None, scheduler: str | None) -> None:
    """Executor options that cannot work, refused before any task runs."""
    if executor == "local" and scheduler is not None:
        raise HarnessError("--scheduler needs --executor dask")
    if workers is not None and scheduler is not None:
        raise HarnessError("give either --workers (start a local cluster) or --scheduler (use one), not both")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise HarnessError(f"--workers must be a whole number >= 1, got {workers!r}")


def run_local(tasks: dict[str, Task], ctx, workers: int | None = None, scheduler: str | None = None,
              log=print) -> dict:
    """On this machine: ``workers`` processes (default: one per core), or in this process when that is 1.

    A task starts as soon as its inputs are done; among ready tasks, plan order
    (``tasks`` is ordered so) decides.
    """
    check_options("local", workers, scheduler)
    count = min(local_workers(workers, any(t.gpu for t in tasks.values())), max(len(tasks), 1))
    bar = progress.GridProgress(tasks, workers=count, log=log)
    try:
        if count == 1:
            return _in_this_process(tasks, ctx, bar)
        return _in_worker_processes(tasks, ctx, count, bar)
    finally:
        bar.close()


def _in_this_process(tasks: dict[str, Task], ctx, bar: progress.GridProgress) -> dict:
    results, started = {}, time.perf_counter()
    for n, (key, task) in enumerate(tasks.items(), start=1):
        bar.start(key)
        results[key] = guarded(task, ctx, *(results[d] for d in task.deps))
        bar.finish(key, _seconds(results[key]), _finished_line(n, len(tasks), results[key], started))
    return results


def _seconds(result) -> float:
    return result.seconds if isinstance(result, Done) else 0.0


def _in_worker_processes(tasks: dict[str, Task], ctx, count: int, bar: progress.GridProgress) -> dict:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    # spawn, not fork: a forked torch (OpenMP threads, locks held mid-operation) can hang.
    context = multiprocessing.get_context("spawn")
    events = context.Queue()
    results, running, started = {}, {}, time.perf_counter()
    waiting = dict(tasks)
    with ProcessPoolExecutor(count, mp_context=context, initializer=_worker_started, initargs=(events,)) as pool:
        while waiting or running:
            for key in [k for k, t in waiting.items() if all(d in results for d in t.deps)]:
                task = waiting.pop(key)
                try:
                    running[pool.submit(_run_in_worker, task, ctx, *(results[d] for d in task.deps))] = key
                except BrokenProcessPool as exc:  # a worker died earlier: nothing more can run here
                    results[key] = Failed(key, f"worker lost: {type(exc).__name__}: {exc}")
                    bar.finish(key, 0.0, _finished_line(len(results), len(tasks), results[key], started))
            done, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
            bar.drain(events)
            for future in done:
                key = running.pop(future)
                try:
                    results[key] = future.result()
                except Exception as exc:  # the worker died (killed, out of memory): the task left no result
                    results[key] = Failed(key, f"worker lost: {type(exc).__name__}: {exc}")
                bar.finish(key, _seconds(results[key]), _finished_line(len(results), len(tasks), results[key],
                                                                       started))
    bar.drain(events)
    events.close()
    return results


def _worker_started(events) -> None:
    """In each worker: die with the parent (a killed run leaves no orphan training), report through ``events``."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux: orphans finish their task and exit
        pass
    progress.connect(events)


def _run_in_worker(task: Task, ctx, *dep_results):
    progress.task_started(task.key)
    return guarded(task, ctx, *dep_results)


def run_dask(tasks: dict[str, Task], ctx, workers: int | None = None, scheduler: str | None = None,
             log=print) -> dict:
    """On Dask: a local cluster of ``workers`` single-threaded processes, or the cluster at ``scheduler``.

    Every task is submitted at once with its dependencies as futures; Dask starts
    a task when its inputs exist, so an artifact is trained by exactly one
    worker and every cell that needs it waits for it. Tasks on a CUDA device
    ask for the worker resource ``GPU`` (start workers with ``--resources GPU=1``).
    """
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:  # pragma: no cover - dask[distributed] is a dependency
        raise HarnessError("the dask executor needs dask[distributed]: pip install 'dask[distributed]'") from None
    check_options("dask", workers, scheduler)
    gpu = any(t.gpu for t in tasks.values())
    cluster = None
    try:
        if scheduler is not None:
            try:
                client = Client(scheduler, timeout="20s")
            except (OSError, TimeoutError) as exc:
                raise HarnessError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        else:
            # One thread per worker process: torch's own threads would otherwise compete for the cores.
            cluster = LocalCluster(n_workers=workers or 2, threads_per_worker=1, processes=True,
                                   dashboard_address=None, resources={"GPU": 1} if gpu else None,
                                   silence_logs=40)
            client = Client(cluster)
        results, started = {}, time.perf_counter()
        bar = progress.GridProgress(tasks, workers=workers or len(client.scheduler_info().get("workers", {})) or 1,
                                    log=log)
        with client:
            futures = {}
            for key, task in tasks.items():
                futures[key] = client.submit(guarded, task, ctx, *(futures[d] for d in task.deps), key=_dask_key(key),
                                             pure=False, resources={"GPU": 1} if task.gpu else None)
            by_future = {f.key: k for k, f in futures.items()}
            for n, future in enumerate(as_completed(list(futures.values())), start=1):
                key = by_future[future.key]
                try:
                    results[key] = future.result()
                except Exception as exc:  # the worker died (killed, out of memory): the task left no result
                    results[key] = Failed(key, f"worker lost: {type(exc).__name__}: {exc}")
                bar.finish(key, _seconds(results[key]), _finished_line(n, len(futures), results[key], started))
        bar.close()
        return results
    finally:
        if cluster is not None:
            cluster.close()


def _dask_key(key: str) -> str:
    # Dask keys name tasks on the dashboard; ours are unique and readable already.
    return key.replace(" ", "_")


EXECUTORS = {"local": run_local, "dask": run_dask}
