from __future__ import annotations

from attacks._fine_tuning import FineTuningAttack
from harness.registry import ATTACKS


@ATTACKS.register("ftll")
class FineTuneLastLayer(FineTuningAttack):
    """FTLL: fine-tune only the output layer on the thief's data; the rest stays frozen (batch norm included)."""

    last_only = True
