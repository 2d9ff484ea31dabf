from __future__ import annotations

from attacks._input_transform import A, InputTransformAttack
from harness.registry import ATTACKS


@ATTACKS.register("blur")
class GaussianBlur(InputTransformAttack):
    """Gaussian blur of every query with a fixed sigma in pixels."""

    strength_name = "blur sigma (pixels)"
    # Below ~0.3 albumentations' kernel is one pixel wide, i.e. no blur; at 5 it spans a 32-pixel image.
    strength_range = (0.3, 5.0)
    default_strengths = (0.5, 1.0)
    presets = {"s05": 0.5, "s10": 1.0}

    def transform(self, strength):
        # blur_limit=0: the kernel size follows from sigma (PIL's rule), so sigma alone sets the blur.
        return A.GaussianBlur(blur_limit=0, sigma_limit=(strength, strength), p=1.0)
