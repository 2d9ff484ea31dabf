"""The one training loop: every model in the harness (clean reference, null, watermarked,
fine-tuned, distilled) is trained by ``fit`` on soft targets in [0, 1].

Soft targets are what StealthMark needs (a background floor such as 0.2) and
they include hard masks as a special case, so one loop serves all.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn
from harness import progress
from harness.device import as_input, autocast, gpu_speed, model_device, on_gpu
from harness.presets import TrainConfig

# Keep the training set on the GPU when it fits in this share of free memory: at paper
# size a host-to-device copy per minibatch costs more than the step itself.
_RESIDENT_SHARE = 0.25

# Changes whenever a change here changes the trained weights (a cache key: models trained
# by an older loop are not reused). 2: channels-last on the CPU.
LOOP_VERSION = 2


def seed_everything(seed: int) -> None:
    """Same seed, same numbers on CPU."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


# Torch threads a model is trained with unless a run says otherwise (``--threads``): fixed, so the
# numbers do not depend on the machine's cores; part of every trained model's cache key.
DEFAULT_THREADS = 1


@contextlib.contextmanager
def torch_threads(count: int):
    """Compute with ``count`` torch threads inside the block; the caller's count is restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(int(count))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def recipe_key() -> dict:
    """What, besides the data and the seed, decides a trained model's floats: the loop and the
    torch thread count (it orders float sums). Part of every trained model's cache key."""
    return {"training": LOOP_VERSION, "threads": torch.get_num_threads()}


def planned_steps(preset) -> int:
    """Optimiser steps of a model trained on the preset's owner-sized training set."""
    return preset.train.epochs * -(-preset.owner_train // preset.train.batch_size)


def epoch_batches(count: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """One epoch's minibatches: a permutation drawn from ``generator``, cut in order. ``fit`` and
    ``harness.stacked.fit_stacked`` both draw through here, so a stacked member sees its lone twin's batches."""
    permutation = torch.randperm(count, generator=generator)
    return [permutation[start : start + batch_size] for start in range(0, count, batch_size)]


def bce_loss(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The default objective: BCE-with-logits against (soft) targets."""
    return F.binary_cross_entropy_with_logits(model(images), targets)


def fit(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    config: TrainConfig,
    seed: int,
    desc: str = "train",
    parameters=None,
    loss=bce_loss,
) -> nn.Module:
    """Train ``model`` in place with Adam (cosine-decayed) and BCE-with-logits; returns it in eval mode.

    ``images`` (N, 3, H, W) in [0, 1]; ``targets`` (N, 1, H, W) in [0, 1].
    ``parameters`` restricts what is optimised (e.g. the last layer only).
    ``loss(model, images, targets, index)`` may replace the objective; ``index``
    holds the minibatch's positions in ``images``.
    The minibatch order comes from a generator seeded by ``seed`` alone, so the
    global RNG (and hence model initialisation elsewhere) is left untouched.
    Training runs where the model's parameters are; on CUDA under bf16 autocast,
    with the data resident on the GPU when it fits (``harness.device``). Activations
    are channels-last on every device (``harness bench train``: 1.3x the images/s of
    NCHW on two CPU cores); the model comes back in the usual contiguous layout.
    """
    if config.epochs == 0:
        return model.eval()
    device = model_device(model)
    if on_gpu(device):
        free, _ = torch.cuda.mem_get_info(device)
        if images.numel() * images.element_size() * 2 < _RESIDENT_SHARE * free:
            images, targets = as_input(images, device), targets.to(device, non_blocking=True)
    order = torch.Generator().manual_seed(seed)
    params = [p for p in (parameters if parameters is not None else model.parameters()) if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.lr)
    steps_per_epoch = -(-len(images) // config.batch_size)
    # Cosine decay: at a few hundred steps it converges markedly better than a flat rate.
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * steps_per_epoch)
    model.to(memory_format=torch.channels_last).train()
    bar = progress.training_steps(desc, config.epochs * steps_per_epoch)
    with gpu_speed(device):
        for _ in range(config.epochs):
            for batch in epoch_batches(len(images), config.batch_size, order):
                with autocast(device):
                    value = loss(model, as_input(images[batch], device, channels_last=True),
                                 targets[batch].to(device, non_blocking=True), batch)
                optimizer.zero_grad(set_to_none=True)
                value.backward()
                optimizer.step()
                schedule.step()
                bar.update(value)
    bar.close()
    # Back to the layout the rest of the harness computes in (channels-last only on CUDA).
    return model.to(memory_format=torch.channels_last if on_gpu(device) else torch.contiguous_format).eval()
