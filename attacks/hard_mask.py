"""Serving move: answer with the thresholded mask instead of probabilities."""

from __future__ import annotations

import torch

from attacks._serving import ServedModel, ServingAttack, logits_of
from harness.registry import ATTACKS
from harness.scoring import THRESHOLD


class ThresholdedAnswers(ServedModel):
    """Answers probability 1 where the stolen model's exceeds 0.5 and 0 elsewhere (as saturated, finite logits)."""

    def answer(self, logits):
        probs = torch.sigmoid(logits)
        return logits_of((probs > THRESHOLD).to(probs.dtype))


@ATTACKS.register("hard-mask")
class HardMask(ServingAttack):
    """The API answers with the thresholded mask only: the mask is kept exactly, every soft probability is gone.

    What a deployed segmentation service often returns anyway. Whatever a mark
    keeps below the threshold (StealthMark's background floor on triggered
    inputs) is not in the answer.
    """

    strength_name = "thresholded (no strength: always 1)"
    strength_range = (1, 1)
    default_strengths = (1,)
    presets = {"masks": 1}
    version = 1

    def serve(self, model, kit, strength, seed):
        return ThresholdedAnswers(model)
