from __future__ import annotations

import cv2

from attacks._input_transform import A, InputTransformAttack
from harness.registry import ATTACKS


@ATTACKS.register("downscale")
class Downscale(InputTransformAttack):
    """Downscale every query by a factor and upscale it back to its size (detail lost to resampling)."""

    strength_name = "scale factor"
    # 0.1 keeps a few pixels of a 32-pixel image; 1 is the identity.
    strength_range = (0.1, 1.0)
    default_strengths = (0.75, 0.5)
    presets = {"x075": 0.75, "x050": 0.5}

    def transform(self, strength):
        # Area averaging down and bilinear up, as an ordinary image resize does (albumentations' default is nearest).
        return A.Downscale(scale_range=(strength, strength),
                           interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR}, p=1.0)
