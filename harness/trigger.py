"""What every trigger family provides, so watermarks and baselines share them.

A trigger edits a batch of images in [0, 1] and says which pixels it touched
(its footprint). The footprint matters for output stealth: pixels under a
visible patch are hidden from every model, so a mask change there says
nothing about the watermark and is excluded from ``flip_rate``.
"""

from __future__ import annotations

import torch


class Trigger:
    """Base class: ``apply`` a trigger to images and report its ``footprint``."""

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        """Triggered copy of ``images`` (N, 3, H, W) in [0, 1]; the input is not modified."""
        raise NotImplementedError

    def footprint(self, height: int, width: int) -> torch.Tensor | None:
        """Bool (H, W), True where the trigger may change pixels; None for full-image triggers."""
        raise NotImplementedError

    def apply_to_mask(self, masks: torch.Tensor) -> torch.Tensor:
        """Where the objects of ``masks`` (N, 1, H, W) lie after the trigger.

        Identity for triggers that only paint pixels; a geometric trigger (a warp)
        moves the lesion, and every target and agreement test must follow it.
        """
        return masks

    def spec(self) -> dict:
        """Plain-data description, stored in keys and cache hashes."""
        return {"name": self.registered_name, **self.params()}

    def params(self) -> dict:
        return {}
