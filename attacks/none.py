from __future__ import annotations

from harness.attack import Attack
from harness.registry import ATTACKS


@ATTACKS.register("none")
class NoAttack(Attack):
    """No attack: the watermarked model as the owner released it (the leaderboard's reference row)."""

    family = "none"
    strength_name = "unused (0)"
    strength_range = (0.0, 0.0)
    default_strengths = (0.0,)

    def apply(self, model, kit, strength, seed):
        # The same object: nothing is changed, so nothing needs copying.
        return model.eval()
