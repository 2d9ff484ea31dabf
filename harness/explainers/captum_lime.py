"""LIME through Captum (``captum.attr.Lime``)."""

from __future__ import annotations

import numpy as np
import torch
from captum._utils.models.linear_model import SkLearnRidge
from captum.attr import Lime

from harness.explainer import Explainer
from harness.registry import EXPLAINERS


@EXPLAINERS.register("captum-lime")
class CaptumLimeExplainer(Explainer):
    """LIME (Captum): ridge fit of the output on kept patches, exponential cosine kernel.

    Off patches are black (``baselines=0``). Captum's default surrogate is Lasso
    with a fixed alpha of 0.01: a patch that moves the score by less than a few
    hundredths gets weight exactly 0, so a model with a small-valued score would
    show no certificate at all. Ridge (alpha 1, as the lime package uses) shrinks
    instead of thresholding, so small effects still rank.
    """

    name = "captum-lime"

    def _attribute(self, forward, image, feature_mask, n_features, n_samples, batch_size, seed):
        def torch_forward(batch: torch.Tensor) -> torch.Tensor:
            channels_last = np.ascontiguousarray(batch.permute(0, 2, 3, 1).numpy())
            return torch.from_numpy(forward(channels_last))

        # contiguous: Captum builds and compares every sample against this tensor, and doing so on the
        # channels-last view costs about twice the time.
        inputs = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).contiguous()
        # (1, 1, H, W): one patch id per pixel, shared by the three channels.
        mask = torch.from_numpy(feature_mask)[None, None]
        lime = Lime(torch_forward, interpretable_model=SkLearnRidge(alpha=1.0))
        # Captum samples with the global torch RNG; fork it so seeding here leaves the caller's stream alone.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            coefs = lime.attribute(
                inputs,
                baselines=0.0,
                feature_mask=mask,
                n_samples=n_samples,
                perturbations_per_eval=batch_size,
                return_input_shape=False,
            )
        return coefs.detach().double().flatten().numpy()
