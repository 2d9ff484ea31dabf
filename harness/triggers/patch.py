from __future__ import annotations

import torch

from harness.errors import HarnessError
from harness.registry import TRIGGERS
from harness.trigger import Trigger


@TRIGGERS.register("patch")
class PatchTrigger(Trigger):
    """Solid yellow square in the bottom-right corner (BadNets-style)."""

    def __init__(self, fraction: float = 1 / 12, min_pixels: int = 4, color=(1.0, 1.0, 0.0)):
        if not 0 < fraction <= 0.5:
            raise HarnessError(f"patch fraction must be in (0, 0.5], got {fraction}")
        self.fraction, self.min_pixels, self.color = float(fraction), int(min_pixels), tuple(map(float, color))

    def side(self, height: int, width: int) -> int:
        # The public code uses 1/16 of the short side at 256 px; at 48 px that is a
        # 3-pixel speck, so small images get a floor of ``min_pixels``.
        return max(self.min_pixels, round(min(height, width) * self.fraction))

    def footprint(self, height: int, width: int) -> torch.Tensor:
        s = self.side(height, width)
        area = torch.zeros(height, width, dtype=torch.bool)
        area[height - s :, width - s :] = True
        return area

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        out = images.clone()
        area = self.footprint(*images.shape[-2:]).to(images.device)
        color = torch.tensor(self.color, dtype=images.dtype, device=images.device).view(1, 3, 1)
        out[:, :, area] = color
        return out

    def params(self) -> dict:
        return {"fraction": self.fraction, "min_pixels": self.min_pixels, "color": list(self.color)}
