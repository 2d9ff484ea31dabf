"""Procedural colonoscopy-like images with polyp masks, generated offline.

Every image is drawn from ``np.random.default_rng([seed, index])`` alone, so an
image never depends on which other indices are requested and disjoint index
ranges give disjoint splits. All layers are whole-image numpy expressions on a
normalised coordinate grid (``[-1, 1]`` across the image), which keeps a 48x48
image well under a millisecond and makes the scene look the same at any size.

The scene is built the way an endoscope sees the colon: textured mucosa with a
per-image colour, a dark lumen with haustral folds around it, vessels, one or two
raised lesions, wet specular highlights, and the circular field of view of the
optics. Several mucosa layers (folds, lumen, vessels, highlights, colour
patches) deliberately overlap the lesions in colour and brightness, so a colour
threshold alone cannot segment them.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from harness.errors import HarnessError
from harness.registry import DATASETS

_MIN_SIZE, _MAX_SIZE = 16, 1024

# Constants are float32 so that numpy keeps every layer in float32: its float64
# cos and arctan2 cost several times more, and they dominate at 48x48. Scalars
# come from ``math`` for the same reason (a numpy float64 scalar would upcast).
_VESSEL_TINT = np.array([0.35, 0.75, 0.6], dtype=np.float32)  # darker and bluer-red
_GLINT = np.array([1.0, 0.98, 0.95], dtype=np.float32)
_PALE = np.array([0.95, 0.74, 0.7], dtype=np.float32)
_REDDER = np.array([1.03, 0.75, 0.82], dtype=np.float32)
# Healthy mucosa drifts along one of these per image: paler vs redder, or
# oranger vs pinker, so lesion-like hues also occur away from lesions.
_DRIFTS = np.array([[0.03, 0.06, 0.06], [0.01, 0.05, -0.02]], dtype=np.float32)


@lru_cache(maxsize=None)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``y, x`` in ``[-1, 1]`` and the radius from the centre."""
    axis = ((np.arange(size) + 0.5) * (2.0 / size) - 1.0).astype(np.float32)
    y, x = np.meshgrid(axis, axis, indexing="ij")
    r = np.sqrt(x * x + y * y)
    for a in (y, x, r):
        a.flags.writeable = False  # cached and shared by every sample
    return y, x, r


