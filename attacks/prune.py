from __future__ import annotations

import copy

from torch.nn.utils import prune

from harness.attack import Attack, weight_layers
from harness.registry import ATTACKS


@ATTACKS.register("prune")
class GlobalL1Prune(Attack):
    """Global L1 unstructured pruning: zero the smallest-magnitude fraction of all conv/linear weights."""

    family = "pruning"
    strength_name = "fraction of weights zeroed"
    strength_range = (0.0, 1.0)
    default_strengths = (0.1, 0.3, 0.5, 0.7, 0.9)
    presets = {"l1_10": 0.1, "l1_30": 0.3, "l1_50": 0.5, "l1_70": 0.7, "l1_90": 0.9}

    def apply(self, model, kit, strength, seed):
        pruned = copy.deepcopy(model)
        layers = weight_layers(pruned)
        prune.global_unstructured(layers, pruning_method=prune.L1Unstructured, amount=float(strength))
        for module, name in layers:
            prune.remove(module, name)  # bake the mask in: a plain model, as a thief would ship it
        return pruned.eval()
