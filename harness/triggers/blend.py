"""Plugins: one file each, registered with a decorator."""
from __future__ import annotations

import torch

from harness.errors import HarnessError
from harness.registry import TRIGGERS
from harness.trigger import Trigger


@TRIGGERS.register("blend")
class BlendTrigger(Trigger):
    """Blended (Chen et al. 2017): a seeded full-image noise pattern alpha-blended into every pixel."""

    def __init__(self, alpha: float = 0.1, seed: int = 0):
        if not 0 < alpha < 1:
            raise HarnessError(f"blend alpha must be in (0, 1), got {alpha}")
        self.alpha, self.seed = float(alpha), int(seed)

    def footprint(self, height: int, width: int) -> None:
        return None  # every pixel changes: there is nothing to exclude from flip_rate

    def pattern(self, height: int, width: int) -> torch.Tensor:
        """Uniform noise (3, H, W), fixed by the seed (the paper's random-pattern variant)."""
        return torch.rand(3, height, width, generator=torch.Generator().manual_seed(self.seed))

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        pattern = self.pattern(*images.shape[-2:]).to(images.device, images.dtype)
        return (1 - self.alpha) * images + self.alpha * pattern

    def params(self) -> dict:
        return {"alpha": self.alpha, "seed": self.seed}
