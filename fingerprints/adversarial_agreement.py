"""Adversarial agreement: does the suspect flip where the owner's model flips (IPGuard / DeepJudge RobD)?

IPGuard (Cao et al., AsiaCCS 2021) and DeepJudge's robustness tests (S&P 2022) fingerprint a
classifier with inputs near its decision boundary: adversarial examples made on the owner's model
transfer to copies of it far more than to independently trained models. For segmentation the
boundary is per pixel. When the key is made, for each of the owner's verification images:

1. a window (side ``window`` px) is centred on the pixel where the owner's logit is nearest zero,
   the place its mask is least sure of;
2. projected gradient descent on the input (L-inf radius ``eps``, ``steps`` signed steps of
   ``step``) pushes the owner's logits in the window across zero, to the opposite of its mask, with
   a margin;
3. the pixels of the window whose thresholded mask actually flipped are the image's region; images
   with none are left out of the key (the key records how many).

The key stores the perturbed images exactly (float32: uint8 rounding could undo the flip). A
suspect's image scores ``s`` = the share of region pixels where its mask on the perturbed image takes
the owner's flipped label, and ``r`` = the same share on the unperturbed image; the statistic is
``s - r``, how much the owner's perturbation moves the suspect the owner's way. The owner's model
scores exactly 1 by construction. It needs only hard masks (2M queries).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from harness.errors import HarnessError
from harness.fingerprint import Fingerprint
from harness.registry import FINGERPRINTS
from harness.segmenter import model_device, predict_proba


def boundary_windows(logits: torch.Tensor, side: int) -> torch.Tensor:
    """Bool (N, 1, H, W): per image, a ``side`` x ``side`` window centred on the pixel with the smallest
    |logit| (the first in raster order on ties), shifted to lie inside the image."""
    n, _, height, width = logits.shape
    side = min(side, height, width)
    flat = logits.abs().flatten(1).argmin(1)
    out = torch.zeros(logits.shape, dtype=torch.bool)
    for i, index in enumerate(flat.tolist()):
        row, col = divmod(index, width)
        top = min(max(row - side // 2, 0), height - side)
        left = min(max(col - side // 2, 0), width - side)
        out[i, 0, top : top + side, left : left + side] = True
    return out


def flip_attack(model, images: torch.Tensor, window: torch.Tensor, target: torch.Tensor, eps: float, step: float,
                steps: int, margin: float) -> torch.Tensor:
    """Images + a perturbation within ``eps`` (L-inf, pixels kept in [0, 1]) that pushes ``model``'s logits
    in ``window`` to the side ``target`` names. Gradients are taken for the perturbation only: the
    model's parameters, their ``.grad`` and its train/eval mode are left as they were."""
    device = model_device(model)
    was_training = model.training
    model.eval()
    x, window, sign = images.to(device), window.to(device).float(), (target.to(device) * 2 - 1)
    delta = torch.zeros_like(x, requires_grad=True)
    for _ in range(steps):
        logits = model((x + delta).clamp(0, 1))
        # Hinge per window pixel: zero once the logit is past zero by the margin, on the target's side.
        loss = (F.relu(margin - sign * logits) * window).sum() / window.sum().clamp_min(1)
        (grad,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            delta -= step * grad.sign()
            delta.clamp_(-eps, eps)
    model.train(was_training)
    return (x + delta.detach()).clamp(0, 1).cpu()


@FINGERPRINTS.register("adversarial-agreement")
class AdversarialAgreement(Fingerprint):
    """Share of the owner's adversarially flipped pixels that the suspect flips the same way."""

    def __init__(self, trigger: str | None = None, alpha: float = 0.01, eps: float = 8 / 255,
                 step: float = 1 / 255, steps: int = 20, window: int = 6, margin: float = 1.0):
        super().__init__(trigger, alpha)
        self.eps, self.step, self.steps = float(eps), float(step), int(steps)
        self.window, self.margin = int(window), float(margin)

    def scheme_params(self) -> dict:
        return {"eps": self.eps, "step": self.step, "steps": self.steps, "window": self.window,
                "margin": self.margin}

    def key_arrays(self, model, queries, seed):
        with torch.no_grad():
            logits = torch.logit(predict_proba(model, queries.images).double().clamp(1e-12, 1 - 1e-12)).float()
        windows = boundary_windows(logits, self.window)
        target = (logits <= 0).float()  # the opposite of the owner's mask
        perturbed = flip_attack(model, queries.images, windows, target, self.eps, self.step, self.steps, self.margin)
        flipped = (predict_proba(model, perturbed) > 0.5).float() == target
        region = windows & flipped
        kept = region.flatten(1).any(1)
        if not kept.any():
            raise HarnessError(f"adversarial-agreement: no key image's mask flipped within eps {self.eps:.4g} in "
                               f"{self.steps} steps (is the owner's model trained? its logits span "
                               f"{logits.min().item():.3g} to {logits.max().item():.3g})")
        return {"adversarial_index": np.flatnonzero(kept.numpy()).astype(np.int64),
                "adversarial_images": perturbed[kept].numpy().astype(np.float32),
                "adversarial_region": region[kept].numpy().astype(np.uint8),
                "adversarial_target": target[kept].numpy().astype(np.uint8)}

    def paired_scores(self, model, key):
        index = torch.from_numpy(key.arrays["adversarial_index"])
        clean = key.queries().images[index]
        perturbed = torch.from_numpy(key.arrays["adversarial_images"])
        region = torch.from_numpy(key.arrays["adversarial_region"]).bool()
        target = torch.from_numpy(key.arrays["adversarial_target"]).float()
        pixels = region.flatten(1).sum(1).double()

        def follows(images):
            agree = ((predict_proba(model, images) > 0.5).float() == target) & region
            return (agree.flatten(1).sum(1).double() / pixels).numpy()

        return follows(perturbed), follows(clean)

    def per_image(self, s, r):
        return s - r

    def queries_per_verification(self, key):
        return 2 * len(key.arrays["adversarial_index"])
