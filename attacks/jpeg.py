from __future__ import annotations

from attacks._input_transform import A, InputTransformAttack
from harness.registry import ATTACKS


@ATTACKS.register("jpeg")
class Jpeg(InputTransformAttack):
    """JPEG re-encoding of every query at a fixed quality (1 = worst, 100 = best)."""

    strength_name = "JPEG quality"
    strength_range = (1, 100)
    default_strengths = (50, 20)
    presets = {"q50": 50, "q20": 20}
    integer_strength = True

    def transform(self, strength):
        quality = int(strength)
        return A.ImageCompression(compression_type="jpeg", quality_range=(quality, quality), p=1.0)
