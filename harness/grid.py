"""A grid is a cross product of runs, executed as a graph of shared, cached artifacts.

``run`` with one value per axis is a grid of one setting; ``run`` with
comma-separated values and ``harness grid CONFIG.yaml`` are bigger ones. Every
grid goes through the same plan, so there is one code path whether it runs in
this process or on a Dask cluster.

The plan, for each setting (model x dataset x preset x seed):

  null member k (one task each)  clean reference model
          \\                        |
           +--> mark (watermark x trigger): embed, key, calibrate on the nulls
                    |
                    +--> before (mark x explainer): scores before any attack
                                 |
  cells (attack x strength): every mark and explainer of the setting, one record per cell

Each task stores its product in the content-addressed cache (written
atomically, verified by hash when read), so a task that another task needs is
trained exactly once, a crash loses at most the task in flight, and a re-run
skips finished cells and recomputes only what is missing or failed. A task
never raises across the executor: it returns ``Done`` or ``Failed``, and cells
downstream of a failure are recorded with ``status=error`` and the reason.

Every stochastic step seeds itself from the cell, never from what ran before it
in the same process, so the order tasks run in, and the executor, cannot change
a number. (Torch's float reductions depend on its thread count, so executors
compare equal at the same ``threads``.)
"""

from __future__ import annotations

import itertools
import math
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness import tasks
from harness.calibration import DEFAULT_LEVEL
from harness.cell import CellSpec, Setting
from harness.errors import HarnessError
from harness.executors import EXECUTORS, Failed, Task, check_options, local_workers
from harness.io import check_writable
from harness.registry import look_up
from harness.verdicts import DEFAULT_DICE_BUDGET

DEFAULT_WATERMARKS = ("stealthmark", "badnets")
MAX_SEED = 10**9  # member k of the null population uses seed + 1 + k; numpy takes seeds below 2**32

# -- the grid file ----------------------------------------------------------------

AXES = ("watermarks", "models", "datasets", "attacks", "strengths", "seeds", "presets", "explainers", "triggers")
OPTIONS = ("results", "dice_budget", "null_seeds", "null_level", "data_dir", "dataset_options",
           "device", "threads", "force", "attacker_images", "same_data_innocents")


@dataclass
class Grid:
    """What to run: every axis is a list, crossed; options apply to every cell.

    >>> g = Grid(watermarks=["stealthmark", "badnets"], seeds=[0, 1])
    >>> len(g.settings()), g.attacks
    (2, ['prune'])
    """

    watermarks: list = field(default_factory=lambda: list(DEFAULT_WATERMARKS))
    models: list = field(default_factory=lambda: ["basic-unet"])
    datasets: list = field(default_factory=lambda: ["synthetic-polyp"])
    attacks: list = field(default_factory=lambda: ["prune"])
    strengths: list | None = None  # None: each attack's own sweep
    seeds: list = field(default_factory=lambda: [0])
    presets: list = field(default_factory=lambda: ["tiny"])
    explainers: list = field(default_factory=lambda: ["lime"])
    triggers: list = field(default_factory=lambda: [None])  # None: each watermark's own trigger
    results: str = "results"
    dice_budget: float = DEFAULT_DICE_BUDGET  # how verdicts are shown; never part of a record
    null_seeds: int | None = None  # K, the calibrating nulls of each suspect's architecture
    null_level: float = DEFAULT_LEVEL
    data_dir: str | dict | None = None  # a folder, or dataset -> folder
    dataset_options: dict = field(default_factory=dict)
    device: str = "cpu"
    threads: int | None = None  # torch threads per task; None leaves torch's default
    force: bool = False
    attacker_images: int | None = None  # the thief's image count (None: the preset's attacker split)
    same_data_innocents: int = 0  # innocents trained on the owner's own images, reported beside the nulls

    def settings(self) -> list["Setting"]:
        return [Setting(model, dataset, preset, int(seed), self.data_dir_of(dataset), self.options_of(dataset))
                for model, dataset, preset, seed in itertools.product(self.models, self.datasets, self.presets,
                                                                      self.seeds)]

    def data_dir_of(self, dataset: str) -> str | None:
        """``data_dir`` is one folder (for the grid's folder datasets) or a mapping dataset -> folder."""
        from harness.registry import DATASETS

        if isinstance(self.data_dir, dict):
            return self.data_dir.get(dataset)
        return self.data_dir if getattr(DATASETS.get(dataset), "needs_root", False) else None

    def options_of(self, dataset: str) -> tuple:
        """``dataset_options`` is one mapping for every dataset, or dataset -> mapping."""
        options = self.dataset_options
        if options and all(isinstance(v, dict) for v in options.values()):
            options = options.get(dataset, {})
        return tuple(sorted((str(k), v) for k, v in options.items()))


