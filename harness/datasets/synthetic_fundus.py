"""Procedural retinal fundus photographs with optic disc / cup masks, generated offline.

The scene follows a fundus camera's view: an orange-red retina with choroidal
texture and vignetting inside the circular field of view, a darker macula, the
optic disc (a pale yellow ellipse) with a paler cup inside it, and the vascular
tree leaving the disc. Distractors overlap the target in colour and brightness:
vessels cross the disc rim, peripapillary atrophy adds a pale crescent next to
the disc, exudates/drusen are bright yellow dots elsewhere, and a bright
illumination patch can make ordinary retina as light as the rim.

``target=disc`` (default) masks the whole disc, cup included; ``target=cup`` the cup.
"""

from __future__ import annotations

import math

import numpy as np

from harness.datasets._procedural import (ProceduralDataset, _contour_lines, _field, _grid, _smoothstep, _unit,
                                          ellipse, soft, wobble)
from harness.registry import DATASETS

_VESSEL = np.array([0.55, 0.28, 0.3], dtype=np.float32)  # multiplies: darker, more saturated red
_DISC = np.array([1.0, 0.82, 0.52], dtype=np.float32)
_CUP = np.array([1.0, 0.93, 0.75], dtype=np.float32)
_EXUDATE = np.array([1.0, 0.9, 0.55], dtype=np.float32)


def _radial_vessels(rng, size, y, x, cy, cx, disc_r):
    """Darkening ``(H, W)`` of 4-7 curved trunks radiating from the disc centre, tapering outwards."""
    dy, dx = y - cy, x - cx
    rho = np.sqrt(dx * dx + dy * dy) + 1e-3
    phi = np.arctan2(dy, dx)
    n = int(rng.integers(2, 4))  # sin(n * angle) has 2n zero lines: 4..6 trunks
    phase = n * (phi + rng.uniform(-0.8, 0.8) * rho) + 1.2 * _field(rng, size, 3) + rng.uniform(0, 2 * math.pi)
    g = np.sin(phase)
    gy, gx = np.gradient(g)
    dist = np.abs(g) / (np.sqrt(gx * gx + gy * gy) + 1e-6)  # pixels to the nearest zero line
    width = max(0.7, size / 70.0) * np.maximum(1.6 - 0.7 * rho, 0.5)
    trunks = np.exp(-((dist / width) ** 2)) * _smoothstep((rho - 0.35 * disc_r) / (0.3 * disc_r))
    twigs = 0.6 * _contour_lines(rng, size, 8, max(0.5, size / 110.0)) * _unit(_field(rng, size, 3) + 0.3)
    return np.maximum(trunks, twigs) * rng.uniform(0.55, 0.9)


