from __future__ import annotations

from attacks._input_transform import A, InputTransformAttack
from harness.registry import ATTACKS


@ATTACKS.register("brightness")
class Brightness(InputTransformAttack):
    """Fixed brightness shift of every query by a fraction of the 0..255 range (negative darkens)."""

    strength_name = "brightness shift (fraction of the 0..255 range)"
    strength_range = (-1.0, 1.0)
    default_strengths = (0.1, 0.3)
    presets = {"plus10": 0.1, "plus30": 0.3, "minus10": -0.1, "minus30": -0.3}

    def transform(self, strength):
        # Equal limits pin the random shift to ``strength``; contrast (0, 0) leaves it alone.
        return A.RandomBrightnessContrast(brightness_limit=(strength, strength), contrast_limit=(0.0, 0.0),
                                          brightness_by_max=True, p=1.0)
