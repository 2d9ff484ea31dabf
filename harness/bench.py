"""How much an explainer costs on top of the model's own forward passes.

An attribution with N perturbations cannot be cheaper than N forward passes of
the model. ``bench_explainers`` times each explainer on one image of the
preset's size against that floor: N images sent through the same
``ModelForward`` in batches of ``batch_size``. Their ratio is the explainer's
overhead (goal: at most 1.2 for a perturbation explainer); a loop of one
image per forward shows what batching saves.

Columns of a row (``format_table``):

* ``images``: images the explainer had the model evaluate (occlusion: P + 1,
  whatever N is; kernel SHAP: N + 2).
* ``explain_s``: time of ``attribute``, after a warm-up call (imports, JIT,
  allocator) with a few samples. Every time is this process's CPU time on a
  CPU device (a competing process stretches wall time, not the work; see
  ``_timed``), wall time on a GPU. ``explain_wall_s``: its wall time.
* ``floor_s``: N images in batches of ``batch_size``, measured just before the
  explainer and after each of its runs; the smallest (a conservative ratio when
  other processes load the machine). With ``repeats`` > 1 the fastest run counts.
* ``ratio``: explain_s / floor_s. ``ratio_per_image``: the same per image the
  explainer forwarded (differs from ``ratio`` only where images != N).
* ``one_by_one_s``: N forwards of one image each (the loop batching replaces).
* ``goal``: ratio_per_image <= 1.2 ("yes"/"no"); white-box explainers run a
  backward pass per step, so they get "white-box" instead of a verdict.

Untrained weights are fine: the cost of a forward does not depend on them.
"""

from __future__ import annotations

import functools
import sys
import time
import warnings
from dataclasses import dataclass
from typing import TextIO

import numpy as np
import torch

from harness.device import resolve_device
from harness.errors import HarnessError
from harness.explainer import ModelForward, perturbed_images
from harness.feature_masks import grid
from harness.presets import get_preset
from harness.registry import EXPLAINERS

GOAL_RATIO = 1.2
WARMUP_SAMPLES = 16
DEFAULT_GRID = 8  # 64 patches: 6x6-pixel patches at the tiny preset's 48 px


class _CountingForward:
    """Counts the images the model evaluates, through the black-box and (if present) the torch path."""

    def __init__(self, forward: ModelForward):
        self._forward = forward
        self.images = 0

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.images += len(batch)
        return self._forward(batch)

    def torch(self, images: torch.Tensor) -> torch.Tensor:
        self.images += len(images)
        return self._forward.torch(images)


def warm_up(scene: BenchScene, explainer, seed: int = 0) -> None:
    """One small explanation first, so imports, JIT and allocations are not timed."""
    with warnings.catch_warnings():  # a few samples over many patches: an underdetermined fit, said loudly
        warnings.simplefilter("ignore")
        scene.explain(explainer, min(WARMUP_SAMPLES, len(scene.floor_images)), seed)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device) -> tuple[float, float]:
    """(seconds on the bench's clock, wall seconds) of ``fn()``.

    The clock is this process's CPU time on a CPU device: another process
    competing for the cores stretches wall time at random but not the work
    done, so ratios stay meaningful on a shared machine. On a GPU, where the
    work is not CPU time, it is wall time (after synchronising).
    """
    _sync(device)
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    _sync(device)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return (cpu if device.type == "cpu" else wall), wall


@dataclass
class BenchScene:
    """What every timing shares: the model, one image, its feature mask and the forward."""

    model: torch.nn.Module
    image: np.ndarray  # (H, W, 3) float32
    mask: np.ndarray  # (H, W) int64 feature ids
    forward: ModelForward
    floor_images: np.ndarray  # (N, H, W, 3): perturbed images, built beforehand
    batch_size: int
    device: torch.device

    def floor(self) -> None:
        """Forward every floor image, ``batch_size`` per call: the cost no explainer can go under."""
        for i in range(0, len(self.floor_images), self.batch_size):
            self.forward(self.floor_images[i : i + self.batch_size])

    def one_by_one(self) -> None:
        """Forward every floor image alone: what batching saves."""
        for i in range(len(self.floor_images)):
            self.forward(self.floor_images[i : i + 1])

    def explain(self, explainer, n_samples: int, seed: int = 0, forward=None) -> np.ndarray:
        return explainer.attribute(forward or self.forward, self.image, self.mask, n_samples=n_samples,
                                   batch_size=self.batch_size, seed=seed)


