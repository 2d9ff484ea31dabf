"""The public StealthMark code's explainer, reproduced to show why it proves nothing.

Do not use it to verify anything: it is here so that the harness's artifact
guard (``harness.artifact_guard``) has a known-bad explainer to catch.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import Ridge

from harness.explainer import Explainer
from harness.registry import EXPLAINERS

REFERENCE_MASK_SEED = 42  # the public code's fixed seed


@EXPLAINERS.register("reference-grid-lime")
class ReferenceGridLime(Explainer):
    """NOT model-dependent: the public code's fixed-seed 0/1 grid mask, ridge fit, every non-zero weight set to 1."""

    name = "reference-grid-lime"
    model_dependent_by_design = False
    stochastic = False  # the picture is fixed by the seed-42 mask, whatever the caller's seed

    def _attribute(self, forward, image, feature_mask, n_features, n_samples, batch_size, seed):
        # One fixed random 0/1 matrix M (seed 42, whatever the caller's seed) decides which cells the
        # procedure may perturb. Cells with M = 1 are never perturbed, so their column in the
        # regression is constant and their ridge weight is exactly 0; every other weight is
        # almost surely non-zero and is then set to 1. The picture is 1 - M for any model
        # whose output is not constant.
        fixed = np.random.default_rng(REFERENCE_MASK_SEED).integers(0, 2, n_features).astype(bool)
        rng = np.random.default_rng(seed)
        keep = rng.integers(0, 2, (n_samples, n_features)).astype(bool)
        keep[:, fixed] = True
        outputs = np.empty(n_samples)
        pixel_feature = feature_mask
        for start in range(0, n_samples, batch_size):
            rows = keep[start : start + batch_size]
            kept_pixels = rows[:, pixel_feature]  # (B, H, W)
            outputs[start : start + len(rows)] = forward(image[None] * kept_pixels[..., None])
        weights = Ridge(alpha=1.0).fit(keep.astype(float), outputs).coef_
        return (np.abs(weights) > 1e-12).astype(float)
