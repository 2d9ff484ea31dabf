"""Where a grid's tasks run: in this process, or on a Dask distributed cluster.

Both executors run the same task functions on the same plan and return
``{task key: Done | Failed}``; only the scheduling differs. Tasks exchange
nothing but small values (the before-attack scores, counts): models travel
through the content-addressed cache on a shared filesystem.
"""

from __future__ import annotations

import time

from harness.errors import HarnessError
from harness.grid import Context, Done, Failed, Plan, guarded


def _progress(log, finished: int, total: int, result, started: float) -> None:
    status = "done" if isinstance(result, Done) else f"FAILED: {result.message}"
    log(f"[{finished}/{total}] {result.key} {status} ({time.perf_counter() - started:.0f} s elapsed)")


def run_local(plan: Plan, ctx: Context, workers: int | None = None, scheduler: str | None = None, log=print) -> dict:
    """In process, in dependency order."""
    if workers not in (None, 1) or scheduler is not None:
        raise HarnessError("--workers and --scheduler need --executor dask")
    results, started = {}, time.perf_counter()
    for n, (key, task) in enumerate(plan.tasks.items(), start=1):
        results[key] = guarded(task, ctx, *(results[d] for d in task.deps))
        _progress(log, n, len(plan.tasks), results[key], started)
    return results


def run_dask(plan: Plan, ctx: Context, workers: int | None = None, scheduler: str | None = None, log=print) -> dict:
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
    if workers is not None and scheduler is not None:
        raise HarnessError("give either --workers (start a local cluster) or --scheduler (use one), not both")
    if workers is not None and workers < 1:
        raise HarnessError(f"--workers must be >= 1, got {workers}")
    gpu = any(t.gpu for t in plan.tasks.values())
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
            for key, task in plan.tasks.items():
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
