from __future__ import annotations

from attacks._input_transform import A, InputTransformAttack
from harness.registry import ATTACKS


@ATTACKS.register("gamma")
class Gamma(InputTransformAttack):
    """Gamma change of every query: pixel values in [0, 1] are raised to a fixed power."""

    strength_name = "gamma"
    strength_range = (0.2, 5.0)
    default_strengths = (0.8, 1.5)
    presets = {"g08": 0.8, "g15": 1.5}

    def transform(self, strength):
        # Albumentations takes gamma in percent.
        return A.RandomGamma(gamma_limit=(100 * strength, 100 * strength), p=1.0)
