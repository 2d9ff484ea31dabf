"""Procedural long-axis (four-chamber) cine MR slices with left-ventricle masks, generated offline.

Drawn the way a bright-blood (bSSFP) long-axis view looks: a dark background
around the chest, subcutaneous fat as a bright rim, grey muscle and liver, dark
lungs, and an obliquely tilted heart whose blood pools are bright and whose
myocardium is dark. The left ventricle's blood pool (``target=cavity``, default)
or its myocardial wall (``target=myocardium``) is the mask. Distractors: the
right ventricle and both atria are as bright as the LV blood, fat is as bright
again, papillary muscles and trabeculae darken the LV pool, and the liver and
muscle are as grey as the wall. A smooth multiplicative bias field (coil
sensitivity) and Rician noise (the magnitude of a complex Gaussian) finish it.
"""

from __future__ import annotations

import math

import numpy as np

from harness.datasets._procedural import ProceduralDataset, _field, _grid, _unit, ellipse, gray, soft, wobble
from harness.registry import DATASETS


@DATASETS.register("synthetic-cardiac-mr")
class SyntheticCardiacMR(ProceduralDataset):
    """Procedural long-axis cardiac MR slices with left-ventricle (or myocardium, target=myocardium) masks."""

    modality = "cardiac-mr"
    OPTIONS = {"target": "cavity"}
    CHOICES = {"target": ("cavity", "myocardium")}

    def _draw(self, rng, size):
        y, x, _ = _grid(size)
        blur = rng.uniform(0.7, 1.5)

        # Body: ellipse with a fat rim, muscle inside, lungs left and right, liver low on the image's left.
        body_rho, bu, bv = ellipse(y, x, rng.uniform(-0.05, 0.1), rng.uniform(-0.1, 0.1), rng.uniform(0.8, 0.95),
                                   rng.uniform(0.88, 1.05), math.pi / 2 + rng.uniform(-0.1, 0.1))
        body_rho = body_rho / wobble(rng, np.arctan2(bv, bu), 0.08)
        body = soft(body_rho, 0.9, size, blur)
        fat = np.exp(-(((body_rho - 0.93) / 0.05) ** 2)) * rng.uniform(0.6, 0.95)
        muscle = rng.uniform(0.25, 0.4) * (1.0 + 0.1 * _field(rng, size, 8))
        signal = body * (muscle + fat)
        lung_level = rng.uniform(0.02, 0.08)
        for side in (-1.0, 1.0):
            lung, _, _ = ellipse(y, x, rng.uniform(-0.4, -0.1), side * rng.uniform(0.45, 0.6), rng.uniform(0.4, 0.55),
                                 rng.uniform(0.25, 0.35), rng.uniform(-0.3, 0.3))
            a = soft(lung, 0.3, size, blur)
            signal = signal * (1 - a) + lung_level * a
        liver, _, _ = ellipse(y, x, rng.uniform(0.5, 0.7), rng.uniform(-0.6, -0.3), 0.35, 0.5, rng.uniform(-0.4, 0.4))
        a = soft(liver, 0.35, size, blur) * body
        signal = signal * (1 - a) + rng.uniform(0.3, 0.45) * a

        # Heart: long axis from the base (upper left) to the apex (lower right; mirrored in 1 of 5).
        tilt = rng.uniform(0.5, 1.1) * (1.0 if rng.uniform() < 0.8 else -1.0)
        along, across = rng.uniform(0.34, 0.45), rng.uniform(0.14, 0.2)
        cy, cx = rng.uniform(-0.1, 0.15), rng.uniform(-0.1, 0.15)
        c, s = math.cos(tilt), math.sin(tilt)
        wall = rng.uniform(0.06, 0.1)
        lv, lu, lvv = ellipse(y, x, cy, cx, along, across, tilt, taper=-0.35)  # narrow at the apex, u > 0
        lv = lv / wobble(rng, np.arctan2(lvv, lu), 0.06)
        epi, _, _ = ellipse(y, x, cy, cx, along + wall, across + wall, tilt, taper=-0.3)
        # Right ventricle beside the septum, atria beyond the base (u < -along).
        off = across + wall + rng.uniform(0.12, 0.18)
        # (c, s) points from the base to the apex in (y, x); (-s, c) points across the heart.
        rv, _, _ = ellipse(y, x, cy - s * off, cx + c * off, along * rng.uniform(0.7, 0.9),
                           rng.uniform(0.09, 0.14), tilt, taper=-0.5)
        base_y, base_x = cy - c * (along + 0.2), cx - s * (along + 0.2)
        la, _, _ = ellipse(y, x, base_y, base_x, rng.uniform(0.15, 0.22), rng.uniform(0.14, 0.2), tilt)
        ra, _, _ = ellipse(y, x, base_y - 0.8 * s * off, base_x + 0.8 * c * off, rng.uniform(0.14, 0.2),
                           rng.uniform(0.12, 0.18), tilt)

        epicardial_fat = np.exp(-(((epi - 1.12) / 0.07) ** 2)) * _unit(_field(rng, size, 4) + 0.2) * 0.7
        myo_level = rng.uniform(0.15, 0.28)
        heart = soft(epi, across + wall, size, blur)
        signal = signal * (1 - heart) + myo_level * heart + epicardial_fat * body
        blood_level = rng.uniform(0.75, 0.95)
        for chamber, scale in ((rv, 0.12), (la, 0.17), (ra, 0.15)):
            a = soft(chamber, scale, size, blur)
            signal = signal * (1 - a) + blood_level * rng.uniform(0.85, 1.05) * a
        pool = soft(lv, across, size, blur)
        # Papillary muscles and trabeculae: dark specks inside the pool (still cavity in the mask).
        trabeculae = _unit(_field(rng, size, 12) * 0.8 - 0.3) * _unit((lv - 0.55) * 4.0)
        papillary = np.zeros_like(pool)
        for _ in range(int(rng.integers(1, 3))):
            pu, pv = rng.uniform(-0.1, 0.5) * along, rng.uniform(-0.6, 0.6) * across
            py, px = cy + c * pu - s * pv, cx + s * pu + c * pv
            pr = max(rng.uniform(0.03, 0.06), 1.5 / size)
            papillary = np.maximum(papillary, np.exp(-((y - py) ** 2 + (x - px) ** 2) / (pr * pr)))
        lv_signal = blood_level * (1.0 - 0.6 * np.maximum(trabeculae, papillary))
        signal = signal * (1 - pool) + lv_signal * pool

        bias = np.exp(rng.uniform(0.15, 0.4) * _field(rng, size, 2))
        sigma = rng.uniform(0.02, 0.06)
        real = signal * bias + sigma * rng.standard_normal(signal.shape, dtype=np.float32)
        imag = sigma * rng.standard_normal(signal.shape, dtype=np.float32)
        image = np.sqrt(real * real + imag * imag)
        if self.options["target"] == "cavity":
            mask = lv < 1.0
        else:
            mask = (epi < 1.0) & ~(lv < 1.0)
        return gray(image.astype(np.float32)), mask
