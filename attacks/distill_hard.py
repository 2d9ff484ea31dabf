from __future__ import annotations

from harness.distillation import DistillationAttack
from harness.registry import ATTACKS


@ATTACKS.register("distill-hard")
class DistillHard(DistillationAttack):
    """Distillation from thresholded masks only, as an API that returns masks leaks (no soft outputs)."""

    hard = True
    default_strengths = (60, 150)
    presets = {"e60": 60, "e150": 150}
