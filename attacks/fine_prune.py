from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import prune

from harness.attack import Attack, Budget, output_layer
from harness.errors import HarnessError
from harness.presets import TrainConfig
from harness.registry import ATTACKS
from harness.training import fit


def _mean_input_activation(model: nn.Module, layer: nn.Module, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Mean activation of each channel entering ``layer`` over ``images``, in evaluation mode."""
    channel_dim = -1 if isinstance(layer, nn.Linear) else 1
    sums, positions = [], []

    def record(module, inputs):
        features = inputs[0].movedim(channel_dim, 0).flatten(1)
        sums.append(features.sum(1))
        positions.append(features.shape[1])

    handle = layer.register_forward_pre_hook(record)
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                model(images[start : start + batch_size])
    finally:
        handle.remove()
    return torch.stack(sums).sum(0) / sum(positions)


def _input_channel_mask(layer: nn.Module, channels: torch.Tensor) -> torch.Tensor:
    """A weight mask of ones that cuts every connection from ``channels`` of the layer's input."""
    if getattr(layer, "groups", 1) != 1:
        raise HarnessError("fine-pruning needs an output layer without grouped convolution")
    # A transposed convolution stores its weight as (in, out, ...); the others as (out, in, ...).
    input_dim = 0 if isinstance(layer, nn.ConvTranspose2d) else 1
    mask = torch.ones_like(layer.weight)
    mask.index_fill_(input_dim, channels, 0.0)
    return mask


@ATTACKS.register("fine-prune")
class FinePrune(Attack):
    """Fine-pruning (Liu et al. 2018): prune the last features least active on clean data, then fine-tune all layers."""

    trains = True
    family = "pruning"
    strength_name = "fraction of last-layer feature channels pruned"
    strength_range = (0.0, 0.95)
    default_strengths = (0.3, 0.6)
    presets = {"fp_30": 0.3, "fp_60": 0.6, "fp_90": 0.9}

    def __init__(self, epochs: int = 10, lr: float = 1e-3):
        self.epochs, self.lr = int(epochs), float(lr)

    def params(self) -> dict:
        return {"epochs": self.epochs, "lr": self.lr}

    def budget(self, kit, strength):
        return Budget(images=len(kit.data), labels=True)  # activity measured on them, then fine-tuned on their masks

    def apply(self, model, kit, strength, seed):
        pruned = copy.deepcopy(model).eval()
        # The neurons are the feature channels that feed the output layer, measured as that layer sees
        # them: after the last feature convolution's norm and nonlinearity, as Liu et al. measure after
        # ReLU. A channel is pruned by cutting its connections into the output layer. Zeroing the
        # feature convolution's filters instead would not silence it: the batch norm behind it would
        # still emit its shift. Cutting the outgoing weights removes the neuron exactly, for any
        # architecture, and the mask keeps it removed while fine-tuning.
        head = output_layer(pruned)
        activity = _mean_input_activation(pruned, head, kit.data.images, kit.preset.eval_batch_size)
        # At least one channel survives: logits that ignore every feature would be a constant map.
        count = min(round(float(strength) * len(activity)), len(activity) - 1)
        dormant = torch.argsort(activity, stable=True)[:count]
        prune.custom_from_mask(head, "weight", _input_channel_mask(head, dormant))
        # Trained in place: a pruned module cannot be deep-copied (its masked weight is not a leaf),
        # so ``fine_tune``'s copy is out, and ``pruned`` is already the thief's own copy.
        config = TrainConfig(epochs=self.epochs, batch_size=kit.preset.train.batch_size, lr=self.lr)
        fit(pruned, kit.data.images, kit.data.masks, config, seed, desc="fine-prune")
        prune.remove(head, "weight")
        return pruned.eval()
