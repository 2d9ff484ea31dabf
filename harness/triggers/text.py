from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from harness.registry import TRIGGERS
from harness.trigger import Trigger


@TRIGGERS.register("text")
class TextTrigger(Trigger):
    """White text ("TEST", as in the StealthMark paper's figure) stamped at the top-left corner."""

    def __init__(self, text: str = "TEST", color=(1.0, 1.0, 1.0)):
        self.text, self.color = str(text), tuple(map(float, color))
        self._stencils: dict[tuple[int, int], torch.Tensor] = {}

    def stencil(self, height: int, width: int) -> torch.Tensor:
        """Bool (H, W): the glyph pixels. Pillow's built-in bitmap font keeps it offline and exact."""
        key = (height, width)
        if key not in self._stencils:
            canvas = Image.new("L", (width, height), 0)
            ImageDraw.Draw(canvas).text((1, 0), self.text, fill=255, font=ImageFont.load_default(size=max(8, height // 6)))
            self._stencils[key] = torch.from_numpy(np.asarray(canvas) > 127)
        return self._stencils[key]

    def footprint(self, height: int, width: int) -> torch.Tensor:
        # The glyphs' bounding box plus one pixel: anti-aliasing in the model's
        # receptive field makes the gaps between letters occluded too.
        glyphs = self.stencil(height, width)
        rows, cols = glyphs.any(1).nonzero().flatten(), glyphs.any(0).nonzero().flatten()
        box = torch.zeros_like(glyphs)
        box[: min(height, int(rows.max()) + 2), : min(width, int(cols.max()) + 2)] = True
        return box

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        out = images.clone()
        glyphs = self.stencil(*images.shape[-2:]).to(images.device)
        out[:, :, glyphs] = torch.tensor(self.color, dtype=images.dtype, device=images.device).view(1, 3, 1)
        return out

    def params(self) -> dict:
        return {"text": self.text, "color": list(self.color)}