def bench_scene(model_name: str = "basic-unet", preset: str = "tiny", n_samples: int = 1000, batch_size: int = 64,
                seed: int = 0, device: str = "cpu", grid_size: int = DEFAULT_GRID) -> BenchScene:
    """The model (``build_model(model_name, preset)``, seeded random weights), seeded noise of the
    preset's image size, a ``grid_size`` x ``grid_size`` grid and a background-mean
    ``ModelForward.for_image``; ``n_samples`` random on/off perturbations for the floor."""
    from harness.segmenter import build_model

    if n_samples < 2:
        raise HarnessError(f"--samples must be at least 2, got {n_samples}")
    if batch_size < 1:
        raise HarnessError(f"--batch-size must be at least 1, got {batch_size}")
    device = torch.device(resolve_device(device))
    side = get_preset(preset).image_size
    torch.manual_seed(seed)
    model = build_model(model_name, preset).to(device).eval()
    image = np.random.default_rng(seed).random((side, side, 3), dtype=np.float32)
    mask = grid(side, side, grid_size)
    forward = ModelForward.for_image(model, image, "background-mean", batch_size=batch_size, device=device)
    keep = np.random.default_rng(seed + 1).integers(0, 2, (n_samples, mask.max() + 1)).astype(bool)
    floor_images = perturbed_images(image, mask, keep)
    return BenchScene(model, image, mask, forward, floor_images, batch_size, device)


def bench_explainers(
    model_name: str = "basic-unet",
    preset: str = "tiny",
    n_samples: int = 1000,
    batch_size: int = 64,
    explainers: list[str] | None = None,
    seed: int = 0,
    device: str = "cpu",
    grid_size: int = DEFAULT_GRID,
    repeats: int = 1,
) -> list[dict]:
    """One row (dict, see the module docstring) per explainer: its time against the forward floor.

    ``explainers``: registered names (default: all). The scene is ``bench_scene``'s. ``repeats``:
    runs per explainer, the fastest counts (and a floor after each run).
    """
    if repeats < 1:
        raise HarnessError(f"--repeats must be at least 1, got {repeats}")
    names = list(explainers) if explainers else EXPLAINERS.names()
    classes = {name: EXPLAINERS.get(name) for name in names}  # unknown names fail here, before any work
    scene = bench_scene(model_name, preset, n_samples, batch_size, seed, device, grid_size)
    device, mask = scene.device, scene.mask

    scene.floor()  # warm-up: first calls allocate and pick kernels
    one_by_one_s = _timed(scene.one_by_one, device)[0]
    floors = [_timed(scene.floor, device)[0]]

    rows = []
    for name, cls in classes.items():
        explainer = cls()
        warm_up(scene, explainer, seed)
        timings, first_floor = [], len(floors) - 1
        for _ in range(repeats):
            counting = _CountingForward(scene.forward)
            timings.append(_timed(functools.partial(scene.explain, explainer, n_samples, seed, forward=counting),
                                  device))
            floors.append(_timed(scene.floor, device)[0])
        explain_s, explain_wall_s = min(timings)
        # The floors measured around this explainer's runs: the smallest, so load from other
        # processes cannot flatter the ratio.
        floor_s = min(floors[first_floor:])
        rows.append({
            "explainer": name, "white_box": bool(explainer.white_box), "images": counting.images,
            "explain_s": explain_s, "explain_wall_s": explain_wall_s, "floor_s": floor_s,
            "ratio": explain_s / floor_s,
            "ratio_per_image": (explain_s / max(counting.images, 1)) / (floor_s / n_samples),
            "one_by_one_s": one_by_one_s,
        })
    for row in rows:
        row["goal"] = "white-box" if row["white_box"] else ("yes" if row["ratio_per_image"] <= GOAL_RATIO else "no")
        row.update(model=model_name, preset=preset, n_samples=n_samples, batch_size=batch_size,
                   features=int(mask.max()) + 1, device=str(device),
                   clock="process CPU time" if device.type == "cpu" else "wall time")
    return rows


_COLUMNS = (
    ("explainer", "explainer", "{}"),
    ("white_box", "box", None),
    ("images", "images", "{}"),
    ("explain_s", "explain s", "{:.2f}"),
    ("explain_wall_s", "(wall)", "{:.2f}"),
    ("floor_s", "floor s", "{:.2f}"),
    ("ratio", "ratio", "{:.2f}"),
    ("ratio_per_image", "ratio/image", "{:.2f}"),
    ("one_by_one_s", "1-by-1 s", "{:.2f}"),
    ("goal", f"<= {GOAL_RATIO}", "{}"),
)


def format_table(rows: list[dict]) -> str:
    """A plain-text table of ``bench_explainers`` rows, with a line saying what was measured."""
    if not rows:
        return "(no explainers)"
    cells = [[head for _, head, _ in _COLUMNS]]
    for row in rows:
        cells.append([("white" if row[key] else "black") if fmt is None else fmt.format(row[key])
                      for key, _, fmt in _COLUMNS])
    widths = [max(len(line[i]) for line in cells) for i in range(len(_COLUMNS))]
    lines = ["  ".join(text.ljust(w) if i == 0 else text.rjust(w) for i, (text, w) in enumerate(zip(line, widths)))
             for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    first = rows[0]
    header = (f"{first['model']} ({first['preset']}), {first['features']} patches, {first['n_samples']} samples, "
              f"batch {first['batch_size']}, {first['device']}, torch threads {torch.get_num_threads()}; "
              f"seconds of {first['clock']}")
    return "\n".join([header, *lines])


def print_table(rows: list[dict], file: TextIO | None = None) -> None:
    print(format_table(rows), file=file or sys.stdout)
