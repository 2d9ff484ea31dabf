"""Shared machinery for procedural stand-in datasets (not a plugin: leading underscore).

A procedural dataset has no ``__len__``: its index range is unbounded and image
``i`` depends only on ``np.random.default_rng([seed, i])``. Subclasses implement
``_draw(rng, size)`` returning float32 ``(H, W, 3)`` pixels (any range; clipped
here) and a bool mask; this base validates ``image_size``, stacks ``generate``
batches and gives a ``fingerprint()`` of the class name and its ``VERSION``.

The drawing helpers reuse the smooth-field machinery of ``synthetic_polyp``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from harness.datasets._folder import check_image_size, parse_choice
from harness.datasets.synthetic_polyp import (  # noqa: F401
    _basis, _contour_lines, _field, _grid, _smoothstep, _unit, stack_samples)
from harness.errors import HarnessError


class ProceduralDataset:
    """Base for ``synthetic-*`` stand-ins: unbounded, seeded per ``(seed, index)``, offline."""

    needs_root = False
    VERSION = 1  # bump when the pictures change, so cached models are not reused
    OPTIONS: dict[str, Any] = {}
    CHOICES: dict[str, tuple[str, ...]] = {}  # option -> allowed values
    modality = "unknown"

    def __init__(self, image_size: int = 48, **options):
        name = getattr(type(self), "registered_name", type(self).__name__)
        self.image_size = check_image_size(name, image_size)
        unknown = sorted(set(options) - set(self.OPTIONS))
        if unknown:
            raise HarnessError(f"dataset {name!r} has no option {unknown[0]!r}; valid options: "
                               f"{', '.join(self.OPTIONS) or '(none)'}")
        self.options = {k: parse_choice(name, k, v, self.CHOICES[k]) for k, v in {**self.OPTIONS, **options}.items()}
        self._name = name

    def fingerprint(self) -> str:
        options = ",".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return f"{type(self).__name__}-v{self.VERSION}" + (f"[{options}]" if options else "")

    def _draw(self, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def sample(self, index: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """uint8 ``(H, W, 3)`` image and bool ``(H, W)`` mask, fully determined by ``(seed, index)``."""
        if index < 0 or seed < 0:
            raise HarnessError(f"{self._name} needs a non-negative index and seed, got index={index}, seed={seed}")
        image, mask = self._draw(np.random.default_rng([int(seed), int(index)]), self.image_size)
        return (_unit(image) * 255.0 + 0.5).astype(np.uint8), mask

    def generate(self, indices, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """float32 images ``(N, 3, H, W)`` in [0, 1] and float32 masks ``(N, 1, H, W)`` in {0, 1}."""
        return stack_samples(self.sample, indices, seed, self.image_size)


# -- drawing helpers (grid units: the image spans [-1, 1]) ---------------------------
def ellipse(y: np.ndarray, x: np.ndarray, cy: float, cx: float, along: float, across: float, tilt: float,
            taper: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised radius (1 on the outline), and the local axis coordinates ``u`` (along) and ``v`` (across).

    ``tilt`` turns the long axis from the +y direction; ``taper`` > 0 narrows the
    ``u < 0`` end (a bullet-shaped ventricle with its apex there).
    """
    dy, dx = y - cy, x - cx
    c, s = math.cos(tilt), math.sin(tilt)
    u = dy * c + dx * s
    v = dx * c - dy * s
    width = across * (1.0 + taper * np.clip(u / along, -1.0, 1.0)) if taper else across
    return np.sqrt((u / along) ** 2 + (v / width) ** 2), u, v


def soft(rho: np.ndarray, scale: float, size: int, blur_px: float) -> np.ndarray:
    """Opacity from a normalised radius: 1 inside, 0 outside, a ``blur_px`` ramp at ``rho == 1``.

    ``scale`` converts ``1 - rho`` to grid units (about the shape's short radius).
    """
    return _unit(0.5 + (1.0 - rho) * scale * (size / 2.0) / blur_px)


def wobble(rng: np.random.Generator, theta: np.ndarray, amount: float) -> np.ndarray:
    """``1 + small low-order Fourier terms`` in the angle, for irregular outlines (mean square >= 1)."""
    edge = np.ones_like(theta)
    for k in (2, 3, 4):
        edge += rng.uniform(0.0, amount / 3.0) * np.cos(k * theta + rng.uniform(0.0, 2.0 * math.pi))
    return edge


def field2(rng: np.random.Generator, size: int, cells_y: int, cells_x: int) -> np.ndarray:
    """Smooth unit-variance field with different correlation lengths along y and x (speckle, fibres)."""
    wy, _, _ = _basis(size, cells_y)
    wx, _, _ = _basis(size, cells_x)
    g = rng.standard_normal((cells_y + 3, cells_x + 3), dtype=np.float32)
    out = wy @ g @ wx.T
    return out / (out.std() + 1e-6)


def gray(values: np.ndarray) -> np.ndarray:
    """``(H, W)`` grey to ``(H, W, 3)``."""
    return np.repeat(values[..., None], 3, axis=2)