@lru_cache(maxsize=None)
def _basis(size: int, cells: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian interpolation weights from a ``cells``-wide knot lattice to pixels.

    A smooth random field is then ``w @ g @ w.T`` for a small normal matrix ``g``:
    two tiny matrix products instead of a per-image FFT or blur. Also returns the
    weights' derivative per pixel step, for exact field gradients, and ``gain``,
    which rescales every pixel to unit variance so amplitudes mean the same at
    any size.
    """
    step = 2.0 / cells
    knots = -1.0 - step + step * np.arange(cells + 3)  # one spare knot past each edge
    axis = (np.arange(size) + 0.5) * (2.0 / size) - 1.0
    width = 0.6 * step
    offset = axis[:, None] - knots[None, :]
    raw = np.exp(-0.5 * (offset / width) ** 2)
    total = raw.sum(axis=1, keepdims=True)
    w = raw / total
    # Quotient rule on raw / total, times the 2 / size units per pixel.
    draw = -raw * offset / width**2
    dw = (draw - w * draw.sum(axis=1, keepdims=True)) / total * (2.0 / size)
    row_gain = 1.0 / np.sqrt((w**2).sum(axis=1))
    gain = np.outer(row_gain, row_gain)
    out = tuple(a.astype(np.float32) for a in (w, dw, gain))
    for a in out:
        a.flags.writeable = False
    return out


def _knots(rng: np.random.Generator, cells: int) -> np.ndarray:
    """Normal knot values for a ``_basis(size, cells)`` field."""
    return rng.standard_normal((cells + 3, cells + 3), dtype=np.float32)


def _field(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth zero-mean unit-variance random field with about ``cells`` bumps across."""
    w, _, gain = _basis(size, cells)
    return (w @ _knots(rng, cells) @ w.T) * gain


def _unit(t: np.ndarray) -> np.ndarray:
    # np.clip's Python wrapper costs more than the work on a 48x48 array.
    return np.minimum(np.maximum(t, 0.0), 1.0)


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = _unit(t)
    return t * t * (3.0 - 2.0 * t)


def _contour_lines(rng: np.random.Generator, size: int, cells: int, width_px: float) -> np.ndarray:
    """Thin lines along the zero set of a smooth random field, ``width_px`` wide whatever its slope.

    ``|f| / |grad f|`` is the distance to the zero contour in pixels, so the zero
    crossings of the field become meandering vessel-like curves.
    """
    w, dw, _ = _basis(size, cells)
    g = _knots(rng, cells)
    f, fy, fx = w @ g @ w.T, dw @ g @ w.T, w @ g @ dw.T
    dist = np.abs(f) / (np.sqrt(fx * fx + fy * fy) + 1e-6)
    return np.exp(-((dist / width_px) ** 2))


class _Lesion:
    """One polyp: an irregular ellipse, its soft image footprint and its crisp mask."""

    def __init__(self, rng: np.random.Generator, size: int, view_radius: float, radius_frac: float):
        y, x, _ = _grid(size)
        # Radii are fractions of the image side; the grid spans 2 units per side.
        self.radius = 2.0 * radius_frac
        # Keep the centre where the optics see it: the lesion may touch the dark
        # rim of the field of view but can never sit in a black corner.
        reach = max(0.0, min(view_radius - self.radius, 1.0 - 0.6 * self.radius))
        angle, dist = rng.uniform(0.0, 2.0 * math.pi), reach * math.sqrt(rng.uniform())
        self.cy, self.cx = dist * math.sin(angle), dist * math.cos(angle)

        tilt = rng.uniform(0.0, math.pi)
        stretch = math.sqrt(rng.uniform(1.0, 1.7))  # area-preserving elongation
        dy, dx = y - self.cy, x - self.cx
        u = (dx * math.cos(tilt) + dy * math.sin(tilt)) / stretch
        v = (dy * math.cos(tilt) - dx * math.sin(tilt)) * stretch
        rho, theta = np.sqrt(u * u + v * v), np.arctan2(v, u)
        # Low-order Fourier wobble gives lobulated outlines; the summed amplitude
        # stays below 0.3, and the mean of (1 + wobble)^2 is >= 1, so the area
        # never falls under that of the unperturbed circle.
        edge = np.ones_like(theta)
        for k, amp in ((2, 0.10), (3, 0.10), (4, 0.05), (5, 0.05)):
            edge += rng.uniform(0.0, amp) * np.cos(k * theta + rng.uniform(0.0, 2.0 * math.pi))
        edge *= self.radius

        self.mask = rho < edge
        self.inside = rho / edge  # 0 at the centre, 1 on the outline
        # Soft 1-2 px blend in the image; the mask is the 0.5 level of this ramp.
        blur_px = rng.uniform(1.0, 2.5)
        self.alpha = _unit(0.5 + (edge - rho) * (size / 2.0) / blur_px)


def stack_samples(sample, indices, seed: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``sample(index, seed)`` (uint8 ``(H, W, 3)``, bool ``(H, W)``) for each index, stacked as float32
    images ``(N, 3, H, W)`` in [0, 1] and masks ``(N, 1, H, W)`` in {0, 1}; every procedural dataset's ``generate``."""
    indices = list(indices)
    images = np.empty((len(indices), size, size, 3), dtype=np.uint8)
    masks = np.empty((len(indices), size, size), dtype=bool)
    for row, index in enumerate(indices):
        images[row], masks[row] = sample(index, seed)
    return (torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0).contiguous(),
            torch.from_numpy(masks).unsqueeze(1).float())


@DATASETS.register("synthetic-polyp")
class SyntheticPolyp:
    """Procedural colonoscopy-like RGB images with polyp masks, generated offline."""

    modality = "colonoscopy"

    def __init__(self, image_size: int = 48):
        if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)):
            raise HarnessError(f"synthetic-polyp image_size must be an integer, got {image_size!r}")
        if not _MIN_SIZE <= image_size <= _MAX_SIZE:
            raise HarnessError(
                f"synthetic-polyp image_size must be between {_MIN_SIZE} and {_MAX_SIZE}, got {image_size}"
            )
        self.image_size = int(image_size)

    def sample(self, index: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """One image and its mask: uint8 ``(H, W, 3)`` and bool ``(H, W)``.

        Fully determined by ``(seed, index)``, both non-negative, through
        ``np.random.default_rng([seed, index])``: the same pair gives the same bits
        whatever else was generated before.
        """
        if index < 0 or seed < 0:
            raise HarnessError(f"synthetic-polyp needs a non-negative index and seed, got index={index}, seed={seed}")
        rng = np.random.default_rng([int(seed), int(index)])
        size = self.image_size
        y, x, r = _grid(size)

        view_radius = rng.uniform(0.98, 1.15)
        view = _smoothstep((view_radius - r) / rng.uniform(0.04, 0.1))

        colour, base = self._mucosa_colour(rng, size)
        light = self._illumination(rng, size, y, x, r)

        # The first lesion alone keeps the mask above 1% of the image: its radius is
        # >= 8% of the side (2% of the area) and its centre keeps most of it in
        # frame. A second, smaller one appears in about a quarter of the images.
        lesions = [_Lesion(rng, size, view_radius, math.exp(rng.uniform(math.log(0.08), math.log(0.28))))]
        if rng.uniform() < 0.25:
            lesions.append(_Lesion(rng, size, view_radius, rng.uniform(0.08, 0.15)))
        alpha = np.zeros((size, size), dtype=np.float32)
        for lesion in lesions:
            colour, light = self._paint_lesion(rng, size, lesion, base, colour, light)
            alpha = np.maximum(alpha, lesion.alpha)

        # Vessels go on after the lesions so they can fade there: a polyp's surface
        # hides the submucosal network.
        colour = colour * (1.0 - (self._vessels(rng, size) * (1.0 - 0.8 * alpha))[..., None] * _VESSEL_TINT)

        image = colour * light[..., None]
        highlight = self._highlights(rng, size, y, x, view_radius, lesions)
        image = image * (1.0 - highlight[..., None]) + highlight[..., None] * _GLINT
        image = image * view[..., None]
        image += rng.uniform(0.006, 0.02) * rng.standard_normal(image.shape, dtype=np.float32)

        mask = np.zeros((size, size), dtype=bool)
        for lesion in lesions:
            mask |= lesion.mask
        pixels = (_unit(image) * 255.0 + 0.5).astype(np.uint8)
        return pixels, mask

    def generate(self, indices, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Stack samples: float32 images ``(N, 3, H, W)`` in [0, 1], float32 masks ``(N, 1, H, W)`` in {0, 1}.

        Row ``k`` is ``sample(indices[k], seed)`` scaled by 1/255, so ``generate(range(a, b), seed)``
        splits never overlap and never depend on each other.
        """
        return stack_samples(self.sample, indices, seed, self.image_size)

    # -- layers -------------------------------------------------------------
    @staticmethod
    def _mucosa_colour(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Textured, patchily tinted mucosa ``(H, W, 3)`` and its pink/red/orange mean colour ``(3,)``."""
        red = rng.uniform(0.8, 0.97)
        green = red * rng.uniform(0.38, 0.58)
        blue = green * rng.uniform(0.72, 1.0)  # low: orange; near 1: pink
        base = np.array([red, green, blue], dtype=np.float32)
        tint = _field(rng, size, 3) * rng.uniform(0.2, 0.5)
        texture = 1.0 + rng.uniform(0.03, 0.08) * _field(rng, size, 14)
        return (base + tint[..., None] * _DRIFTS[rng.integers(len(_DRIFTS))]) * texture[..., None], base

    @staticmethod
    def _illumination(rng: np.random.Generator, size: int, y: np.ndarray, x: np.ndarray, r: np.ndarray) -> np.ndarray:
        """Brightness ``(H, W)``: light falloff, the dark lumen and the haustral folds around it."""
        light = (1.0 - rng.uniform(0.15, 0.4) * r * r) * (1.0 + 0.1 * _field(rng, size, 2))

        # The lumen is in view in most frames; otherwise the camera faces the wall.
        angle = rng.uniform(0.0, 2.0 * math.pi)
        dist = rng.uniform(0.0, 0.75) if rng.uniform() < 0.8 else rng.uniform(1.1, 1.6)
        dy, dx = y - dist * math.sin(angle), (x - dist * math.cos(angle)) * rng.uniform(0.8, 1.25)
        depth = np.sqrt(dx * dx + dy * dy) * (1.0 + 0.2 * _field(rng, size, 4))
        light = light * (1.0 - rng.uniform(0.55, 0.9) * np.exp(-((depth / rng.uniform(0.15, 0.35)) ** 2)))

        # Folds are rings around the lumen: a shadow on the lumen side and a lit
        # crest just outside, broken up where a smooth field says so.
        radius, spacing = rng.uniform(0.25, 0.5), rng.uniform(1.4, 1.9)
        folds = np.zeros((size, size), dtype=np.float32)
        for _ in range(rng.integers(1, 4)):
            t = (depth - radius) / rng.uniform(0.05, 0.12)
            folds += -rng.uniform(0.1, 0.3) * np.exp(-(t * t)) + rng.uniform(0.04, 0.12) * np.exp(-((t - 1.6) ** 2))
            radius *= spacing
        return light * (1.0 + folds * _unit(0.4 + _field(rng, size, 3)))

    @staticmethod
    def _vessels(rng: np.random.Generator, size: int) -> np.ndarray:
        """Darkening strength ``(H, W)`` of a thin vessel network, visible in patches."""
        width = max(0.6, size / 100.0)
        trunks = _contour_lines(rng, size, 5, width)
        twigs = _contour_lines(rng, size, 9, 0.7 * width)
        visible = _unit(0.8 * _field(rng, size, 3) + rng.uniform(-0.3, 0.6))
        return np.maximum(trunks, 0.6 * twigs) * visible * rng.uniform(0.1, 0.35)

    @staticmethod
    def _paint_lesion(
        rng: np.random.Generator,
        size: int,
        lesion: _Lesion,
        base: np.ndarray,
        colour: np.ndarray,
        light: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Blend one lesion's colour and texture into ``colour`` and its relief into ``light``.

        The lesion hue is defined relative to the image's mucosa ``base``, so it stays
        close enough to the surrounding tissue to need context to segment.
        """
        target = base * _REDDER if rng.uniform() < 0.55 else 0.55 * base + 0.45 * _PALE
        hue = base + rng.uniform(0.35, 1.0) * (target - base)  # flat, subtle lesions as well as obvious ones
        # Polyp surfaces are lobulated/pitted: a finer, stronger texture than mucosa.
        texture = 1.0 + rng.uniform(0.04, 0.12) * _field(rng, size, 22)
        a = lesion.alpha[..., None]
        colour = colour * (1.0 - a) + (hue * texture[..., None]) * a

        # Raised dome: surfaces facing the scope are brighter, the flanks darker,
        # and a shadowed ring hugs the outline on both sides.
        dome = np.sqrt(_unit(1.0 - lesion.inside * lesion.inside))
        relief = 1.0 + lesion.alpha * rng.uniform(0.1, 0.4) * (dome - 0.6)
        rim = np.exp(-(((lesion.inside - 1.0) / 0.25) ** 2))
        return colour, light * relief * (1.0 - rng.uniform(0.03, 0.15) * rim)

    @staticmethod
    def _highlights(
        rng: np.random.Generator, size: int, y: np.ndarray, x: np.ndarray, view_radius: float, lesions: list[_Lesion]
    ) -> np.ndarray:
        """Opacity ``(H, W)`` of small saturated specular reflections on wet tissue."""
        spots = []
        for _ in range(rng.integers(1, 6)):
            angle, dist = rng.uniform(0.0, 2.0 * math.pi), 0.9 * view_radius * math.sqrt(rng.uniform())
            spots.append((dist * math.sin(angle), dist * math.cos(angle)))
        # The top of a dome faces the light, so lesions often carry a glint too.
        for lesion in lesions:
            if rng.uniform() < 0.6:
                angle, dist = rng.uniform(0.0, 2.0 * math.pi), rng.uniform(0.0, 0.35) * lesion.radius
                spots.append((lesion.cy + dist * math.sin(angle), lesion.cx + dist * math.cos(angle)))
        glint = np.zeros((size, size), dtype=np.float32)
        for cy, cx in spots:
            # At least a pixel across, or glints vanish at 48x48.
            radius = max(rng.uniform(0.02, 0.05), 2.0 / size)
            elongation, tilt = rng.uniform(1.0, 3.0), rng.uniform(0.0, math.pi)
            dy, dx = y - cy, x - cx
            u = (dx * math.cos(tilt) + dy * math.sin(tilt)) / (radius * elongation)
            v = (dy * math.cos(tilt) - dx * math.sin(tilt)) / radius
            glint = np.maximum(glint, np.minimum(1.5 * np.exp(-(u * u + v * v)), 1.0))
        return glint
