"""The shared call signature of explainer plugins (``harness/explainers/``).

An explainer answers "which patches does the model output depend on?" with one
weight per patch. A watermark's certificate (e.g. StealthMark's QR code) is read
from those weights, so every explainer takes the same inputs and returns the
same thing, whichever library does the work.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from harness.errors import HarnessError

Forward = Callable[[np.ndarray], np.ndarray]
"""float32 batch (B, H, W, 3) in [0, 1] -> float array (B,): one scalar per perturbed image."""


class Explainer:
    """Attribution over a feature mask: one weight per feature (patch).

    Perturbation convention: a feature that is "off" takes the baseline value 0
    (black) in all three channels; a feature that is "on" keeps the image's pixels.

    Subclasses implement ``_attribute``; ``attribute`` checks the inputs and the
    forward's outputs so that each plugin can trust them.
    """

    name: str
    # True: the weights come only from how forward's output changes, so a model
    # whose output ignores the image yields all-zero weights (no picture from nothing).
    model_dependent_by_design = True

    def attribute(
        self,
        forward: Forward,
        image: np.ndarray,
        feature_mask: np.ndarray,
        n_samples: int = 1000,
        batch_size: int = 64,
        seed: int = 0,
    ) -> np.ndarray:
        """float64 weights (P,), index = feature id of ``feature_mask`` (ids 0..P-1); deterministic per seed.

        ``forward`` is called with batches of at most ``batch_size`` perturbed images.
        """
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3:
            raise HarnessError(f"explainer image must be (H, W, 3), got shape {image.shape}")
        image = image.astype(np.float32, copy=False)
        if image.size and (image.min() < 0 or image.max() > 1):
            raise HarnessError(f"explainer image must lie in [0, 1], got [{image.min():.3g}, {image.max():.3g}]")
        feature_mask = np.asarray(feature_mask)
        if feature_mask.shape != image.shape[:2] or not np.issubdtype(feature_mask.dtype, np.integer):
            raise HarnessError(
                f"feature mask must be an integer array of shape {image.shape[:2]}, "
                f"got {feature_mask.dtype} {feature_mask.shape}"
            )
        n_features = int(feature_mask.max()) + 1 if feature_mask.size else 0
        # LIME regresses on column j = feature id j, so a gap in the ids would shift every weight after it.
        if feature_mask.min(initial=0) < 0 or len(np.unique(feature_mask)) != n_features:
            raise HarnessError("feature mask ids must be exactly 0..P-1, each used by at least one pixel")
        if n_samples < 2:
            raise HarnessError(f"n_samples must be at least 2 to fit a surrogate, got {n_samples}")
        if batch_size < 1:
            raise HarnessError(f"batch_size must be at least 1, got {batch_size}")

        weights = self._attribute(
            _checked(forward), image, feature_mask.astype(np.int64, copy=False), n_features,
            int(n_samples), int(batch_size), int(seed),
        )
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != (n_features,):
            raise RuntimeError(f"{type(self).__name__} returned weights of shape {weights.shape}, "
                               f"expected ({n_features},)")
        return weights

    def _attribute(
        self,
        forward: Forward,
        image: np.ndarray,
        feature_mask: np.ndarray,
        n_features: int,
        n_samples: int,
        batch_size: int,
        seed: int,
    ) -> np.ndarray:
        """Weights (n_features,) for a checked forward, float32 image and int64 mask."""
        raise NotImplementedError


def _checked(forward: Forward) -> Forward:
    """``forward`` that fails with a readable message instead of deep inside a library's regression."""

    def call(batch: np.ndarray) -> np.ndarray:
        out = np.asarray(forward(batch), dtype=np.float64)
        if out.shape != (len(batch),):
            raise HarnessError(f"explainer forward must return one scalar per image, shape ({len(batch)},); "
                               f"got shape {out.shape}")
        if not np.all(np.isfinite(out)):
            raise HarnessError("explainer forward returned NaN or infinity")
        return out

    return call