def _as_list(name: str, value) -> list:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    elif not isinstance(value, (list, tuple)):
        value = [value]
    if not value:
        raise HarnessError(f"grid axis {name!r} is empty")
    return list(value)


def grid_from_mapping(data: dict, source: str = "grid") -> Grid:
    """A ``Grid`` from plain data (a parsed YAML file); unknown keys name the closest valid one."""
    if not isinstance(data, dict):
        raise HarnessError(f"{source}: expected a mapping of grid axes and options, got {type(data).__name__}")
    valid = {**{a: a for a in AXES}, **{o: o for o in OPTIONS}}
    values = {}
    for key, value in data.items():
        if key == "null_models":
            raise HarnessError(f"{source}: null_models is gone: the nulls are always of the suspect's own "
                               "architecture (set their number with null_seeds)")
        look_up(str(key), valid, f"grid key in {source}; valid keys are axes and options. Grid key")
        if key in AXES:
            values[key] = None if (key == "strengths" and value is None) else _as_list(key, value)
        elif key == "dataset_options":
            if not isinstance(value, dict):
                raise HarnessError(f"{source}: dataset_options must be a mapping, got {value!r}")
            values[key] = {str(k): v for k, v in value.items()}
        elif key == "data_dir" and not isinstance(value, (str, dict, type(None))):
            raise HarnessError(f"{source}: data_dir must be a folder or a mapping dataset -> folder, got {value!r}")
        else:
            values[key] = value
    try:
        return Grid(**values)
    except TypeError as exc:
        raise HarnessError(f"{source}: {exc}") from None


