"""Plugins: one file each, registered with a decorator."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from harness.errors import HarnessError
from harness.registry import TRIGGERS
from harness.trigger import Trigger


@TRIGGERS.register("warp")
class WarpTrigger(Trigger):
    """WaNet-style smooth warp: sampling grid g -> g + s*sin(2*pi*g), as in the StealthMark code (s = 0.05)."""

    def __init__(self, strength: float = 0.05):
        if not 0 < strength <= 0.2:
            raise HarnessError(f"warp strength must be in (0, 0.2], got {strength}")
        self.strength = float(strength)

    def footprint(self, height: int, width: int) -> None:
        return None  # the warp moves every pixel, the lesion included

    def grid(self, height: int, width: int) -> torch.Tensor:
        """Sampling grid (1, H, W, 2) in normalised [-1, 1] coordinates (x, y)."""
        ys = torch.linspace(-1, 1, height)
        xs = torch.linspace(-1, 1, width)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        base = torch.stack([grid_x, grid_y], dim=-1)
        return (base + self.strength * torch.sin(2 * math.pi * base)).clamp(-1, 1)[None]

    def _warp(self, x: torch.Tensor, mode: str) -> torch.Tensor:
        grid = self.grid(*x.shape[-2:]).to(x.device, x.dtype).expand(len(x), -1, -1, -1)
        return F.grid_sample(x, grid, mode=mode, padding_mode="border", align_corners=True)

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        return self._warp(images, "bilinear").clamp(0, 1)

    def apply_to_mask(self, masks: torch.Tensor) -> torch.Tensor:
        # Bilinear keeps soft targets (probability maps) soft; binary masks are re-thresholded
        # so an agreement test still compares 0/1 with 0/1.
        warped = self._warp(masks.float(), "bilinear")
        binary = bool(((masks == 0) | (masks == 1)).all())
        return (warped > 0.5).to(masks.dtype) if binary else warped

    def params(self) -> dict:
        return {"strength": self.strength}
