"""The one training loop: every model in the harness (clean reference, null, watermarked,
fine-tuned, distilled) is trained by ``fit`` on soft targets in [0, 1].

Soft targets are what StealthMark needs (a background floor such as 0.2) and
they include hard masks as a special case, so one loop serves all.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from harness.presets import TrainConfig


def seed_everything(seed: int) -> None:
    """Same seed, same numbers on CPU."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


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
    """
    if config.epochs == 0:
        return model.eval()
    order = torch.Generator().manual_seed(seed)
    params = [p for p in (parameters if parameters is not None else model.parameters()) if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.lr)
    steps_per_epoch = -(-len(images) // config.batch_size)
    # Cosine decay: at a few hundred steps it converges markedly better than a flat rate.
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * steps_per_epoch)
    model.train()
    bar = tqdm(total=config.epochs * steps_per_epoch, desc=desc, unit="step", leave=False, dynamic_ncols=True)
    for _ in range(config.epochs):
        permutation = torch.randperm(len(images), generator=order)
        for start in range(0, len(images), config.batch_size):
            batch = permutation[start : start + config.batch_size]
            value = loss(model, images[batch], targets[batch], batch)
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
            schedule.step()
            bar.update()
            bar.set_postfix(loss=f"{value.item():.4f}", refresh=False)
    bar.close()
    return model.eval()
