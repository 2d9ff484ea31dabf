from __future__ import annotations

import copy

import torch

from attacks._channels import find_units
from harness.attack import Attack, Budget
from harness.registry import ATTACKS


def channel_lipschitz_bounds(unit) -> torch.Tensor:
    """UCLC of each output channel of ``unit``: its kernel's spectral norm, times the batch-norm scale if any.

    Computed in float64 on the CPU: the singular values of a few hundred small
    matrices, deterministic and cheap.
    """
    kernels = unit.kernels().to("cpu", torch.float64)
    bounds = torch.linalg.matrix_norm(kernels, ord=2)
    scale = unit.batch_norm_scale()
    return bounds if scale is None else bounds * scale.to("cpu", torch.float64)


@ATTACKS.register("clp")
class ChannelLipschitzPruning(Attack):
    """Channel Lipschitzness-based Pruning (Zheng et al., ECCV 2022): data-free pruning of channels with outlying UCLC.

    Zheng, Zhang, Wang and Hu, "Data-free Backdoor Removal based on Channel
    Lipschitzness", ECCV 2022. A backdoor is carried by a few channels that
    respond very strongly to a small trigger: such a channel has a large
    Lipschitz constant. For every convolution, each output channel's upper
    bound (UCLC) is the largest singular value of its kernel reshaped to an
    (in_channels, kernel positions) matrix, times |gamma| / sqrt(running_var + eps)
    of the batch norm it feeds (CLP folds the norm into the convolution; a
    convolution that feeds no batch norm counts its weight alone). Within each
    layer the channels whose UCLC exceeds mean + u * std (sample standard
    deviation over that layer's channels, as the authors' code computes it)
    are pruned: their output is made exactly zero (``Unit.silence`` in
    ``attacks._channels``: gamma and beta of the batch norm zeroed).

    Segmentation: nothing in the rule depends on the task. It reads neither
    images nor masks nor the model's outputs: it is data-free for a segmenter
    exactly as for a classifier. What the task changes is what may not be
    pruned: the output layer and any convolution with as many channels as the
    model has logit channels are left alone (pruning the single logit channel
    of a binary segmenter would erase the mask, not a feature). Convolution and
    norm are paired by data flow on one all-zero probe (``find_units``), not by
    module order, so MONAI's U-Nets (whose transposed up-convolutions feed a
    concatenation, not a norm) are handled. Strength is u: lower prunes more.
    The paper's u = 3 is the moderate default and u = 2.5 the strong one: on
    ``tiny`` basic-unet models (clean, BadNets, StealthMark) u = 3 pruned 5-10
    of 896 channels for 0.01-0.035 Dice, u = 2.5 12-21 channels for
    0.05-0.12, and u = 2 33-38 channels for 0.2-0.26.
    """

    family = "backdoor-removal"
    strength_name = "u: UCLC threshold in layer standard deviations above the mean (lower prunes more)"
    strength_range = (0.0, 10.0)
    default_strengths = (3.0, 2.5)
    presets = {"u3": 3.0, "u2_5": 2.5, "u2": 2.0}

    def apply(self, model, kit, strength, seed):
        u = self.check_strength(strength)
        pruned = copy.deepcopy(model).eval()
        size = kit.preset.image_size
        for unit in find_units(pruned, (1, 3, size, size)):
            if unit.channels < 2:
                continue  # no spread to stand out from
            bounds = channel_lipschitz_bounds(unit)
            outliers = torch.nonzero(bounds > bounds.mean() + u * bounds.std()).flatten()
            # Zeroes the batch norm's gamma and beta, not the filter: a zeroed filter would still leave
            # the norm emitting beta - gamma * mean / std on that channel (see ``Unit.silence``).
            unit.silence(outliers)
        return pruned.eval()

    def budget(self, kit, strength):
        return Budget()  # weights only: no images, no masks, no queries
