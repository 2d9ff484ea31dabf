from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from attacks.ft_pseudo import pseudo_labels, thief_images
from harness.attack import Attack, Budget, attacker_subset, output_layer, subset_size
from harness.errors import HarnessError
from harness.presets import TrainConfig
from harness.registry import ATTACKS
from harness.training import fit

LABEL_SOURCES = ("masks", "pseudo")


@ATTACKS.register("ft-large-lr")
class FeatureShiftTuning(Attack):
    """FST: re-initialise the output layer, then fine-tune every layer at a large rate while pushing the new head
    away from the old one.

    Min, Qin, Shen and Cheng, "Towards Stable Backdoor Purification through Feature
    Shift Tuning", NeurIPS 2023; large-rate fine-tuning after re-initialising the
    head is also REFIT (Chen et al., "REFIT: a Unified Watermark Removal Framework
    for Deep Learning Systems with Limited Data", 2019/AsiaCCS 2021). FST's loss is
    the task loss plus ``alpha * <w, w_orig>``, the inner product of the new head's
    weight with the compromised one (fixed), and after every optimiser step the
    head's weight is rescaled to the original's L2 norm, so the penalty can only
    turn the head away from ``w_orig``, not shrink it. FST trains with SGD under a
    cosine schedule; here the harness's ``fit`` does (Adam, cosine-decayed per
    step). The rescaling is done at the start of the next step's loss and once more
    after ``fit``, which is the same sequence of weights as rescaling after each step.

    Segmentation: FST's "linear classifier" is the layer that maps features to
    logits; here that is the output convolution producing the logit channel
    (``harness.attack.output_layer``: a 1x1 convolution in basic-unet, the final
    3x3 one in MONAI's UNet), re-initialised with its own ``reset_parameters``
    (FST's uniform(+-1/sqrt(fan_in)) for a linear layer). The task loss is per-pixel
    BCE against the thief's masks (``labels="masks"``) or, for a thief without
    labels, the suspect's own thresholded answers (``labels="pseudo"``: one query
    per image, masks never read).

    Defaults: ``alpha`` 0.2 is FST's default. ``lr`` 3e-3, the owner's own peak
    training rate at tiny and 3x ``ftal``'s: the largest rate that kept the Dice
    drop within 5 points where any did. Measured at tiny (seed 0, basic-unet, Dice
    drop at 5 / 20 epochs): BadNets 1e-3 0.09 / -0.02, 3e-3 0.04 / -0.02, 5e-3
    0.08 / -0.02, 1e-2 0.19 / 0.08; StealthMark 1e-3 0.59 / 0.09, 3e-3 0.62 / 0.13,
    5e-3 0.44 / 0.16, 1e-2 0.44 / 0.32. So 1e-2 destroys utility, and on StealthMark
    no rate stays within 5 points: re-initialising the head alone costs that much
    there (``rtal`` at 5 epochs: 0.44; at 5e-3, ``alpha`` 0 or 0.2: 0.44 either way).
    """

    trains = True
    family = "fine-tuning"
    strength_name = "fine-tuning epochs"
    strength_range = (0.0, 500.0)
    default_strengths = (5.0, 20.0)
    presets = {"e5": 5.0, "e20": 20.0}
    integer_strength = True

    def __init__(self, lr: float = 3e-3, alpha: float = 0.2, labels: str = "masks", data_fraction: float = 1.0):
        if labels not in LABEL_SOURCES:
            raise HarnessError(f"attack 'ft-large-lr': labels must be one of {', '.join(LABEL_SOURCES)}, "
                               f"got {labels!r}")
        if lr <= 0:
            raise HarnessError(f"attack 'ft-large-lr': lr must be > 0, got {lr}")
        self.lr, self.alpha, self.labels, self.data_fraction = float(lr), float(alpha), labels, float(data_fraction)

    def params(self) -> dict:
        return {"lr": self.lr, "alpha": self.alpha, "labels": self.labels, "data_fraction": self.data_fraction}

    def budget(self, kit, strength):
        count = subset_size(kit, self.data_fraction)
        if self.labels == "pseudo":
            return Budget(images=count, labels=False, queries=count)
        return Budget(images=count, labels=True)

    def apply(self, model, kit, strength, seed):
        epochs = int(self.check_strength(strength))
        tuned = copy.deepcopy(model)
        if self.labels == "pseudo":
            images = thief_images(kit, self.data_fraction, seed)
            targets = pseudo_labels(tuned, images, kit)  # asked before the head is replaced: the suspect's answers
        else:
            data = attacker_subset(kit, self.data_fraction, seed)
            images, targets = data.images, data.masks
        head = output_layer(tuned)
        original = head.weight.detach().clone()
        norm = original.norm()
        if not norm > 0:
            raise HarnessError("attack 'ft-large-lr': the output layer's weight is all zero; "
                               "there is no norm to keep the new head at")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            head.reset_parameters()

        def keep_norm():
            with torch.no_grad():
                head.weight.mul_(norm.to(head.weight.device) / head.weight.norm())

        steps = 0

        def loss(net, images, targets, index):
            nonlocal steps
            if steps:  # the previous step's update, rescaled before it is used (FST rescales after each step)
                keep_norm()
            steps += 1
            shift = (head.weight * original.to(head.weight.device)).sum()
            return F.binary_cross_entropy_with_logits(net(images), targets) + self.alpha * shift

        config = TrainConfig(epochs=epochs, batch_size=kit.preset.train.batch_size, lr=self.lr)
        fit(tuned, images, targets, config, seed, desc="feature shift tuning", loss=loss)
        if steps:
            keep_norm()
        return tuned.eval()
