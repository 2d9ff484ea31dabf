from __future__ import annotations

import copy

from torch.nn.utils import prune

from harness.attack import Attack, weight_layers
from harness.registry import ATTACKS


@ATTACKS.register("prune-layer")
class LayerwiseL1Prune(Attack):
    """Layer-wise L1 unstructured pruning: zero the same smallest-magnitude fraction of every conv/linear weight."""

    family = "pruning"
    strength_name = "fraction of each layer's weights zeroed"
    strength_range = (0.0, 1.0)
    default_strengths = (0.3, 0.6)
    presets = {"l1_10": 0.1, "l1_30": 0.3, "l1_50": 0.5, "l1_70": 0.7, "l1_90": 0.9}

    def apply(self, model, kit, strength, seed):
        pruned = copy.deepcopy(model)
        # Unlike global pruning, no layer is spared because its weights happen to be larger:
        # small layers such as the output layer lose the same share as wide ones.
        for module, name in weight_layers(pruned):
            prune.l1_unstructured(module, name, amount=float(strength))
            prune.remove(module, name)
        return pruned.eval()
