"""Mask agreement: how much the suspect's masks overlap the owner's model's masks on unseen images.

The trivial fingerprint, in the spirit of the "trivial baseline" the QuRD benchmark (AAAI 2025) found
as good as published fingerprints for classifiers: per key image, the Dice between the suspect's and
the owner's thresholded masks (p > 0.5). The paired test asks whether the suspect agrees with the
owner more than with the ground truth: an innocent model that segments well is as close to the truth
as to the owner, a copy reproduces the owner's mistakes. Needs only hard masks from the suspect.
"""

from __future__ import annotations

from harness import scoring
from harness.fingerprint import Fingerprint
from harness.registry import FINGERPRINTS
from harness.segmenter import predict_proba


@FINGERPRINTS.register("mask-agreement")
class MaskAgreement(Fingerprint):
    """Mean Dice between the suspect's and the owner's thresholded masks on the key's images."""

    def paired_scores(self, model, key):
        queries = key.queries()
        answers = predict_proba(model, queries.images)
        owner_masks = (self.owner_probs(key) > 0.5).float()
        return scoring.dice(answers, owner_masks).numpy(), scoring.dice(answers, queries.masks).numpy()
