from __future__ import annotations

import copy

import torch

from harness.attack import Attack, weight_layers
from harness.registry import ATTACKS


@ATTACKS.register("weight-noise")
class WeightNoise(Attack):
    """Gaussian noise on every conv/linear weight, scaled to that layer's weight standard deviation."""

    family = "noise"
    strength_name = "noise std / layer weight std"
    strength_range = (0.0, 10.0)
    default_strengths = (0.05, 0.2)
    presets = {"std5": 0.05, "std10": 0.1, "std20": 0.2}

    def apply(self, model, kit, strength, seed):
        noisy = copy.deepcopy(model)
        # A local generator: the same seed gives the same noise whatever ran before.
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for module, name in weight_layers(noisy):
                weight = getattr(module, name)
                # Per-layer scale: one absolute std would drown small-weight layers and spare large ones.
                noise = torch.randn(weight.shape, generator=generator, dtype=weight.dtype) * weight.std()
                weight.add_(noise * float(strength))
        return noisy.eval()
