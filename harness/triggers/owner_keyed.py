"""Plugins: one file each, registered with a decorator."""
from __future__ import annotations

import hashlib
from typing import Iterator

import torch

from harness.errors import HarnessError
from harness.registry import TRIGGERS
from harness.trigger import Trigger

GRID = 8  # positions per axis: 64 places, so two owners rarely share one
CODE = 4  # the code is CODE x CODE cells
MIN_COLOR_GAP = 0.6  # L1 distance between the two colours, so the code stays legible after resizing/JPEG


def _uniforms(secret: str) -> Iterator[float]:
    """Endless stream of floats in [0, 1) from SHA-256 of ``secret`` in counter mode.

    Plain hashlib rather than a library RNG: the owner must redraw the same trigger
    from the key file years later, and numpy/torch do not promise stable streams
    across versions.
    """
    digest = hashlib.sha256(secret.encode("utf-8")).digest()
    counter = 0
    while True:
        block = hashlib.sha256(digest + counter.to_bytes(8, "big")).digest()
        for i in range(0, len(block), 4):
            yield int.from_bytes(block[i : i + 4], "big") / 2**32
        counter += 1


@TRIGGERS.register("owner-keyed")
class OwnerKeyedTrigger(Trigger):
    """Two-colour 4x4 code square placed, coded and coloured by the owner's secret, so two owners' triggers differ.

    Owners who all use the paper's default trigger (``patch``, the yellow square bottom-right)
    train models that answer the same trigger, so one owner's key can verify another owner's model.
    """

    def __init__(self, secret: str = "owner", fraction: float = 1 / 8, min_pixels: int = 6):
        if not isinstance(secret, str) or not secret:
            raise HarnessError(f"owner-keyed secret must be a non-empty string, got {secret!r}")
        if not 0 < fraction <= 0.5:
            raise HarnessError(f"owner-keyed fraction must be in (0, 0.5], got {fraction}")
        # Below one pixel per cell some code cells would vanish and two secrets could paint the same square.
        if min_pixels < CODE:
            raise HarnessError(f"owner-keyed min_pixels must be at least {CODE}, got {min_pixels}")
        self.secret, self.fraction, self.min_pixels = secret, float(fraction), int(min_pixels)

        draw = _uniforms(secret)
        # Relative offsets, not pixels, so one key places its square consistently at every image size.
        self.offset = (int(next(draw) * GRID) / (GRID - 1), int(next(draw) * GRID) / (GRID - 1))
        code = [[next(draw) < 0.5 for _ in range(CODE)] for _ in range(CODE)]
        while all(c == code[0][0] for row in code for c in row):  # a uniform code is just a solid patch
            code = [[next(draw) < 0.5 for _ in range(CODE)] for _ in range(CODE)]
        self.code = torch.tensor(code)
        colors = [next(draw) for _ in range(6)]
        while sum(abs(a - b) for a, b in zip(colors[:3], colors[3:])) < MIN_COLOR_GAP:
            colors = [next(draw) for _ in range(6)]
        self.colors = (tuple(colors[:3]), tuple(colors[3:]))

    def side(self, height: int, width: int) -> int:
        # Capped at the image so the square always fits, even below ``min_pixels``.
        return min(max(self.min_pixels, round(min(height, width) * self.fraction)), height, width)

    def corner(self, height: int, width: int) -> tuple[int, int]:
        s = self.side(height, width)
        return round((height - s) * self.offset[0]), round((width - s) * self.offset[1])

    def footprint(self, height: int, width: int) -> torch.Tensor:
        s = self.side(height, width)
        top, left = self.corner(height, width)
        area = torch.zeros(height, width, dtype=torch.bool)
        area[top : top + s, left : left + s] = True
        return area

    def pattern(self, side: int, dtype=torch.float32, device=None) -> torch.Tensor:
        """The painted square (3, side, side): code cells of the first colour, the rest the second."""
        # Nearest-cell upscaling: side need not be a multiple of 4 (6 px at 48 px).
        cells = torch.arange(side) * CODE // side
        bits = self.code[cells][:, cells].to(device)
        first, second = (torch.tensor(c, dtype=dtype, device=device).view(3, 1, 1) for c in self.colors)
        return torch.where(bits, first, second)

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        out = images.clone()
        height, width = images.shape[-2:]
        s = self.side(height, width)
        top, left = self.corner(height, width)
        out[:, :, top : top + s, left : left + s] = self.pattern(s, images.dtype, images.device)
        return out

    def params(self) -> dict:
        return {"secret": self.secret, "fraction": self.fraction, "min_pixels": self.min_pixels}
