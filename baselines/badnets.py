"""BadNets as an ownership watermark (Gu et al. 2017; used as a baseline by StealthMark).

A visible patch trigger and a destructive target: by default the inverted
mask, as in the StealthMark public code. Verification is the agreement of
triggered answers with that target. It verifies strongly and is anything but
stealthy: the triggered mask changes almost everywhere.
"""

from __future__ import annotations

import torch

from harness.errors import HarnessError
from harness.registry import BASELINES
from harness.watermark import BackdoorWatermark

TARGETS = {
    "inverted": lambda masks: 1.0 - masks,
    "empty": torch.zeros_like,
    "full": torch.ones_like,
}


@BASELINES.register("badnets")
class BadNets(BackdoorWatermark):
    """Patch-trigger backdoor with a destructive target (inverted mask by default)."""

    role = "baseline"

    def __init__(self, trigger: str = "patch", poison_ratio: float = 0.2, target: str = "inverted",
                 success_fraction: float = 0.5, alpha: float = 0.01):
        super().__init__(trigger=trigger, poison_ratio=poison_ratio, alpha=alpha)
        if target not in TARGETS:
            raise HarnessError(f"unknown BadNets target {target!r}; valid: {', '.join(TARGETS)}")
        if not 0 < success_fraction <= 1:
            raise HarnessError(f"success_fraction must be in (0, 1], got {success_fraction}")
        self.target, self.success_fraction = target, float(success_fraction)

    def params(self) -> dict:
        return {**super().params(), "target": self.target, "success_fraction": self.success_fraction}

    def triggered_target(self, masks):
        return TARGETS[self.target](masks)

    def flag(self, probs, masks, key):
        """An answer is a backdoor hit when at least ``success_fraction`` of the pixels the
        target changes (target != true mask) follow the target. Counting only changed
        pixels keeps "empty" and "full" targets from being hit by ordinary answers."""
        target = TARGETS[key.meta["watermark"]["target"]](masks)
        changed = target != masks
        follows = ((probs > 0.5).float() == target) & changed
        share = follows.flatten(1).sum(1) / changed.flatten(1).sum(1).clamp(min=1)
        return share >= key.meta["watermark"]["success_fraction"]