def load_grid(path: str | Path) -> Grid:
    """Read a grid file: plain YAML data, parsed with ``yaml.safe_load`` (no tags, no code)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"grid file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise HarnessError(f"grid file {path} is not valid YAML data: {first}") from None
    return grid_from_mapping(data, source=str(path))


# -- the plan ---------------------------------------------------------------------


@dataclass
class Plan:
    tasks: dict[str, Task]  # in dependency order
    cells: list  # every requested CellSpec, in leaderboard order
    done: dict  # run_id -> RunRecord already finished (status ok)
    keys: dict  # name -> key path
    checkpoints: dict  # name -> checkpoint path

    @property
    def pending_cells(self) -> list:
        return [c for c in self.cells if c.run_id not in self.done]


def check_number(name: str, value, low: float, high: float, whole: bool = False, open_low: bool = False):
    """``value`` as a number within bounds, or a one-line error (booleans and strings are not numbers)."""
    kind = "a whole number" if whole else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (whole and not float(value).is_integer()) \
            or not math.isfinite(value):
        raise HarnessError(f"{name} must be {kind}, got {value!r}")
    if not (low < value if open_low else low <= value) or not value <= high:
        bounds = f"({low:g}, {high:g}]" if open_low else f"[{low:g}, {high:g}]"
        raise HarnessError(f"{name} must be in {bounds}, got {value!r}")
    return int(value) if whole else float(value)


def check_seed(seed) -> int:
    return check_number("seed", seed, 0, MAX_SEED, whole=True)


def validate(grid: Grid) -> tuple[list, list[str]]:
    """Check every name, number and option of the grid, before anything is trained or written.

    Returns the resolved (attack, strengths) pairs and explainer names."""
    from harness.data import is_finite, open_dataset
    from harness.nulls import population_spec
    from harness.presets import get_preset
    from harness.registry import DATASETS, MODELS, TRIGGERS, find_watermark, resolve_attacks, resolve_explainers

    for name, value in (("results", grid.results), ("device", grid.device)):
        if not isinstance(value, (str, Path)) or not str(value):
            raise HarnessError(f"{name} must be a non-empty text, got {value!r}")
    if not isinstance(grid.force, bool):
        raise HarnessError(f"force must be true or false, got {grid.force!r}")
    check_number("dice budget", grid.dice_budget, 0, 1)
    check_number("null level (false-accusation rate)", grid.null_level, 0, 0.5, open_low=True)
    if grid.null_level >= 0.5:
        raise HarnessError(f"null level (false-accusation rate) must be below 0.5, got {grid.null_level!r}")
    if grid.threads is not None:
        check_number("threads", grid.threads, 1, 1024, whole=True)
    if grid.null_seeds is not None:
        check_number("null seeds", grid.null_seeds, 1, 1000, whole=True)
    if grid.attacker_images is not None:
        from harness.data import EXTRA_ATTACKER_OFFSET, NULL_DATA_OFFSET

        check_number("attacker images", grid.attacker_images, 1, NULL_DATA_OFFSET - EXTRA_ATTACKER_OFFSET, whole=True)
    check_number("same-data innocents", grid.same_data_innocents, 0, 1000, whole=True)
    if grid.same_data_innocents == 1:
        raise HarnessError("same-data innocents: give 0 or at least 2 (each is judged against the others)")
    for name in ("watermarks", "explainers", "triggers", "models", "datasets", "presets", "seeds"):
        values = getattr(grid, name)
        if len(set(map(str, values))) != len(values):
            raise HarnessError(f"{name[:-1]} listed twice: {', '.join(map(str, values))}")
    for seed in grid.seeds:
        check_seed(seed)
    if grid.strengths is not None:
        for strength in grid.strengths:
            check_number("strength", strength, -math.inf, math.inf)
    for name in grid.watermarks:
        find_watermark(str(name))
    for trigger in grid.triggers:
        if trigger is not None:
            TRIGGERS.get(str(trigger))
    for name in grid.models:
        MODELS.get(str(name))
    for name in grid.datasets:
        DATASETS.get(str(name))
    for name in grid.presets:
        get_preset(str(name))
    folder_datasets = [d for d in grid.datasets if getattr(DATASETS.get(d), "needs_root", False)]
    if isinstance(grid.data_dir, str) and not folder_datasets:
        raise HarnessError(f"--data-dir is given, but {', '.join(grid.datasets)} {'is' if len(grid.datasets) == 1 else 'are'} "
                           f"generated, not read from a folder; folder datasets: "
                           f"{', '.join(d for d in DATASETS.names() if getattr(DATASETS.get(d), 'needs_root', False))}")
    if isinstance(grid.data_dir, dict):
        for dataset in grid.data_dir:
            if dataset not in folder_datasets:
                raise HarnessError(f"data_dir names {dataset!r}, which is not a folder dataset of this grid "
                                   f"(folder datasets here: {', '.join(folder_datasets) or 'none'})")
    explainers = resolve_explainers(",".join(map(str, grid.explainers)))
    attacks = resolve_attacks(",".join(map(str, grid.attacks)), grid.strengths)
    check_writable(grid.results)
    for setting in grid.settings():
        population_spec(setting.preset, setting.model, grid.null_seeds)
        dataset = open_dataset(setting.dataset, get_preset(setting.preset).image_size, setting.data_dir,
                               dict(setting.dataset_options))
        if is_finite(dataset):
            splits = tasks.splits_of(setting)  # reads every file now: a bad mask fails here, before any training
            if grid.attacker_images is not None and grid.attacker_images > len(splits.attacker):
                raise HarnessError(f"--attacker-images {grid.attacker_images}: dataset {setting.dataset!r} gives the "
                                   f"thief {len(splits.attacker)} images at preset {setting.preset!r}; a folder "
                                   "dataset has no more to draw")
    return attacks, explainers


def plan(grid: Grid, ctx: tasks.Context) -> Plan:
    """Validate everything, then the minimal task graph that finishes the grid's pending cells."""
    from harness.nulls import members, population_spec
    from harness.presets import get_preset
    from harness.records import load_records
    from harness.training import planned_steps

    attacks, explainers = validate(grid)
    results = Path(ctx.results)
    finished = {} if grid.force else {r.run_id: r for r in load_records(results) if r.status == "ok"}
    all_tasks: dict[str, Task] = {}
    cells, keys, checkpoints = [], {}, {}
    settings = grid.settings()
    for setting in settings:
        spec = population_spec(setting.preset, setting.model, grid.null_seeds)
        # What the progress bar says; a model's planned steps give the ETA its rate.
        where = f" ({setting.label})" if len(settings) > 1 else ""
        steps = planned_steps(get_preset(setting.preset))
        null_keys, population = [], members(spec, setting.seed)
        for k, member in enumerate(population, start=1):
            key = f"null:{setting.label}:{member.name}"
            null_keys.append(key)
            all_tasks.setdefault(key, Task(key, "null", (), tasks.train_null_member, (setting, member),
                                           label=f"null {k}/{len(population)} {member.model}{where}", steps=steps))
        same_keys = []
        for member in tasks.same_data_population(ctx, setting):
            key = f"same-data:{setting.label}:{member.name}"
            same_keys.append(key)
            all_tasks.setdefault(key, Task(key, "null", (), tasks.train_same_data_member, (setting, member),
                                           label=f"same-data innocent {member.model}{where}", steps=steps))
        clean_key = f"clean:{setting.label}"
        all_tasks[clean_key] = Task(clean_key, "clean", (), tasks.train_clean_reference, (setting,),
                                    label=f"clean {setting.model}{where}", steps=steps)
        marks = [tasks.Mark(setting, w, t) for t, w in itertools.product(grid.triggers, grid.watermarks)]
        mark_cells = {m: tasks.cells_of(m, attacks, explainers, ctx) for m in marks}
        single = len(settings) * len(grid.triggers) == 1  # then files are named by watermark alone
        for mark in marks:
            cells += mark_cells[mark]
            keys[mark.watermark if single else mark.stem] = results / "keys" / f"{mark.stem}.npz"
            checkpoints[mark.watermark if single else mark.stem] = results / "checkpoints" / f"{mark.stem}.pt"
        if len(settings) == 1:
            checkpoints["null"] = results / "checkpoints" / f"null-{setting.preset}-{tasks.first_null(ctx, setting)}.pt"
        pending_marks = [m for m in marks if any(c.run_id not in finished for c in mark_cells[m])
                         or not (results / "keys" / f"{m.stem}.npz").is_file()]
        for mark in pending_marks:
            mark_key = f"mark:{mark.stem}"
            # A fingerprint's model is the clean reference: it waits for it rather than train it twice.
            mark_deps = tuple(null_keys) + (() if mark.build().modifies_model else (clean_key,))
            all_tasks[mark_key] = Task(mark_key, "mark", mark_deps, tasks.embed_mark, (mark, tuple(null_keys)),
                                       label=f"embed {mark.watermark} {setting.model}{where}", steps=steps)
            for explainer in explainers:
                before_key = f"before:{mark.stem}:{explainer}"
                all_tasks[before_key] = Task(before_key, "before", (mark_key, clean_key, *null_keys, *same_keys),
                                             tasks.scores_before, (mark, explainer),
                                             label=f"before {mark.watermark} {explainer}{where}")
        for attack_obj, sweep in attacks:
            for strength in sweep:
                group = [(m, c) for m in marks for c in mark_cells[m]
                         if c.attack == attack_obj.label and c.strength == strength]
                todo = tuple(c for _, c in group if c.run_id not in finished)
                if not todo:
                    continue
                todo_marks = tuple(m for m in marks if any(c in todo for c in mark_cells[m]))
                key = f"cells:{setting.label}:{attack_obj.label}:{strength:g}"
                deps = [clean_key, *null_keys, *same_keys]
                for m in todo_marks:
                    deps += [f"mark:{m.stem}", *(f"before:{m.stem}:{e}" for e in explainers)]
                all_tasks[key] = Task(key, "cells", tuple(deps), tasks.attack_cells,
                                      (setting, todo_marks, attack_obj.label, strength, todo), cells=todo,
                                      label=f"{attack_obj.label} {strength:g}{where}")
    needed = _needed(all_tasks)
    ordered = {k: all_tasks[k] for k in _topological(all_tasks) if k in needed}
    gpu = ctx.device != "cpu"
    for task in ordered.values():
        task.gpu = gpu
    done = {c.run_id: finished[c.run_id] for c in cells if c.run_id in finished}
    return Plan(ordered, cells, done, keys, checkpoints)


