from __future__ import annotations

import copy

import torch
import torch_pruning as tp

from harness.attack import Attack
from harness.errors import HarnessError
from harness.registry import ATTACKS


@ATTACKS.register("prune-channels")
class ChannelPrune(Attack):
    """Structured L1 channel pruning with torch-pruning's dependency graph (the model gets smaller)."""

    family = "pruning"
    strength_name = "fraction of channels removed per layer"
    strength_range = (0.0, 0.9)
    default_strengths = (0.1, 0.3, 0.5, 0.7, 0.9)
    presets = {"l1_10": 0.1, "l1_30": 0.3, "l1_50": 0.5, "l1_70": 0.7, "l1_90": 0.9}

    def apply(self, model, kit, strength, seed):
        pruned = copy.deepcopy(model).eval()
        if strength == 0:
            return pruned
        example = kit.data.images[:1]
        # Layers that produce the logit channels must keep them: the output shape is the contract.
        with torch.no_grad():
            out_channels = pruned(example).shape[1]
        convs = (torch.nn.Conv2d, torch.nn.ConvTranspose2d)
        output_layers = [m for m in pruned.modules() if isinstance(m, convs) and m.out_channels == out_channels]
        try:
            pruner = tp.pruner.MetaPruner(
                pruned, example, importance=tp.importance.MagnitudeImportance(p=1),
                pruning_ratio=float(strength), ignored_layers=output_layers)
            pruner.step()
            pruned(example)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise HarnessError(f"torch-pruning cannot prune channels of this architecture: {exc}") from None
        return pruned.eval()
