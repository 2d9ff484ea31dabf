from __future__ import annotations

from attacks._input_transform import A, InputTransformAttack
from harness.registry import ATTACKS


@ATTACKS.register("gauss-noise")
class GaussNoise(InputTransformAttack):
    """Additive Gaussian noise on every query, independent per pixel and channel, seeded per image."""

    strength_name = "noise std (fraction of the 0..255 range)"
    strength_range = (0.0, 1.0)
    default_strengths = (0.02, 0.08)
    presets = {"std02": 0.02, "std08": 0.08}

    def transform(self, strength):
        return A.GaussNoise(std_range=(strength, strength), mean_range=(0.0, 0.0), per_channel=True, p=1.0)
