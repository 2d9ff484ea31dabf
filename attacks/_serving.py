"""Serving attacks: the stolen model answers through the thief's own serving code.

The base of the serving plugins (underscore: not a plugin itself).

A thief who runs a stolen model controls how it answers. Post-processing
its outputs (threshold them, rescale the logits, quantise or blur the
probabilities, average several views or a second model) costs nothing in GPU
time and keeps, or nearly keeps, the thresholded mask their users see. Yet
StealthMark keeps its evidence in the soft output: the background probability
on triggered inputs. So these are the first moves a thief tries, and a mark
that verifies only on raw probabilities is removed by the cheapest of them.

Each attack returns the stolen model wrapped in a ``ServedModel``: the model
is only queried, never modified, so the owner's copy stays bit-identical.
Post-processing is pure torch, deterministic, runs on whatever device the
model lives on, keeps gradients where the operation has them, and is computed
in float32 even under autocast.
"""

from __future__ import annotations

import torch
from torch import nn

from harness.attack import Attack, Budget
from harness.scoring import THRESHOLD

__all__ = ["AffineLogits", "SATURATED_LOGIT", "ServedModel", "ServingAttack", "full_precision", "logits_of",
           "on_stolen_side"]

# A finite logit whose sigmoid is exactly 1.0 (and whose negation gives exactly 0.0) in float32, and also in
# float16, bfloat16 and float64: float32 already saturates beyond |x| = 89, float64 beyond 745. An answer of
# exactly 0 or 1 must not become inf: a downstream mean or difference of logits would turn it into nan.
SATURATED_LOGIT = 1000.0

# The smallest logit the guard below gives a foreground pixel: its float32 sigmoid is 0.5 plus four ulps, so
# no rounding of the sigmoid brings it back to 0.5 (CPU float32 keeps 0.5 for every logit below ~9e-8).
_SMALLEST_FOREGROUND_LOGIT = 2.0**-20


def full_precision(tensor: torch.Tensor):
    """Autocast off on ``tensor``'s device: probabilities rounded to bfloat16 would be a second, undeclared move."""
    return torch.autocast(tensor.device.type, enabled=False)


def logits_of(probs: torch.Tensor) -> torch.Tensor:
    """Logits whose sigmoid gives ``probs`` back; exact 0 and 1 become -/+ ``SATURATED_LOGIT``, never infinite."""
    finfo = torch.finfo(probs.dtype)
    # Clamped first so that the branch torch.where discards stays finite: an inf there makes the gradient nan.
    inner = torch.logit(probs.clamp(finfo.tiny, 1 - finfo.eps / 2))
    return torch.where(probs <= 0, -SATURATED_LOGIT, torch.where(probs >= 1, SATURATED_LOGIT, inner))


def on_stolen_side(answer: torch.Tensor, stolen: torch.Tensor) -> torch.Tensor:
    """``answer`` logits, each moved onto the side of the threshold that the stolen model's logit is on.

    Scaling a logit keeps its sign but not its float32 sigmoid: a logit of 1e-7 is foreground (sigmoid
    0.50000006) and a quarter of it is background (sigmoid 0.5). A move that promises the stolen model's
    mask passes its answer through here, so the promise holds to the last pixel. Only answers within a
    hair of probability 0.5 move: to logit 0 (background) or 2**-20 (foreground).
    """
    foreground = torch.sigmoid(stolen) > THRESHOLD
    return torch.where(foreground, answer.clamp(min=_SMALLEST_FOREGROUND_LOGIT), answer.clamp(max=0.0))


class ServedModel(nn.Module):
    """The stolen model behind the thief's serving code: images (N, 3, H, W) in [0, 1] -> the logits served.

    The stolen model is the submodule ``model``; it is only queried. A subclass
    defines ``answer`` (the post-processing of one set of stolen logits), or
    overrides ``forward`` when it queries more than once per image or asks
    another model too.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def stolen_logits(self, images: torch.Tensor) -> torch.Tensor:
        """The stolen model's logits, in float32 also when it answered under autocast."""
        return self.model(images).float()

    def answer(self, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.stolen_logits(images)
        with full_precision(logits):
            return self.answer(logits)


class AffineLogits(ServedModel):
    """Answers ``slope * logit + bias`` with ``slope > 0``: the order of the probabilities is kept.

    Without a bias the map fixes logit 0, so the mask is the stolen model's,
    exactly (``on_stolen_side`` takes care of float32 rounding at the threshold).
    """

    def __init__(self, model: nn.Module, slope: float, bias: float = 0.0):
        super().__init__(model)
        self.slope = float(slope)
        self.bias = float(bias)

    def answer(self, logits):
        scaled = logits * self.slope + self.bias
        return on_stolen_side(scaled, logits) if self.bias == 0 else scaled


class ServingAttack(Attack):
    """Base of the serving attacks: the stolen model is served through ``serve(model, kit, strength, seed)``.

    A subclass defines ``serve``, which returns a ``ServedModel``. Nothing is
    trained per model (an attack that trains a model of the thief's own trains
    it once, not once per null), so ``trains`` stays False.
    """

    family = "serving"
    trains = False

    def serve(self, model: nn.Module, kit, strength: float, seed: int) -> ServedModel:
        raise NotImplementedError

    def apply(self, model, kit, strength, seed):
        return self.serve(model, kit, self.check_strength(strength), seed)

    def budget(self, kit, strength):
        """Post-processing alone spends none of the thief's images and sends no query beyond the verifier's own."""
        return Budget()

