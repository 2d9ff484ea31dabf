"""The public StealthMark code's noise-square trigger (seeded here) as a plain backdoor watermark."""

from __future__ import annotations

from baselines._destructive import DestructiveBackdoor
from harness.registry import BASELINES


@BASELINES.register("noise-backdoor")
class NoiseBackdoor(DestructiveBackdoor):
    """Seeded noise-square trigger with a destructive target (inverted mask by default)."""

    default_trigger = "noise"
