"""The StealthMark paper's text trigger as a plain backdoor watermark (destructive target)."""

from __future__ import annotations

from baselines._destructive import DestructiveBackdoor
from harness.registry import BASELINES


@BASELINES.register("text-backdoor")
class TextBackdoor(DestructiveBackdoor):
    """White "TEST" text trigger with a destructive target (inverted mask by default)."""

    default_trigger = "text"
