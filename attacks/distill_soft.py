from __future__ import annotations

from harness.distillation import DistillationAttack
from harness.registry import ATTACKS


@ATTACKS.register("distill-soft")
class DistillSoft(DistillationAttack):
    """Distillation: a fresh student of the same architecture trained on the stolen model's probabilities."""

    default_strengths = (60, 150)
    presets = {"e60": 60, "e150": 150}
