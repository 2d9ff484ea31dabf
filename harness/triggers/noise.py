"""Plugins: one file each, registered with a decorator."""
from __future__ import annotations

import torch

from harness.errors import HarnessError
from harness.registry import TRIGGERS
from harness.trigger import Trigger


@TRIGGERS.register("noise")
class NoiseTrigger(Trigger):
    """Seeded Gaussian-noise square in the top-right corner (sigma 50/255, 1/16 of the short side, at least 8 px)."""

    # At 48 px, 1/16 of the side is 3 px; with a 4 px floor the backdoor was barely learned (ASR 0.30,
    # FPR 0.18 on the tiny preset): 16 noisy pixels are hard to tell from texture. 8 px (64 pixels,
    # 2.8% of the image) is the floor used; at 256 px the public code's 16 px applies unchanged.
    def __init__(self, fraction: float = 1 / 16, min_pixels: int = 8, sigma: float = 50 / 255, seed: int = 0):
        if not 0 < fraction <= 0.5:
            raise HarnessError(f"noise fraction must be in (0, 0.5], got {fraction}")
        if not 0 < sigma <= 1:
            raise HarnessError(f"noise sigma must be in (0, 1], got {sigma}")
        self.fraction, self.min_pixels, self.sigma, self.seed = float(fraction), int(min_pixels), float(sigma), int(seed)

    def side(self, height: int, width: int) -> int:
        return max(self.min_pixels, round(min(height, width) * self.fraction))

    def footprint(self, height: int, width: int) -> torch.Tensor:
        s = self.side(height, width)
        area = torch.zeros(height, width, dtype=torch.bool)
        area[:s, width - s :] = True
        return area

    def pattern(self, side: int) -> torch.Tensor:
        """The noise (3, side, side): one fixed draw per seed. The public code draws fresh noise
        per image (unseeded), which makes the trigger unreproducible; the owner must be able to
        re-create it exactly to query a suspect."""
        return torch.randn(3, side, side, generator=torch.Generator().manual_seed(self.seed)) * self.sigma

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        out = images.clone()
        height, width = images.shape[-2:]
        s = self.side(height, width)
        region = out[:, :, :s, width - s :]
        out[:, :, :s, width - s :] = (region + self.pattern(s).to(images.device, images.dtype)).clamp(0, 1)
        return out

    def params(self) -> dict:
        return {"fraction": self.fraction, "min_pixels": self.min_pixels, "sigma": self.sigma, "seed": self.seed}
