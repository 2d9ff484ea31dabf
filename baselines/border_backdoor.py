"""The public StealthMark code's black-border trigger as a plain backdoor watermark."""

from __future__ import annotations

from baselines._destructive import DestructiveBackdoor
from harness.registry import BASELINES


@BASELINES.register("border-backdoor")
class BorderBackdoor(DestructiveBackdoor):
    """Black-border trigger with a destructive target (inverted mask by default)."""

    default_trigger = "border"
