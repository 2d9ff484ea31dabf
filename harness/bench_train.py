"""``harness bench train``: how close the harness's training comes to what the machine can do.

Training is nearly all of a benchmark's cost (a null population, the clean and
marked models, every fine-tuning attack), so this measures it, per registered
model at a preset's image size and batch, against two references measured in
the same run:

* ``gemm peak``: dense fp32 matrix products (2048 x 2048) on every usable core,
  the most GFLOP/s this CPU gives;
* ``plain loop``: a textbook torch loop (Adam, BCE-with-logits, NCHW) on the
  same model, in one process using every core: what "plain torch" gets.

and these ways the harness can train:

* ``harness fit``: ``harness.training.fit`` in one process on every core;
* ``fit, W proc x 1 thr``: W copies of ``fit`` at once, one per core, each
  single-threaded, as the local executor runs a grid's models; images/s is
  their sum;
* ``stacked xK (vmap)``: ``harness.stacked.fit_stacked``, K members as one;
* ``compiled loop``: the plain loop under ``torch.compile`` (inductor), with
  its compile time; "pays" says whether compiling wins within one model's
  training at the preset.

GFLOP/s counts the forward and backward FLOPs of one training image
(``torch.utils.flop_counter``) times images/s. Times are wall clock after
warm-up steps: another process competing for the cores lowers every row, so
run it on a quiet machine. Untrained weights and random images are fine: the
cost of a step does not depend on them.
"""

from __future__ import annotations

import sys
import time
import warnings
from typing import TextIO

import torch
import torch.nn.functional as F

from harness.errors import HarnessError
from harness.executors import usable_cores
from harness.presets import TrainConfig, get_preset
from harness.training import planned_steps

GEMM_SIDE = 2048
STACK = 5  # members per stack: the tiny null population's seeds per architecture


def gemm_peak(seconds: float = 1.0) -> float:
    """Dense fp32 GFLOP/s of square matrix products on this process's threads (best of repeated runs)."""
    a, b = torch.randn(GEMM_SIDE, GEMM_SIDE), torch.randn(GEMM_SIDE, GEMM_SIDE)
    a @ b
    best, until = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < until:
        tic = time.perf_counter()
        a @ b
        best = max(best, 2 * GEMM_SIDE**3 / (time.perf_counter() - tic) / 1e9)
    return best


def _scene(model_name: str, preset_name: str, seed: int):
    from harness.segmenter import build_model

    preset = get_preset(preset_name)
    torch.manual_seed(seed)
    model = build_model(model_name, preset_name)
    side, batch = preset.image_size, preset.train.batch_size
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, side, side, generator=generator)
    masks = (torch.rand(batch, 1, side, side, generator=generator) > 0.5).float()
    return preset, model, images, masks


def flops_per_image(model_name: str, preset_name: str, seed: int = 0) -> float:
    """Forward + backward FLOPs of one training image (batch of the preset, divided by its size)."""
    from torch.utils.flop_counter import FlopCounterMode

    _, model, images, masks = _scene(model_name, preset_name, seed)
    with FlopCounterMode(display=False) as counter:
        F.binary_cross_entropy_with_logits(model.train()(images), masks).backward()
    return counter.get_total_flops() / len(images)


def _plain_step(model, images, masks, compiled=None):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    forward = model if compiled is None else compiled

    def step():
        loss = F.binary_cross_entropy_with_logits(forward(images), masks)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def _images_per_second(step, images_per_step: int, steps: int, warmup: int) -> float:
    for _ in range(warmup):
        step()
    tic = time.perf_counter()
    for _ in range(steps):
        step()
    return images_per_step * steps / (time.perf_counter() - tic)


