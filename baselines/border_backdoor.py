"""The public StealthMark code's black-border trigger as a plain backdoor watermark."""

from __future__ import annotations

from harness.registry import BASELINES
from harness.watermark import DestructiveBackdoor


@BASELINES.register("border-backdoor")
class BorderBackdoor(DestructiveBackdoor):
    """Black-border trigger with a destructive target (inverted mask by default)."""

    default_trigger = "border"
