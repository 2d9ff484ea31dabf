"""BadNets as an ownership watermark (Gu et al. 2017; used as a baseline by StealthMark).

A visible patch trigger and a destructive target: by default the inverted
mask, as in the StealthMark public code. Verification is the agreement of
triggered answers with that target. It verifies strongly and is anything but
stealthy: the triggered mask changes almost everywhere.
"""

from __future__ import annotations

from baselines._destructive import DestructiveBackdoor
from harness.registry import BASELINES


@BASELINES.register("badnets")
class BadNets(DestructiveBackdoor):
    """Patch-trigger backdoor with a destructive target (inverted mask by default)."""

    default_trigger = "patch"
