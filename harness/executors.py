"""Where a grid's tasks run, in this process or on a Dask distributed cluster, and the task runtime.

A ``Task`` is one node of a plan: ``run(ctx, *args, deps)``. ``guarded`` runs
it and turns any exception into ``Failed`` with a one-line reason, so a task
never takes the grid down. Both executors run the same tasks and return
``{task key: Done | Failed}``; only the scheduling differs. Tasks exchange
nothing but small values (the before-attack scores, counts): models travel
through the content-addressed cache on a shared filesystem. ``ctx`` is opaque
here, except for its ``threads``.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from harness.errors import HarnessError


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
    if ctx.threads:  # for this task only: the caller's process keeps its own setting
        torch.set_num_threads(int(ctx.threads))
    tic = time.perf_counter()
    try:
        value = task.run(ctx, *task.args, dict(zip(task.deps, dep_results)))
    except Exception as exc:  # a bug in a plugin too: keep the grid going, keep the evidence
        return Failed(task.key, failure_reason(exc))
    finally:
        torch.set_num_threads(threads)
    return Done(task.key, value, time.perf_counter() - tic)


def _progress(log, finished: int, total: int, result, started: float) -> None:
    status = "done" if isinstance(result, Done) else f"FAILED: {result.message}"
    log(f"[{finished}/{total}] {result.key} {status} ({time.perf_counter() - started:.0f} s elapsed)")


def check_options(executor: str, workers: int | None, scheduler: str | None) -> None:
    """Executor options that cannot work, refused before any task runs."""
    if executor == "local" and (workers not in (None, 1) or scheduler is not None):
        raise HarnessError("--workers and --scheduler need --executor dask")
    if workers is not None and scheduler is not None:
        raise HarnessError("give either --workers (start a local cluster) or --scheduler (use one), not both")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise HarnessError(f"--workers must be a whole number >= 1, got {workers!r}")


def run_local(tasks: dict[str, Task], ctx, workers: int | None = None, scheduler: str | None = None,
              log=print) -> dict:
    """In process, in dependency order (``tasks`` is ordered so)."""
    check_options("local", workers, scheduler)
    results, started = {}, time.perf_counter()
    for n, (key, task) in enumerate(tasks.items(), start=1):
        results[key] = guarded(task, ctx, *(results[d] for d in task.deps))
        _progress(log, n, len(tasks), results[key], started)
    return results


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
                _progress(log, n, len(futures), results[key], started)
        return results
    finally:
        if cluster is not None:
            cluster.close()


def _dask_key(key: str) -> str:
    # Dask keys name tasks on the dashboard; ours are unique and readable already.
    return key.replace(" ", "_")


EXECUTORS = {"local": run_local, "dask": run_dask}
