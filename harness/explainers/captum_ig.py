"""Integrated Gradients through Captum (``captum.attr.IntegratedGradients``): white-box."""

from __future__ import annotations

import numpy as np
from captum.attr import IntegratedGradients

from harness.explainer import Explainer
from harness.explainers._captum import image_tensor
from harness.registry import EXPLAINERS


@EXPLAINERS.register("captum-ig")
class CaptumIntegratedGradientsExplainer(Explainer):
    """Integrated Gradients (Captum), WHITE-BOX: needs the model's gradients, pixel attributions summed per patch.

    Path integral of the gradient from the black image (baseline 0, the "off"
    value of the perturbation explainers) to the image; a patch's weight is the
    sum of its pixels' attributions over the three channels. ``n_samples`` is the
    number of integration steps (Gauss-Legendre), evaluated ``batch_size`` at a
    time (Captum's ``internal_batch_size``). Deterministic: the seed is ignored.
    ``forward`` must be differentiable (``harness.explainer.ModelForward``): a
    verifier with only black-box query access cannot run it.
    """

    name = "captum-ig"
    white_box = True
    stochastic = False

    def _attribute(self, forward, image, feature_mask, n_features, n_samples, batch_size, seed):
        inputs = image_tensor(image)
        ig = IntegratedGradients(forward.torch)
        attributions = ig.attribute(inputs, baselines=0.0, n_steps=n_samples, internal_batch_size=batch_size)
        per_pixel = attributions[0].detach().double().sum(dim=0).flatten().numpy()
        return np.bincount(feature_mask.ravel(), weights=per_pixel, minlength=n_features)
