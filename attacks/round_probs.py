"""Serving move: probabilities quantised to a few levels."""

from __future__ import annotations

import torch

from attacks._serving import ServedModel, ServingAttack, logits_of
from harness.registry import ATTACKS


class QuantisedProbabilities(ServedModel):
    """Answers the centre of the probability's bin among ``levels`` bins of width 1/levels.

    Bins are closed above: bin i holds (i/levels, (i+1)/levels], and 0 joins
    the first. With an even number of levels, 0.5 is a bin's upper edge, so a
    probability of exactly 0.5 (background) stays below it and anything above
    0.5 lands above it: the mask is kept exactly.
    """

    def __init__(self, model, levels: int):
        super().__init__(model)
        self.levels = int(levels)

    def answer(self, logits):
        probs = torch.sigmoid(logits)
        index = (torch.ceil(probs * self.levels) - 1).clamp(0, self.levels - 1)
        return logits_of((index + 0.5) / self.levels)


@ATTACKS.register("round-probs")
class RoundProbs(ServingAttack):
    """Probabilities rounded to L evenly spaced levels (L even, 256 = an 8-bit PNG): the mask is kept exactly.

    What a service that stores or sends probability maps as images does. A
    soft signal finer than 1/L (a background floor's small shifts between
    benign and triggered inputs) is flattened to one level.
    """

    strength_name = "probability levels (even)"
    strength_range = (2, 65536)
    default_strengths = (4, 16)
    presets = {"l4": 4, "l16": 16, "l256": 256}
    integer_strength = True
    version = 1

    def check_strength(self, strength):
        # An odd count puts 0.5 inside a bin, whose centre would then move pixels across the threshold.
        value = super().check_strength(strength)
        if value % 2:
            raise self.invalid_strength(strength, "even so that 0.5 is a bin edge")
        return value

    def serve(self, model, kit, strength, seed):
        return QuantisedProbabilities(model, int(strength))
