"""Plugins: one file each, registered with a decorator."""
from __future__ import annotations

import torch

from harness.errors import HarnessError
from harness.registry import TRIGGERS
from harness.trigger import Trigger


@TRIGGERS.register("border")
class BorderTrigger(Trigger):
    """Black frame around the whole image (the public code's `black` trigger, 1/32 of the short side)."""

    def __init__(self, fraction: float = 1 / 32, min_pixels: int = 2):
        if not 0 < fraction < 0.25:
            raise HarnessError(f"border fraction must be in (0, 0.25), got {fraction}")
        if min_pixels < 1:
            raise HarnessError(f"border min_pixels must be at least 1, got {min_pixels}")
        self.fraction, self.min_pixels = float(fraction), int(min_pixels)

    def width(self, height: int, width: int) -> int:
        # 1/32 of 48 px rounds to 2, of 256 px to 8; a floor keeps tiny images from a 1-px frame.
        return max(self.min_pixels, round(min(height, width) * self.fraction))

    def footprint(self, height: int, width: int) -> torch.Tensor:
        w = self.width(height, width)
        area = torch.ones(height, width, dtype=torch.bool)
        area[w : height - w, w : width - w] = False
        return area

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        out = images.clone()
        out[:, :, self.footprint(*images.shape[-2:]).to(images.device)] = 0.0
        return out

    def params(self) -> dict:
        return {"fraction": self.fraction, "min_pixels": self.min_pixels}
