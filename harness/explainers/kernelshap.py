"""Kernel SHAP through the reference ``shap`` package (Lundberg and Lee)."""

from __future__ import annotations

import logging
import warnings

import numpy as np

from harness.explainer import Explainer, forward_in_batches
from harness.registry import EXPLAINERS


@EXPLAINERS.register("kernelshap")
class KernelShapExplainer(Explainer):
    """Kernel SHAP (shap package): Shapley-kernel weighted regression of the output on kept patches.

    The explained "features" are the patches, on (the image's pixels) or off
    (black): shap's ``KernelExplainer`` sees a binary vector per perturbation,
    with the all-on vector as the instance and the all-off vector as the one
    background row, and we turn each vector it asks about into an image. It
    evaluates ``n_samples`` coalitions (fewer when there are fewer than
    ``n_samples`` distinct ones, 2**P - 2) plus the all-on and all-off images.
    No L1 feature selection (shap's default keeps only 10 features): every
    patch gets a weight. shap samples with numpy's global RNG; we seed it and
    restore the caller's state afterwards. shap is imported on first use (it
    takes seconds), not when the registry lists this plugin.
    """

    name = "kernelshap"

    def _attribute(self, forward, image, feature_mask, n_features, n_samples, batch_size, seed):
        with warnings.catch_warnings():  # shap's plotting colours trip matplotlib deprecations on import
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            import shap

        ones, zeros = np.ones((1, n_features)), np.zeros((1, n_features))
        # shap asks for f(all on) and f(all off) one image at a time; ask for both in one batch instead.
        ends = forward_in_batches(forward, image, feature_mask, np.vstack([ones, zeros]), batch_size)

        def coalition_values(keep: np.ndarray) -> np.ndarray:
            keep = np.asarray(keep)
            if len(keep) == 1 and keep.min() == keep.max():
                return ends[:1] if keep[0, 0] else ends[1:]
            return forward_in_batches(forward, image, feature_mask, keep, batch_size)

        state = np.random.get_state()
        shap_logger = logging.getLogger("shap")
        level = shap_logger.level
        try:
            np.random.seed(seed)
            shap_logger.setLevel(logging.WARNING)
            explainer = shap.KernelExplainer(coalition_values, zeros, link="identity")
            values = explainer.shap_values(ones, nsamples=n_samples, l1_reg=False, silent=True)
        finally:
            np.random.set_state(state)
            shap_logger.setLevel(level)
        return np.asarray(values, dtype=np.float64).reshape(n_features)
