"""Train K models of one architecture as one: stacked parameters, one vmapped call per layer.

A null population is K models with one recipe and different seeds and images.
``fit_stacked`` stacks their parameters and buffers (``torch.func``), runs
the K forward and backward passes as one batched call per layer (a grouped
convolution for a convolution), and steps one Adam over the stacked tensors.
Each member keeps what makes it a member:

* its own initial weights (built by the caller, under its own seed);
* its own images and its own minibatch order, from a generator seeded by its
  own seed, exactly as ``harness.training.fit`` draws them;
* its own Adam moments: Adam is elementwise, so one Adam over stacked tensors
  is K Adams, and the summed loss gives each member its own gradient only.

So member k follows the same trajectory as ``fit`` on it alone, up to float
rounding (``tests/test_stacked.py`` checks the gradients, the first steps
and the final Dice). One caveat: a parameter whose gradient is zero but for
rounding (a convolution's bias just before batch norm) can move by up to the
learning rate either way, since Adam divides the rounding by its own size;
batch norm subtracts such a bias again, so what the member computes does not
depend on it. Whether it is faster depends on the backend: ``harness bench train``
measures it beside one-process and one-process-per-core training.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state

from harness import progress
from harness.errors import HarnessError
from harness.presets import TrainConfig
from harness.training import epoch_batches


def _check_members(models: list[nn.Module], images: list, targets: list, seeds: list) -> None:
    if not (len(models) == len(images) == len(targets) == len(seeds)) or not models:
        raise HarnessError("fit_stacked needs one model, image set, target set and seed per member")
    shapes = [{k: v.shape for k, v in m.state_dict().items()} for m in models]
    if any(s != shapes[0] for s in shapes[1:]):
        raise HarnessError("fit_stacked trains models of one architecture only")
    if len({len(x) for x in images}) != 1:
        raise HarnessError("fit_stacked needs as many training images for every member")


class Stack:
    """K models of one architecture as stacked tensors: ``loss`` is their summed mean BCE, one call per layer."""

    def __init__(self, models: list[nn.Module]):
        self.params, self.buffers = stack_module_state(models)
        skeleton = copy.deepcopy(models[0]).to("meta")

        def member_logits(p, b, x):
            return functional_call(skeleton, (p, b), (x,))

        self._logits = torch.vmap(member_logits, in_dims=(0, 0, 0))

    def loss(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``images`` (K, B, 3, H, W), ``targets`` (K, B, 1, H, W). Summed over members, so that each
        member's parameters get the gradient of its own mean loss, and nothing from the others."""
        logits = self._logits(self.params, self.buffers, images)
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").flatten(1).mean(1).sum()

    @torch.no_grad()
    def unstack_into(self, models: list[nn.Module]) -> None:
        stacked = {**self.params, **self.buffers}
        for k, model in enumerate(models):
            model.load_state_dict({name: stacked[name][k] for name in model.state_dict()})


def fit_stacked(models: list[nn.Module], images: list[torch.Tensor], targets: list[torch.Tensor],
                config: TrainConfig, seeds: list[int], desc: str = "train stacked") -> list[nn.Module]:
    """Train every member of ``models`` in place, as ``harness.training.fit`` would train it alone.

    ``images[k]`` (N, 3, H, W) and ``targets[k]`` (N, 1, H, W) are member k's data;
    ``seeds[k]`` orders its minibatches. Returns the models, in eval mode.
    """
    _check_members(models, images, targets, seeds)
    if config.epochs == 0:
        return [m.eval() for m in models]
    for model in models:
        model.train()
    stack = Stack(models)
    optimizer = torch.optim.Adam(list(stack.params.values()), lr=config.lr)
    count = len(images[0])
    steps_per_epoch = -(-count // config.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * steps_per_epoch)
    orders = [torch.Generator().manual_seed(seed) for seed in seeds]
    bar = progress.training_steps(desc, config.epochs * steps_per_epoch)
    for _ in range(config.epochs):
        for batches in zip(*[epoch_batches(count, config.batch_size, order) for order in orders]):
            value = stack.loss(torch.stack([member[b] for member, b in zip(images, batches)]),
                               torch.stack([member[b] for member, b in zip(targets, batches)]))
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
            schedule.step()
            bar.update(value)
    bar.close()
    stack.unstack_into(models)
    return [m.eval() for m in models]
