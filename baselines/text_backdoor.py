"""The StealthMark paper's text trigger as a plain backdoor watermark (destructive target)."""

from __future__ import annotations

from harness.registry import BASELINES
from harness.watermark import DestructiveBackdoor


@BASELINES.register("text-backdoor")
class TextBackdoor(DestructiveBackdoor):
    """White "TEST" text trigger with a destructive target (inverted mask by default)."""

    default_trigger = "text"
