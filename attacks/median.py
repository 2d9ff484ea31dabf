from __future__ import annotations

from attacks._input_transform import A, InputTransformAttack
from harness.errors import HarnessError
from harness.registry import ATTACKS


@ATTACKS.register("median")
class Median(InputTransformAttack):
    """Median filter on every query with an odd square kernel (3, 5, ..., 15 pixels)."""

    strength_name = "median kernel size (odd, pixels)"
    strength_range = (3, 15)
    default_strengths = (3, 5)
    presets = {"k3": 3, "k5": 5}
    integer_strength = True

    def check_strength(self, strength):
        # Albumentations would silently round an even size up (with a warning); the recorded strength must be
        # the kernel used, so an even size is refused, here, before any cell runs.
        value = super().check_strength(strength)
        if value % 2 == 0:
            raise HarnessError(f"strength {strength:g} is not valid for attack {self.registered_name!r}: "
                               f"{self.strength_name} must be odd")
        return value

    def transform(self, strength):
        size = int(strength)
        return A.MedianBlur(blur_limit=(size, size), p=1.0)