def _needed(all_tasks: dict[str, Task]) -> set[str]:
    """Tasks reachable from the cells tasks, plus marks (their key file is a product in itself)."""
    roots = [k for k, t in all_tasks.items() if t.kind in ("cells", "mark")]
    needed, stack = set(), list(roots)
    while stack:
        key = stack.pop()
        if key not in needed:
            needed.add(key)
            stack += all_tasks[key].deps
    return needed


def _topological(all_tasks: dict[str, Task]) -> list[str]:
    order, seen = [], set()

    def visit(key):
        if key in seen:
            return
        seen.add(key)
        for dep in all_tasks[key].deps:
            visit(dep)
        order.append(key)

    for key in all_tasks:
        visit(key)
    return order


# -- running it -------------------------------------------------------------------


@dataclass
class GridOutcome:
    records: list  # RunRecord of every requested cell, in leaderboard order
    keys: dict
    checkpoints: dict
    leaderboard: Path
    failed: list  # RunRecords with status "error"
    tasks_run: int = 0
    dice_budget: float = DEFAULT_DICE_BUDGET  # the budget the verdicts are shown with


def run_grid(grid: Grid, executor: str = "local", workers: int | None = None, scheduler: str | None = None,
             log=print) -> GridOutcome:
    """Plan the grid, run its pending tasks on ``executor``, write the leaderboard; see module docstring."""
    from harness.device import resolve_device
    from harness.leaderboard import write_leaderboard
    from harness.records import load_records

    execute = look_up(executor, EXECUTORS, "executor")
    check_options(executor, workers, scheduler)
    device = resolve_device(grid.device) if isinstance(grid.device, str) else grid.device
    ctx = tasks.Context(results=str(grid.results), device=device, threads=grid.threads, null_seeds=grid.null_seeds,
                        null_level=grid.null_level, attacker_images=grid.attacker_images,
                        same_data_innocents=grid.same_data_innocents, explainers=tuple(validate(grid)[1]),
                        command=" ".join(sys.argv))
    the_plan = plan(grid, ctx)
    total, pending = len(the_plan.cells), len(the_plan.pending_cells)
    if pending < total:
        log(f"{total - pending} of {total} cells already recorded (use --force to recompute)")
    if the_plan.tasks:
        log(f"{len(the_plan.tasks)} tasks for {pending} cells on the {executor} executor"
            + (f" ({local_workers(workers, device != 'cpu')} worker processes)" if executor == "local" else ""))
        results = execute(the_plan.tasks, ctx, workers=workers, scheduler=scheduler, log=log)
        for key, result in results.items():
            task = the_plan.tasks[key]
            if task.kind == "cells" and isinstance(result, Failed):
                # The task died before recording its cells (e.g. its worker was killed).
                tasks.record_failures(ctx, task.cells, result.message, skip_existing=True)
    by_id = {r.run_id: r for r in load_records(ctx.results)}
    records = [by_id[c.run_id] for c in the_plan.cells if c.run_id in by_id]
    failed = [r for r in records if r.status != "ok"]
    board, _ = write_leaderboard(ctx.results, grid.dice_budget)
    return GridOutcome(records, the_plan.keys, the_plan.checkpoints, board, failed, len(the_plan.tasks),
                       grid.dice_budget)


def with_overrides(grid: Grid, **changes) -> Grid:
    return replace(grid, **{k: v for k, v in changes.items() if v is not None})

