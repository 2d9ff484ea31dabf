"""``benchmark()``: the importable entry point behind ``python -m harness run``.

One cell = (watermark, model, dataset, attack, strength, seed, preset, explainer).
Its data flow, top to bottom:

  data splits (owner-train | owner-verify | attacker | test), disjoint, seeded
  -> clean reference model (same data, seed, recipe; no mark)    [cached]
  -> null population (seed+1+k, images nobody else saw)           [cached]
  -> watermarked model + owner's key, calibrated on the nulls     [cached]
  -> scores before any attack (``harness.measure.scores_before``)
  -> for each strength: attacked model -> ``measure.scores_after`` -> RunRecord (JSON)
  -> leaderboard CSV rebuilt from every record; verdicts derived there (``harness.verdicts``)

``benchmark`` states a grid of one setting (or a few, from comma-separated
values) and hands it to ``harness.grid``, which validates every name and number
before anything is trained or written, and runs the steps above as cached tasks
(``harness.tasks``) on an executor (``harness.executors``).
"""

from __future__ import annotations

from pathlib import Path

from harness.calibration import DEFAULT_LEVEL
from harness.errors import HarnessError
from harness.grid import DEFAULT_WATERMARKS, Grid, GridOutcome, run_grid
from harness.verdicts import DEFAULT_DICE_BUDGET


def _axis(value, name: str, number: bool = False) -> list:
    if value is None:
        return [None]
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()] or [value]
    elif not isinstance(value, (list, tuple)):
        value = [value]
    if not number:
        return list(value)
    try:
        return [int(v) if isinstance(v, str) else v for v in value]
    except ValueError:
        raise HarnessError(f"{name} must be whole numbers, got {value!r}") from None


def benchmark(
    watermarks=DEFAULT_WATERMARKS,
    model: str = "basic-unet",
    dataset: str = "synthetic-polyp",
    attack: str = "prune",
    strengths=None,
    seed: int = 0,
    preset: str = "tiny",
    explainer: str = "lime",
    trigger: str | None = None,
    results: str | Path = "results",
    dice_budget: float = DEFAULT_DICE_BUDGET,
    force: bool = False,
    null_seeds: int | None = None,
    null_level: float = DEFAULT_LEVEL,
    data_dir: str | None = None,
    dataset_options: dict | None = None,
    device: str = "cpu",
    threads: int | None = None,
    executor: str = "local",
    workers: int | None = None,
    scheduler: str | None = None,
    attacker_images: int | None = None,
    same_data_innocents: int = 0,
    log=print,
) -> GridOutcome:
    """Embed each watermark, attack it at each strength, verify before/after against null models.

    ``model``, ``dataset``, ``seed``, ``preset`` and ``trigger`` take one value
    or a comma-separated list (a grid: every combination); ``attack`` and
    ``explainer`` a name, a comma-separated list or ``all``. ``trigger``
    overrides every watermark's default trigger family (e.g. "text").
    ``data_dir`` is the downloaded folder of a folder dataset (``kvasir``, ...)
    and ``dataset_options`` its options (e.g. ``{"target": "cup"}``). Each
    explainer gets its own cells (the attacked models are shared between them).
    Every verdict is calibrated against a population of clean models of the
    suspect's architecture (``harness.nulls``: the preset's number, or
    ``null_seeds``), after an attack against those nulls under the same attack,
    at false-accusation level ``null_level``. ``attacker_images`` gives the thief that
    many images of their own (default: the preset's attacker split). ``same_data_innocents``
    adds that many innocent models trained on the owner's own training images, the hard negative
    of a fingerprint: every verdict and false-accusation share is then also reported with them
    in the population (``harness.measure``). ``dice_budget``
    only decides how verdicts are shown (``harness.verdicts``): records keep
    the evidence, so another budget never needs a re-run.
    Cells whose record already exists (same spec, same versions) are not
    recomputed unless ``force``; cells that failed are retried. Returns the
    records of every requested cell; failed cells carry ``status="error"``.


    """
    grid = Grid(watermarks=_axis(watermarks, "watermarks"), models=_axis(model, "model"),
                datasets=_axis(dataset, "dataset"), attacks=[attack],
                strengths=None if strengths is None else list(strengths), seeds=_axis(seed, "seed", number=True),
                presets=_axis(preset, "preset"), explainers=[explainer], triggers=_axis(trigger, "trigger"),
                results=str(results), dice_budget=dice_budget, null_seeds=null_seeds, null_level=null_level,
                data_dir=data_dir, dataset_options=dict(dataset_options or {}), device=device, threads=threads,
                force=force, attacker_images=attacker_images, same_data_innocents=same_data_innocents)
    return run_grid(grid, executor=executor, workers=workers, scheduler=scheduler, log=log)
