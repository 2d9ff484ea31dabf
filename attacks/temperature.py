"""Serving move: every logit multiplied by a fixed factor (temperature scaling)."""

from __future__ import annotations

from attacks._serving import AffineLogits, ServingAttack
from harness.registry import ATTACKS


@ATTACKS.register("temperature")
class Temperature(ServingAttack):
    """Logits multiplied by k (k < 1 softens, k > 1 sharpens the probabilities): the mask is kept exactly.

    A positive factor keeps each logit's sign and the order of the
    probabilities, so the thresholded mask is the stolen model's pixel for
    pixel, while every soft probability moves: softening pulls a background
    floor such as 0.2 towards 0.5, sharpening pushes it towards 0.
    """

    strength_name = "logit scale factor k (<1 softens, >1 sharpens)"
    strength_range = (0.01, 100.0)
    default_strengths = (0.25, 4.0)
    presets = {"soft4": 0.25, "soft2": 0.5, "sharp2": 2.0, "sharp4": 4.0}
    version = 1

    def serve(self, model, kit, strength, seed):
        return AffineLogits(model, slope=strength)
