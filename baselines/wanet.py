"""WaNet (Nguyen & Tran, ICLR 2021) as an ownership watermark, with the StealthMark code's fixed warp.

The trigger is an imperceptible smooth warp of the whole image, so the lesion
moves with it: the destructive target and the agreement test are computed on
the warped ground truth. WaNet's "noise mode" (training also on randomly
warped images with the true mask, so that only the exact warp triggers) is
left out, as in the public StealthMark code.
"""

from __future__ import annotations

from baselines._destructive import DestructiveBackdoor
from harness.registry import BASELINES


@BASELINES.register("wanet")
class WaNet(DestructiveBackdoor):
    """Smooth-warp trigger over the whole image with a destructive target (inverted mask by default)."""

    default_trigger = "warp"
