"""Serving move: test-time augmentation, the mean answer over flipped and rescaled views."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from attacks._serving import ServedModel, ServingAttack, full_precision, logits_of
from harness.registry import ATTACKS

# Flipped dimensions of each flip view, identity first.
FLIPS = ((), (-1,), (-2,), (-2, -1))
RESCALES = (0.75, 1.25)
# U-Nets halve the image four times: a side that is a multiple of 16 divides evenly.
SIDE_MULTIPLE = 16
VIEW_COUNTS = (2, 4, 6)


def rescaled_side(side: int, factor: float) -> int:
    """``side * factor`` rounded to a multiple of 16, away from ``side`` so that a small image is rescaled too.

    >>> rescaled_side(256, 0.75), rescaled_side(256, 1.25), rescaled_side(32, 0.75), rescaled_side(32, 1.25)
    (192, 320, 16, 48)
    """
    steps = side * factor / SIDE_MULTIPLE
    return SIDE_MULTIPLE * max(1, math.floor(steps) if factor < 1 else math.ceil(steps))


def _flipped(tensor: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    return tensor.flip(dims) if dims else tensor


def _resized(tensor: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(tensor, size=size, mode="bilinear", align_corners=False)


class AveragedViews(ServedModel):
    """Answers the mean probability over ``views`` views of each image, each view's answer mapped back to the image.

    2 views: identity and horizontal flip; 4: also the vertical and the double
    flip; 6: also the image resized by 0.75 and 1.25 (sides rounded to
    multiples of 16), whose logits are resized back bilinearly. A model built
    for one input size (unetr) cannot answer the rescaled views.
    """

    def __init__(self, model, views: int):
        super().__init__(model)
        self.views = int(views)

    def _view_logits(self, images: torch.Tensor):
        for dims in FLIPS[: min(self.views, len(FLIPS))]:
            yield _flipped(self.stolen_logits(_flipped(images, dims)), dims)
        if self.views > len(FLIPS):
            height, width = images.shape[-2:]
            for factor in RESCALES:
                view = _resized(images, (rescaled_side(height, factor), rescaled_side(width, factor)))
                yield _resized(self.stolen_logits(view), (height, width))

    def forward(self, images):
        probs = [torch.sigmoid(logits) for logits in self._view_logits(images)]
        with full_precision(probs[0]):
            return logits_of(torch.stack(probs).mean(0))


@ATTACKS.register("tta")
class TestTimeAugmentation(ServingAttack):
    """Test-time augmentation: the mean probability over 2, 4 or 6 flipped/rescaled views (mask nearly kept).

    A common accuracy trick, so a thief can deploy it as an improvement. A
    trigger's response that is not equivariant to the views is diluted by the
    views where it does not fire. The mask is not kept exactly: pixels where
    the views disagree may cross the threshold. Each answer costs ``views``
    forward passes of the stolen model, at serving time; the thief sends no
    extra query to anyone, so the budget counts none.
    """

    strength_name = "views averaged (2, 4 or 6)"
    strength_range = (2, 6)
    default_strengths = (4, 6)
    presets = {"flips2": 2, "flips4": 4, "flips4_scales": 6}
    integer_strength = True
    version = 1

    def check_strength(self, strength):
        value = super().check_strength(strength)
        if value not in VIEW_COUNTS:
            raise self.invalid_strength(strength, f"one of {', '.join(map(str, VIEW_COUNTS))}")
        return value

    def serve(self, model, kit, strength, seed):
        return AveragedViews(model, int(strength))