@DATASETS.register("synthetic-fundus")
class SyntheticFundus(ProceduralDataset):
    """Procedural retinal fundus images with optic disc (or cup, target=cup) masks, generated offline."""

    modality = "fundus"
    OPTIONS = {"target": "disc"}
    CHOICES = {"target": ("disc", "cup")}

    def _draw(self, rng, size):
        y, x, r = _grid(size)
        fov_r = rng.uniform(0.92, 1.02)
        fov = _smoothstep((fov_r - r) / 0.04)

        # Retina: per-image pigmentation, choroidal texture, vignetting, an uneven flash.
        red = rng.uniform(0.72, 0.92)
        base = np.array([red, red * rng.uniform(0.3, 0.55), red * rng.uniform(0.08, 0.35)], dtype=np.float32)
        texture = 1.0 + rng.uniform(0.03, 0.08) * _field(rng, size, 12) + rng.uniform(0.05, 0.12) * _field(rng, size, 4)
        light = (1.0 - rng.uniform(0.25, 0.5) * r * r)
        fy, fx = rng.uniform(-0.6, 0.6), rng.uniform(-0.6, 0.6)
        flash = np.exp(-((y - fy) ** 2 + (x - fx) ** 2) / rng.uniform(0.05, 0.3)) * rng.uniform(0.0, 0.6)
        colour = base * texture[..., None]

        # Disc on the nasal side (left or right), macula on the other.
        side = 1.0 if rng.uniform() < 0.5 else -1.0
        disc_r = 2.0 * rng.uniform(0.13, 0.19)
        cy, cx = rng.uniform(-0.15, 0.15), side * rng.uniform(0.15, 0.42)
        tilt = rng.uniform(-0.3, 0.3)
        stretch = math.sqrt(rng.uniform(1.0, 1.25))  # area preserving, a little taller than wide
        rho_d, u, v = ellipse(y, x, cy, cx, disc_r * stretch, disc_r / stretch, tilt)
        rho_d = rho_d / wobble(rng, np.arctan2(v, u), 0.06)
        disc = soft(rho_d, disc_r / stretch, size, rng.uniform(0.8, 1.8))

        cup_ratio = rng.uniform(0.45, 0.75)
        ccy = cy + rng.uniform(-0.12, 0.12) * disc_r
        ccx = cx + side * rng.uniform(-0.05, 0.2) * disc_r
        cup_r = cup_ratio * disc_r
        rho_c, uc, vc = ellipse(y, x, ccy, ccx, cup_r * stretch, cup_r / stretch, tilt + rng.uniform(-0.3, 0.3))
        rho_c = rho_c / wobble(rng, np.arctan2(vc, uc), 0.08)
        cup = soft(rho_c, cup_r / stretch, size, rng.uniform(1.2, 3.0)) * disc  # the cup's edge is fuzzy

        mx, my = cx - side * rng.uniform(0.8, 1.0), cy + rng.uniform(-0.1, 0.1)
        macula = np.exp(-((y - my) ** 2 + (x - mx) ** 2) / rng.uniform(0.02, 0.06))
        light = light * (1.0 - rng.uniform(0.2, 0.45) * macula)

        # Peripapillary atrophy: a pale crescent hugging the disc's temporal edge.
        if rng.uniform() < 0.45:
            ppa_rho, _, _ = ellipse(y, x, cy + rng.uniform(-0.1, 0.1) * disc_r, cx - side * 0.35 * disc_r,
                                    1.25 * disc_r, 1.25 * disc_r, 0.0)
            ppa = soft(ppa_rho, disc_r, size, 1.5) * (1.0 - disc) * rng.uniform(0.4, 0.8)
            colour = colour * (1 - ppa[..., None]) + (0.7 * _DISC + 0.3 * base) * ppa[..., None]

        # Disc and cup tones are relative to this retina: from a faint pink disc to a bright yellow one.
        rim = base + rng.uniform(0.3, 1.0) * (_DISC * rng.uniform(0.75, 1.0) - base)
        cup_tone = rim + rng.uniform(0.3, 1.0) * (_CUP * rng.uniform(0.85, 1.05) - rim)
        rim_tone = rim * (1.0 + 0.05 * _field(rng, size, 10))[..., None]
        colour = colour * (1.0 - disc[..., None]) + rim_tone * disc[..., None]
        colour = colour * (1.0 - cup[..., None]) + cup_tone * cup[..., None]

        # Exudates / drusen: bright yellow dots anywhere, often as bright as the cup.
        for _ in range(int(rng.integers(0, 9))):
            ey, ex = rng.uniform(-0.8, 0.8), rng.uniform(-0.8, 0.8)
            er = max(rng.uniform(0.015, 0.09), 1.2 / size)
            spot = _unit(1.5 * np.exp(-((y - ey) ** 2 + (x - ex) ** 2) / (er * er)))
            colour = colour * (1 - spot[..., None]) + _EXUDATE * rng.uniform(0.8, 1.0) * spot[..., None]

        vessels = _radial_vessels(rng, size, y, x, cy, cx, disc_r)
        colour = colour * (1.0 - vessels[..., None] * (1.0 - _VESSEL))
        image = (colour * light[..., None] + flash[..., None] * np.array([0.9, 0.75, 0.55], dtype=np.float32))
        image = image * fov[..., None]
        image += rng.uniform(0.005, 0.02) * rng.standard_normal(image.shape, dtype=np.float32)
        mask = (rho_d < 1.0) if self.options["target"] == "disc" else (rho_c < 1.0) & (rho_d < 1.0)
        return image, mask
