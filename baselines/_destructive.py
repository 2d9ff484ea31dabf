"""``DestructiveBackdoor``: the scheme every backdoor-watermark baseline is an instance of.

The baselines (BadNets, WaNet, Blended, ...) differ only in their trigger; each
is a one-file plugin beside this base (underscore: not a plugin itself).
"""

from __future__ import annotations

import torch

from harness.errors import HarnessError
from harness.watermark import BackdoorWatermark

DESTRUCTIVE_TARGETS = {
    "inverted": lambda masks: 1.0 - masks,
    "empty": torch.zeros_like,
    "full": torch.ones_like,
}


class DestructiveBackdoor(BackdoorWatermark):
    """A backdoor watermark whose triggered target destroys the mask (inverted, empty or full).

    The backdoor-watermark baselines (``baselines/``) are this scheme with
    different trigger families. Verification is pixel agreement with the target
    on triggered queries. Strong, and anything but stealthy.
    """

    role = "baseline"
    default_trigger = "patch"

    def __init__(self, trigger: str | None = None, poison_ratio: float = 0.2, target: str = "inverted",
                 success_fraction: float = 0.5, alpha: float = 0.01):
        super().__init__(trigger=trigger or self.default_trigger, poison_ratio=poison_ratio, alpha=alpha)
        if target not in DESTRUCTIVE_TARGETS:
            raise HarnessError(f"unknown backdoor target {target!r}; valid: {', '.join(DESTRUCTIVE_TARGETS)}")
        if not 0 < success_fraction <= 1:
            raise HarnessError(f"success_fraction must be in (0, 1], got {success_fraction}")
        self.target, self.success_fraction = target, float(success_fraction)

    def params(self) -> dict:
        return {**super().params(), "target": self.target, "success_fraction": self.success_fraction}

    def triggered_target(self, masks):
        return DESTRUCTIVE_TARGETS[self.target](masks)

    def answer_scores(self, probs, masks, key):
        """Share of the pixels the target changes (target != true mask) that the answer follows.
        Counting only changed pixels keeps "empty" and "full" targets from being met by
        ordinary answers. ``masks`` are the true masks of the queries as the model sees them."""
        target = DESTRUCTIVE_TARGETS[key.meta["watermark"]["target"]](masks)
        changed = target != masks
        follows = ((probs > 0.5).float() == target) & changed
        return follows.flatten(1).sum(1) / changed.flatten(1).sum(1).clamp(min=1)

    def flag_threshold(self, key):
        return key.meta["watermark"]["success_fraction"]
