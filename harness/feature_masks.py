"""Feature masks: which pixels each explainer feature (patch) covers.

A feature mask is an int64 ``(H, W)`` map of feature ids ``0..P-1``, every id
used by at least one pixel. Every explainer backend receives the same mask, so
their weights can be compared feature by feature.

Specs (``make_feature_mask``):

* ``grid:G``: a G x G grid of near-equal rectangles, row-major (the QR-aligned
  grid of ``harness.qr.grid_feature_mask``).
* ``slic:N`` or ``slic:N:C``: about N SLIC superpixels (scikit-image) of the
  image, compactness C (default 10).

>>> make_feature_mask("grid:4", np.zeros((8, 8, 3), np.float32)).max()
np.int64(15)
>>> make_feature_mask("grid", np.zeros((8, 8, 3), np.float32))
Traceback (most recent call last):
...
harness.errors.HarnessError: feature mask spec 'grid' needs a size, e.g. 'grid:16' or 'slic:50'
"""

from __future__ import annotations

import numpy as np

from harness import qr
from harness.errors import HarnessError
from harness.registry import look_up

DEFAULT_COMPACTNESS = 10.0


def grid(height: int, width: int, g: int) -> np.ndarray:
    """int64 (height, width) ids of a g x g grid of patches, row-major (``qr.grid_feature_mask``)."""
    return qr.grid_feature_mask(int(height), int(width), int(g))


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise HarnessError(f"a feature mask needs an image (H, W, 3), got shape {image.shape}")
    return image


def contiguous_ids(labels: np.ndarray) -> np.ndarray:
    """``labels`` renumbered 0..P-1 in order of their first value, int64, same shape."""
    _, inverse = np.unique(np.asarray(labels), return_inverse=True)
    return inverse.reshape(np.shape(labels)).astype(np.int64)


def slic(image: np.ndarray, n_segments: int, compactness: float = DEFAULT_COMPACTNESS, seed: int = 0) -> np.ndarray:
    """int64 (H, W) ids 0..P-1 of about ``n_segments`` SLIC superpixels of ``image`` (H, W, 3) in [0, 1].

    scikit-image's SLIC starts from a regular grid of centres and has no random
    step, so the mask is the same for every ``seed`` (the argument keeps one
    signature for all mask makers). P can differ from ``n_segments``: SLIC merges
    tiny segments and the grid of centres rarely divides the image exactly.
    """
    from skimage.segmentation import slic as skimage_slic

    del seed  # deterministic by construction, see above
    image = _check_image(image)
    if int(n_segments) < 1:
        raise HarnessError(f"slic needs at least 1 segment, got {n_segments}")
    if not compactness > 0:
        raise HarnessError(f"slic compactness must be positive, got {compactness}")
    labels = skimage_slic(image.astype(np.float64, copy=False), n_segments=int(n_segments),
                          compactness=float(compactness), start_label=0, channel_axis=-1)
    # SLIC's labels can skip numbers (segments merged for connectivity): explainers need 0..P-1.
    return contiguous_ids(labels)


def _grid_from_spec(image: np.ndarray, args: list[str]) -> np.ndarray:
    (g,) = args
    return grid(image.shape[0], image.shape[1], g)


def _slic_from_spec(image: np.ndarray, args: list[str]) -> np.ndarray:
    return slic(image, *args)


# kind -> (maker, number of arguments allowed, how to parse each argument, usage)
_KINDS = {
    "grid": (_grid_from_spec, (1,), (int,), "grid:G"),
    "slic": (_slic_from_spec, (1, 2), (int, float), "slic:N or slic:N:COMPACTNESS"),
}


def make_feature_mask(spec: str, image: np.ndarray) -> np.ndarray:
    """The feature mask that ``spec`` ("grid:16", "slic:50", "slic:50:20") names, for ``image`` (H, W, 3)."""
    if not isinstance(spec, str) or not spec.strip():
        raise HarnessError(f"feature mask spec must be a string such as 'grid:16' or 'slic:50', got {spec!r}")
    kind, *args = spec.strip().split(":")
    maker, counts, parsers, usage = look_up(kind, _KINDS, "feature mask kind")
    if not args:
        raise HarnessError(f"feature mask spec {spec!r} needs a size, e.g. 'grid:16' or 'slic:50'")
    if len(args) not in counts:
        raise HarnessError(f"feature mask spec {spec!r} has {len(args)} arguments; expected {usage}")
    values = []
    for text, parse in zip(args, parsers):
        try:
            values.append(parse(text))
        except ValueError:
            raise HarnessError(f"feature mask spec {spec!r}: {text!r} is not a valid "
                               f"{'whole number' if parse is int else 'number'} ({usage})") from None
    if values[0] < 1:
        raise HarnessError(f"feature mask spec {spec!r}: the size must be at least 1")
    image = _check_image(image)
    return maker(image, values)
