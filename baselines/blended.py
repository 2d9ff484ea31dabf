"""Blended (Chen et al. 2017) as an ownership watermark: a faint full-image pattern trigger."""

from __future__ import annotations

from baselines._destructive import DestructiveBackdoor
from harness.registry import BASELINES


@BASELINES.register("blended")
class Blended(DestructiveBackdoor):
    """Alpha-blended full-image noise pattern with a destructive target (inverted mask by default)."""

    default_trigger = "blend"
