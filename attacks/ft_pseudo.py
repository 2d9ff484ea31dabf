from __future__ import annotations

import copy

import torch
from torch import nn

from attacks._distillation import flipping_loss
from harness.attack import Attack, AttackerKit, Budget, subset_size
from harness.errors import HarnessError
from harness.presets import TrainConfig
from harness.registry import ATTACKS
from harness.segmenter import predict_logits
from harness.training import bce_loss, fit


def thief_images(kit: AttackerKit, fraction: float, seed: int) -> torch.Tensor:
    """The images of ``harness.attack.attacker_subset`` (same seeded draw), without touching the masks.

    An attack that claims ``labels=False`` must not even index the thief's masks: a thief
    without labels has none, and a NaN mask must not be able to reach the result.
    """
    count = subset_size(kit, fraction)
    order = torch.randperm(len(kit.data.images), generator=torch.Generator().manual_seed(seed))[:count]
    return kit.data.images[order]


def pseudo_labels(model: nn.Module, images: torch.Tensor, kit: AttackerKit) -> torch.Tensor:
    """The suspect's thresholded answers on ``images`` (one query per image): 1 where its logit is > 0.

    ``logit > 0`` is ``sigmoid > 0.5`` without the sigmoid's rounding to 0.5 of logits near 0.
    """
    return (predict_logits(model, images, kit.preset.eval_batch_size) > 0).float()


@ATTACKS.register("ft-pseudo")
class FineTunePseudoLabels(Attack):
    """Self-training: fine-tune every layer on the suspect's own thresholded masks of the thief's unlabelled images.

    The label-free member of the fine-tuning family (FTAL of Adi et al., USENIX
    Security 2018, with the ground truth replaced by pseudo-labels, as in
    self-training, Lee, ICML-W 2013 "Pseudo-Label"). The thief sends each of their
    images to the suspect once, keeps its masks (``logit > 0``) as targets and
    trains a copy with ``fit``. Segmentation needs no adaptation beyond using a
    per-pixel pseudo-label instead of a class. Hard (thresholded) targets: they are
    what an API that returns masks gives, and they carry none of the suspect's soft
    probabilities (where StealthMark's background floor lives) to copy. ``flip``
    (default on) mirrors a seeded random half of each minibatch, image and
    pseudo-label together (``attacks._distillation.flipping_loss``): without
    augmentation a model trained on its own answers has almost nothing to learn.
    ``kit.data.masks`` is never read.
    """

    trains = True
    family = "fine-tuning"
    strength_name = "fine-tuning epochs"
    strength_range = (0.0, 500.0)
    default_strengths = (5.0, 20.0)
    presets = {"e5": 5.0, "e20": 20.0, "e50": 50.0}
    integer_strength = True

    def __init__(self, lr: float = 1e-3, data_fraction: float = 1.0, flip: bool = True):
        if lr <= 0:
            raise HarnessError(f"attack 'ft-pseudo': lr must be > 0, got {lr}")
        self.lr, self.data_fraction, self.flip = float(lr), float(data_fraction), bool(flip)

    def params(self) -> dict:
        return {"lr": self.lr, "data_fraction": self.data_fraction, "flip": self.flip}

    def budget(self, kit, strength):
        count = subset_size(kit, self.data_fraction)
        return Budget(images=count, labels=False, queries=count)

    def apply(self, model, kit, strength, seed):
        epochs = int(self.check_strength(strength))
        images = thief_images(kit, self.data_fraction, seed)
        tuned = copy.deepcopy(model)
        targets = pseudo_labels(tuned, images, kit)  # the copy answers exactly as the suspect does
        config = TrainConfig(epochs=epochs, batch_size=kit.preset.train.batch_size, lr=self.lr)
        loss = flipping_loss(seed) if self.flip else bce_loss
        return fit(tuned, images, targets, config, seed, desc="fine-tune on pseudo-labels", loss=loss)
