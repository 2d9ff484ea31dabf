"""LIME through the reference ``lime`` package (Ribeiro et al.)."""

from __future__ import annotations

import functools
from unittest import mock

import numpy as np
from lime import lime_image

from harness.explainer import Explainer
from harness.registry import EXPLAINERS


@EXPLAINERS.register("lime")
class LimeExplainer(Explainer):
    """LIME (lime package): ridge fit of the output on kept patches, cosine-kernel weighted.

    Off patches are black (``hide_color=0``). The first sample is always the
    unperturbed image, as lime_image does.
    """

    name = "lime"

    def _attribute(self, forward, image, feature_mask, n_features, n_samples, batch_size, seed):
        # feature_selection="none": every patch is a module of the certificate, so none may be dropped,
        # and "auto" would switch to slow forward selection for grids of 6 patches or fewer.
        explainer = lime_image.LimeImageExplainer(random_state=seed, verbose=False, feature_selection="none")

        def classifier_fn(batch: np.ndarray) -> np.ndarray:
            score = forward(batch)
            # lime regresses on column 1 as given, so an unbounded score needs no clipping.
            return np.stack([1 - score, score], axis=1)

        # lime 0.2.0.1 has no switch for its tqdm bar over the samples.
        quiet_tqdm = functools.partial(lime_image.tqdm, disable=True)
        with mock.patch.object(lime_image, "tqdm", quiet_tqdm):
            explanation = explainer.explain_instance(
                image,
                classifier_fn,
                segmentation_fn=lambda img: feature_mask,
                hide_color=0,
                num_samples=n_samples,
                batch_size=batch_size,
                top_labels=None,
                labels=(1,),
                num_features=n_features,
            )
        weights = np.zeros(n_features)
        for feature, weight in explanation.local_exp[1]:
            weights[feature] = weight
        return weights
