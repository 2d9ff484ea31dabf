from __future__ import annotations

from attacks._fine_tuning import FineTuningAttack
from harness.registry import ATTACKS


@ATTACKS.register("rtal")
class RetrainAllLayers(FineTuningAttack):
    """RTAL: re-initialise the output layer, then train every layer on the thief's data."""

    reinit_last = True