def _fit_images_per_second(model, images, masks, steps: int, warmup: int) -> float:
    """``fit`` over ``warmup`` then ``steps`` minibatches; the time of the latter."""
    from harness import progress
    from harness.training import fit

    batch = len(images)
    data = images.repeat(steps, 1, 1, 1), masks.repeat(steps, 1, 1, 1)
    config = TrainConfig(epochs=1, batch_size=batch, lr=1e-3)
    progress.connect(_Discard())  # no bar inside a timing
    try:
        fit(model, images.repeat(warmup, 1, 1, 1), masks.repeat(warmup, 1, 1, 1), config, seed=0)
        tic = time.perf_counter()
        fit(model, *data, config, seed=0)
        return batch * steps / (time.perf_counter() - tic)
    finally:
        progress.connect(None)


class _Discard:
    def put(self, _):
        pass


def _stacked_images_per_second(model_name: str, preset_name: str, steps: int, warmup: int, seed: int) -> float:
    from harness import progress
    from harness.stacked import fit_stacked

    members = [_scene(model_name, preset_name, seed + k) for k in range(STACK)]
    batch = len(members[0][2])
    config = TrainConfig(epochs=1, batch_size=batch, lr=1e-3)
    models = [m[1] for m in members]
    progress.connect(_Discard())
    try:
        def run(n):
            fit_stacked(models, [m[2].repeat(n, 1, 1, 1) for m in members], [m[3].repeat(n, 1, 1, 1) for m in members],
                        config, list(range(STACK)))

        run(warmup)
        tic = time.perf_counter()
        run(steps)
        return STACK * batch * steps / (time.perf_counter() - tic)
    finally:
        progress.connect(None)


def _one_worker(model_name, preset_name, steps, warmup, seed, barrier, results):
    """One of W single-threaded processes: ``fit`` after the others are ready too."""
    torch.set_num_threads(1)
    _, model, images, masks = _scene(model_name, preset_name, seed)
    _fit_images_per_second(model, images, masks, 2, warmup)  # imports, allocator, kernels
    barrier.wait()
    results.put(_fit_images_per_second(model, images, masks, steps, 0))


def _processes_images_per_second(model_name: str, preset_name: str, steps: int, warmup: int, seed: int,
                                 workers: int) -> float:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(workers), context.Queue()
    processes = [context.Process(target=_one_worker, args=(model_name, preset_name, steps, warmup, seed + k,
                                                            barrier, results)) for k in range(workers)]
    for process in processes:
        process.start()
    rates = [results.get(timeout=1800) for _ in processes]
    for process in processes:
        process.join()
    return sum(rates)


def _compiled(model_name: str, preset_name: str, steps: int, warmup: int, seed: int, plain_rate: float) -> dict:
    preset, model, images, masks = _scene(model_name, preset_name, seed)
    try:
        compiled = torch.compile(model)
        step = _plain_step(model, images, masks, compiled)
        tic = time.perf_counter()
        step()  # compiles the forward and the backward
        compile_s = time.perf_counter() - tic
        rate = _images_per_second(step, len(images), steps, warmup)
    except Exception as exc:  # inductor fails on some ops (a missing meta kernel): that is the result
        reason = str(exc).strip().splitlines()[0][:80] if str(exc).strip() else type(exc).__name__
        return {"rate": None, "note": f"fails: {type(exc).__name__}: {reason}"}
    total = planned_steps(preset) * len(images)
    pays = compile_s + total / rate < total / plain_rate
    return {"rate": rate, "note": f"compile {compile_s:.0f} s; {'pays' if pays else 'does not pay'} "
                                  f"within one model ({planned_steps(preset)} steps)"}


VARIANTS = ("plain loop", "harness fit", "fit, W proc x 1 thr", "stacked xK (vmap)", "compiled loop")


