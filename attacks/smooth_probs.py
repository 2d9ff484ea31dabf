"""Serving move: the probability map blurred with a Gaussian."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from attacks._serving import ServedModel, ServingAttack, logits_of
from harness.registry import ATTACKS


def gaussian_kernel(sigma: float, like: torch.Tensor) -> torch.Tensor:
    """A normalised 1-D Gaussian of radius ceil(3 sigma), on ``like``'s device and dtype."""
    radius = math.ceil(3 * sigma)
    offsets = torch.arange(-radius, radius + 1, device=like.device, dtype=like.dtype)
    weights = torch.exp(-(offsets**2) / (2 * sigma**2))
    return weights / weights.sum()


class SmoothedProbabilities(ServedModel):
    """Answers the probability map blurred by a separable Gaussian of ``sigma`` pixels (reflect padding)."""

    def __init__(self, model, sigma: float):
        super().__init__(model)
        self.sigma = float(sigma)

    def answer(self, logits):
        probs = torch.sigmoid(logits)
        kernel = gaussian_kernel(self.sigma, probs)
        radius, channels = len(kernel) // 2, probs.shape[1]
        # Depthwise: each output channel is blurred on its own, rows then columns.
        rows = kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
        columns = kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
        probs = F.conv2d(F.pad(probs, (radius, radius, 0, 0), mode="reflect"), rows, groups=channels)
        probs = F.conv2d(F.pad(probs, (0, 0, radius, radius), mode="reflect"), columns, groups=channels)
        return logits_of(probs)


@ATTACKS.register("smooth-probs")
class SmoothProbs(ServingAttack):
    """Gaussian blur of the probability map (sigma in pixels): the mask is nearly kept, its edges rounded.

    A thief may present it as smoothing jagged masks. A soft signal that
    varies from pixel to pixel is averaged with its neighbours; one spread
    over a whole region survives. The mask is not kept exactly: thin
    structures and corners can cross the threshold.
    """

    strength_name = "blur sigma of the probability map (pixels)"
    strength_range = (0.1, 5.0)
    default_strengths = (1.0,)
    presets = {"s05": 0.5, "s1": 1.0, "s2": 2.0}
    version = 1

    def serve(self, model, kit, strength, seed):
        return SmoothedProbabilities(model, strength)
