from __future__ import annotations

from attacks._fine_tuning import FineTuningAttack
from harness.registry import ATTACKS


@ATTACKS.register("ftal")
class FineTuneAllLayers(FineTuningAttack):
    """FTAL: fine-tune every layer on the thief's data."""
