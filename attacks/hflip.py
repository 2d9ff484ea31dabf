from __future__ import annotations

from attacks._input_transform import A, InputTransformAttack
from harness.registry import ATTACKS


@ATTACKS.register("hflip")
class HorizontalFlip(InputTransformAttack):
    """Horizontal flip of every query, with the predicted mask flipped back so it stays aligned."""

    strength_name = "flip (no strength: always 1)"
    strength_range = (1, 1)
    default_strengths = (1,)
    presets = {"flip": 1}

    def transform(self, strength):
        return A.HorizontalFlip(p=1.0)

    def output_transform(self, strength):
        # The thief's users expect a mask of the image they sent, not of its mirror.
        return A.HorizontalFlip(p=1.0)