def bench_train(models: list[str] | None = None, preset: str = "tiny", steps: int = 30, warmup: int = 5,
                seed: int = 0, variants: list[str] | None = None, log=None) -> tuple[float, list[dict]]:
    """(GEMM peak GFLOP/s, one row per model and variant); see the module docstring."""
    from harness.registry import MODELS

    if steps < 1 or warmup < 0:
        raise HarnessError(f"--steps must be at least 1 and --warmup at least 0, got {steps} and {warmup}")
    names = list(models) if models else ["basic-unet", "unet"]
    for name in names:
        MODELS.get(name)
    get_preset(preset)
    chosen = list(variants) if variants else list(VARIANTS)
    for variant in chosen:
        if variant not in VARIANTS:
            raise HarnessError(f"unknown variant {variant!r}; variants: {', '.join(VARIANTS)}")
    cores = usable_cores()
    threads = torch.get_num_threads()
    torch.set_num_threads(cores)
    try:
        peak = gemm_peak()
        rows = []
        for name in names:
            flops = flops_per_image(name, preset, seed)
            measured = {}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for variant in chosen:
                    if log:
                        log(f"bench train: {name} {variant}")
                    note = ""
                    if variant == "plain loop":
                        _, model, images, masks = _scene(name, preset, seed)
                        rate = _images_per_second(_plain_step(model.train(), images, masks), len(images), steps, warmup)
                    elif variant == "harness fit":
                        _, model, images, masks = _scene(name, preset, seed)
                        rate = _fit_images_per_second(model, images, masks, steps, warmup)
                    elif variant == "fit, W proc x 1 thr":
                        rate = _processes_images_per_second(name, preset, steps, warmup, seed, cores)
                        note = f"W = {cores}"
                    elif variant == "stacked xK (vmap)":
                        rate = _stacked_images_per_second(name, preset, steps, warmup, seed)
                        note = f"K = {STACK}"
                    else:
                        plain = measured.get("plain loop")
                        if plain is None:
                            _, model, images, masks = _scene(name, preset, seed)
                            plain = _images_per_second(_plain_step(model.train(), images, masks), len(images),
                                                       steps, warmup)
                        outcome = _compiled(name, preset, steps, warmup, seed, plain)
                        rate, note = outcome["rate"], outcome["note"]
                    measured[variant] = rate
                    rows.append({"model": name, "variant": variant, "images_per_s": rate,
                                 "gflops": None if rate is None else rate * flops / 1e9, "note": note})
            plain = measured.get("plain loop")
            for row in rows:
                if row["model"] == name:
                    row["vs_plain"] = None if (plain is None or row["images_per_s"] is None) \
                        else row["images_per_s"] / plain
                    row["vs_peak"] = None if row["gflops"] is None else row["gflops"] / peak
                    row.update(preset=preset, batch=get_preset(preset).train.batch_size,
                               gflop_per_image=flops / 1e9)
        return peak, rows
    finally:
        torch.set_num_threads(threads)


def format_table(peak: float, rows: list[dict]) -> str:
    def number(value, fmt):
        return "-" if value is None else fmt.format(value)

    head = ("model", "variant", "img/s", "GFLOP/s", "x plain", "/ peak", "note")
    cells = [head] + [(r["model"], r["variant"], number(r["images_per_s"], "{:.0f}"), number(r["gflops"], "{:.1f}"),
                       number(r["vs_plain"], "{:.2f}"), number(r["vs_peak"], "{:.2f}"), r["note"]) for r in rows]
    widths = [max(len(str(line[i])) for line in cells) for i in range(len(head))]
    lines = ["  ".join(str(t).ljust(w) if i in (0, 1, 6) else str(t).rjust(w) for i, (t, w) in
                       enumerate(zip(line, widths))).rstrip() for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    first = rows[0] if rows else {"preset": "?", "batch": "?"}
    per_image = ", ".join(sorted({f"{r['model']} {r['gflop_per_image']:.3f}" for r in rows}))
    header = (f"training throughput, preset {first['preset']} (batch {first['batch']}), {usable_cores()} cores, "
              f"torch {torch.__version__}; GEMM peak {peak:.1f} GFLOP/s (fp32, {GEMM_SIDE}^3); "
              f"GFLOP per training image: {per_image}; wall clock")
    return "\n".join([header, *lines])


def print_table(peak: float, rows: list[dict], file: TextIO | None = None) -> None:
    print(format_table(peak, rows), file=file or sys.stdout)

