from __future__ import annotations

from harness.distillation import DistillationAttack
from harness.registry import ATTACKS


@ATTACKS.register("distill-arch")
class DistillArch(DistillationAttack):
    """Distillation into a different architecture (MONAI residual UNet) from the stolen model's probabilities."""

    default_student = "unet"
    default_strengths = (60, 150)
    presets = {"e60": 60, "e150": 150}
