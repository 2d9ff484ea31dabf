from __future__ import annotations

from attacks._input_transform import A, InputTransformAttack
from harness.registry import ATTACKS


@ATTACKS.register("contrast")
class Contrast(InputTransformAttack):
    """Fixed contrast change of every query: pixel values are multiplied by 1 + strength (clipped)."""

    strength_name = "contrast change (gain - 1)"
    # Albumentations' contrast is a gain about black, not about the mean: -1 gives a black image,
    # +1 doubles every value (bright areas saturate).
    strength_range = (-1.0, 1.0)
    default_strengths = (0.2, 0.5)
    presets = {"plus20": 0.2, "plus50": 0.5, "minus20": -0.2, "minus50": -0.5}

    def transform(self, strength):
        # Equal limits pin the random gain to 1 + ``strength``; brightness (0, 0) leaves it alone.
        return A.RandomBrightnessContrast(brightness_limit=(0.0, 0.0), contrast_limit=(strength, strength), p=1.0)
