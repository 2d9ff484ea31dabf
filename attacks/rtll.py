from __future__ import annotations

from attacks._fine_tuning import FineTuningAttack
from harness.registry import ATTACKS


@ATTACKS.register("rtll")
class RetrainLastLayer(FineTuningAttack):
    """RTLL: re-initialise the output layer, then train only it on the thief's data (the rest frozen)."""

    reinit_last = True
    last_only = True
