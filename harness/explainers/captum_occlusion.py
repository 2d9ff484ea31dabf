"""Occlusion of whole features through Captum (``captum.attr.FeatureAblation``)."""

from __future__ import annotations

import numpy as np
import torch
from captum.attr import FeatureAblation

from harness.explainer import Explainer
from harness.explainers._captum import image_tensor, numpy_forward_for_captum
from harness.registry import EXPLAINERS


@EXPLAINERS.register("captum-occlusion")
class CaptumOcclusionExplainer(Explainer):
    """Occlusion (Captum FeatureAblation): output drop when each patch alone is blacked out.

    Weight of patch j = f(image) - f(image with patch j black). One forward of
    the unperturbed image, then one perturbed image per patch, ``batch_size``
    per call: P + 1 images whatever ``n_samples`` is (it is ignored), and no
    randomness (the seed is ignored too). It sees no interactions between patches.
    """

    name = "captum-occlusion"
    stochastic = False

    def _attribute(self, forward, image, feature_mask, n_features, n_samples, batch_size, seed):
        inputs = image_tensor(image)
        mask = torch.from_numpy(feature_mask)[None, None]
        ablation = FeatureAblation(numpy_forward_for_captum(forward))
        attributions = ablation.attribute(inputs, baselines=0.0, feature_mask=mask,
                                          perturbations_per_eval=batch_size)
        # Captum spreads each feature's weight over its pixels (same value in each): read one pixel per feature.
        first_pixel = np.unique(feature_mask.ravel(), return_index=True)[1]
        return attributions[0, 0].detach().double().flatten().numpy()[first_pixel]
