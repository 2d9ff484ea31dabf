"""Procedural apical four-chamber echocardiograms with left-ventricle cavity masks, generated offline.

An ultrasound sector fans out from the transducer at the top of the image. Inside
it tissue is drawn as echogenicity times Rayleigh-distributed speckle (the
magnitude of a smooth complex Gaussian field, stretched laterally like a real
point-spread function), with depth-dependent gain. The heart is seen from the
apex: the left ventricle (bullet shaped, on the image's right) is the target;
the right ventricle, both atria, the septum, the mitral valve and the bright
pericardium surround it. Distractors: every chamber is as dark as the left
ventricle, near-field clutter fills the apex with haze, and acoustic dropout
darkens parts of the walls so the cavity can bleed into its neighbours.
"""

from __future__ import annotations

import math

import numpy as np

from harness.datasets._procedural import ProceduralDataset, _field, _grid, _smoothstep, _unit, ellipse, field2, gray
from harness.registry import DATASETS


@DATASETS.register("synthetic-echo")
class SyntheticEcho(ProceduralDataset):
    """Procedural apical four-chamber ultrasound images with left-ventricle cavity masks, generated offline."""

    modality = "echocardiography"

    def _draw(self, rng, size):
        y, x, _ = _grid(size)
        apex_y = rng.uniform(-1.05, -0.9)
        dy, dx = y - apex_y, x
        depth = np.sqrt(dx * dx + dy * dy)
        angle = np.arctan2(dx, dy)  # 0 straight down
        half = rng.uniform(0.6, 0.8)
        max_depth = rng.uniform(1.75, 2.0)
        sector = _smoothstep((half - np.abs(angle)) / 0.03) * _smoothstep((max_depth - depth) / 0.04)

        # Chambers: LV on the image's right, RV on the left, atria beyond the valves.
        tilt = rng.uniform(-0.25, 0.25)
        lv_len, lv_w = rng.uniform(0.36, 0.5), rng.uniform(0.15, 0.22)
        lv_cy, lv_cx = apex_y + rng.uniform(0.35, 0.5) + lv_len, rng.uniform(0.12, 0.25)
        lv, _, _ = ellipse(y, x, lv_cy, lv_cx, lv_len, lv_w, tilt, taper=0.35)
        wall = rng.uniform(0.07, 0.11)
        myo, _, _ = ellipse(y, x, lv_cy, lv_cx, lv_len + wall, lv_w + wall, tilt, taper=0.3)
        rv_cy, rv_cx = lv_cy + rng.uniform(0.0, 0.12), lv_cx - lv_w - wall - rng.uniform(0.15, 0.22)
        rv, _, _ = ellipse(y, x, rv_cy, rv_cx, lv_len * rng.uniform(0.7, 0.9), rng.uniform(0.1, 0.16),
                           tilt + rng.uniform(-0.2, 0.1), taper=0.5)
        valve_y = lv_cy + lv_len * math.cos(tilt)
        la, _, _ = ellipse(y, x, valve_y + rng.uniform(0.2, 0.28), lv_cx + lv_len * math.sin(tilt),
                           rng.uniform(0.17, 0.25), rng.uniform(0.14, 0.2), tilt)
        ra, _, _ = ellipse(y, x, valve_y + rng.uniform(0.15, 0.25), rv_cx, rng.uniform(0.14, 0.22),
                           rng.uniform(0.12, 0.17), tilt)

        # Echogenicity: soft tissue, bright myocardium and pericardium, dark blood.
        tissue = rng.uniform(0.3, 0.5) * (1.0 + 0.25 * _field(rng, size, 4))
        myocardium = _unit((1.0 - myo) * 8.0) * rng.uniform(0.25, 0.45)
        peri = np.exp(-(((myo - 1.35) / 0.12) ** 2)) * rng.uniform(0.2, 0.5)
        echo = tissue + myocardium + peri
        blood_level = rng.uniform(0.02, 0.08)
        blood = np.zeros_like(echo)
        for chamber in (lv, rv, la, ra):
            blood = np.maximum(blood, _unit((1.0 - chamber) * rng.uniform(6.0, 12.0)))
        echo = echo * (1.0 - blood) + blood_level * blood
        # Mitral leaflets: a bright line across the LV base, sometimes open in the middle.
        leaflet_dist = np.abs(y - valve_y - (x - lv_cx) * math.tan(-tilt)) * (size / 2.0)
        leaflet = np.exp(-((leaflet_dist / max(0.7, size / 90)) ** 2)) * _unit((1.3 - lv) * 4.0)
        if rng.uniform() < 0.6:
            leaflet *= _unit(np.abs(x - lv_cx) / (0.5 * lv_w) - 0.5)
        echo = echo + leaflet * rng.uniform(0.3, 0.7)

        # Clutter at the apex, dropout of the lateral walls, time-gain compensation.
        clutter = np.exp(-(depth / rng.uniform(0.4, 0.7)) ** 2) * rng.uniform(0.1, 0.35) * _unit(
            0.5 + _field(rng, size, 5))
        dropout = 1.0 - rng.uniform(0.3, 0.8) * _unit(_field(rng, size, 3) - rng.uniform(0.0, 0.6))
        gain = (1.0 + rng.uniform(-0.4, 0.2) * depth / max_depth) * (1.0 + 0.1 * _field(rng, size, 2))
        echo = (echo * dropout + clutter) * gain

        cells = max(6, size // 3)
        re = field2(rng, size, cells, max(4, cells // 2))
        im = field2(rng, size, cells, max(4, cells // 2))
        speckle = np.sqrt(re * re + im * im) * (1.0 / math.sqrt(2.0))  # Rayleigh, mean about 0.89
        image = _unit(echo * speckle) ** rng.uniform(0.8, 1.1) * sector
        image = image + rng.uniform(0.0, 0.02) * rng.standard_normal(image.shape, dtype=np.float32) * sector
        return gray(image.astype(np.float32)), (lv < 1.0) & (sector > 0.5)
