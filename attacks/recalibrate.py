"""Serving move: the stolen model's probabilities recalibrated on the thief's labelled images (Platt scaling)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from attacks._serving import AffineLogits, ServingAttack
from harness.attack import Budget, attacker_subset, subset_size
from harness.registry import ATTACKS, look_up
from harness.segmenter import predict_logits

# Whether each method fits a bias as well as the slope.
METHODS = {"platt": True, "temperature": False}


def fit_platt(logits: torch.Tensor, masks: torch.Tensor, fit_bias: bool = True) -> tuple[float, float]:
    """(slope, bias) minimising the pixelwise BCE of ``sigmoid(slope * logits + bias)`` against ``masks``.

    The slope is ``exp`` of the optimised parameter, so it is positive and the
    order of the probabilities is kept. Deterministic: L-BFGS from the
    identity (slope 1, bias 0), in float64, on the logits' device.
    """
    z = logits.detach().double().flatten()
    y = masks.to(z.device, torch.float64).flatten()
    log_slope = torch.zeros((), dtype=torch.float64, device=z.device, requires_grad=True)
    bias = torch.zeros((), dtype=torch.float64, device=z.device, requires_grad=fit_bias)
    fitted = [log_slope, bias] if fit_bias else [log_slope]
    optimizer = torch.optim.LBFGS(fitted, max_iter=200, tolerance_grad=1e-10, tolerance_change=1e-14,
                                  line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(log_slope.exp() * z + bias, y)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return log_slope.exp().item(), bias.item()


@ATTACKS.register("recalibrate")
class Recalibrate(ServingAttack):
    """Platt scaling fitted on a share of the thief's labelled images (method "temperature": slope only, mask kept).

    Recalibration is standard practice, so a thief can deploy it as one. The
    fit sets the soft output by the thief's masks, and a mark that lives in
    the soft output is rescaled with it. With a bias (Platt) the mask may
    move; without one (``method="temperature"``) it is kept exactly. The
    fitted slope and bias are the served model's ``slope`` and ``bias``.
    """

    strength_name = "fraction of the thief's labelled images used"
    strength_range = (0.01, 1.0)
    default_strengths = (1.0,)
    presets = {"all": 1.0, "p10": 0.1}
    version = 1

    def __init__(self, method: str = "platt"):
        self.fit_bias = look_up(method, METHODS, "recalibration method")
        self.method = method

    def params(self) -> dict:
        return {"method": self.method}

    def serve(self, model, kit, strength, seed):
        data = attacker_subset(kit, strength, seed)
        logits = predict_logits(model, data.images, kit.preset.eval_batch_size)
        slope, bias = fit_platt(logits, data.masks, fit_bias=self.fit_bias)
        return AffineLogits(model, slope, bias)

    def budget(self, kit, strength):
        """The images used, with their masks, each sent once to the suspect to read its logits."""
        used = subset_size(kit, strength)
        return Budget(images=used, labels=True, queries=used)
