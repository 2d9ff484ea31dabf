"""LIME through the reference ``lime`` package (Ribeiro et al.)."""

from __future__ import annotations

import numpy as np
from lime import lime_image

from harness.explainer import Explainer, forward_in_batches
from harness.registry import EXPLAINERS


class _BatchedLimeImageExplainer(lime_image.LimeImageExplainer):
    """lime_image's explainer with its sampling step vectorised.

    ``data_labels`` in lime 0.2.0.1 deep-copies the image and loops over the off
    segments of every sample in Python (and shows a tqdm bar it has no switch
    for). This draws the same random on/off matrix from the same RNG, keeps the
    first row all on, and builds each batch of images with one indexing
    operation: the same samples and labels, without the per-sample work.
    """

    def data_labels(self, image, fudged_image, segments, classifier_fn, num_samples, batch_size=10):
        n_features = np.unique(segments).shape[0]
        data = self.random_state.randint(0, 2, num_samples * n_features).reshape((num_samples, n_features))
        data[0, :] = 1
        if np.any(fudged_image):  # perturbed_images blacks out: only hide_color=0 is supported here
            raise ValueError("this LIME explainer perturbs to black (hide_color=0) only")
        labels = forward_in_batches(classifier_fn, image, segments, data, batch_size)
        return data, labels


@EXPLAINERS.register("lime")
class LimeExplainer(Explainer):
    """LIME (lime package): ridge fit of the output on kept patches, cosine-kernel weighted.

    Off patches are black (``hide_color=0``). The first sample is always the
    unperturbed image, as lime_image does. Its per-sample image building is
    replaced by a vectorised one that draws the same samples (``_BatchedLimeImageExplainer``).
    """

    name = "lime"

    def _attribute(self, forward, image, feature_mask, n_features, n_samples, batch_size, seed):
        # feature_selection="none": every patch is a module of the certificate, so none may be dropped,
        # and "auto" would switch to slow forward selection for grids of 6 patches or fewer.
        explainer = _BatchedLimeImageExplainer(random_state=seed, verbose=False, feature_selection="none")

        def classifier_fn(batch: np.ndarray) -> np.ndarray:
            score = forward(batch)
            # lime regresses on column 1 as given, so an unbounded score needs no clipping.
            return np.stack([1 - score, score], axis=1)

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
