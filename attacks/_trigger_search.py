"""Neural Cleanse trigger inversion (Wang et al., IEEE S&P 2019) for per-pixel binary segmentation.

The base of the ``nc-unlearn`` plugin (underscore: not a plugin itself).

A trigger is a mask ``m`` (1, 1, H, W) and a pattern ``p`` (1, 3, H, W), both
in [0, 1] as sigmoids of free tensors (NC uses tanh / 2 + 0.5: the same map up
to scale); a stamped image is ``(1 - m) * x + m * p``. NC looks, for each
target class, for the smallest mask (L1 norm) that sends the inputs to that
class, and calls the class whose minimal mask is an outlier backdoored.

A binary segmenter has no classes, but a backdoor still has a direction: the
pixels the clean answer calls background (``p(x) <= 0.5``, the suspect's own
answer on the unstamped image) move up. There are two targets, each searched
separately, both over the clean-background pixels ``B`` of every image:

* ``foreground`` (BadNets-like targets, e.g. the inverted mask): the thresholded
  mask flips 0 -> 1. Objective: mean over ``B`` of ``-log sigmoid(z(x'))``, NC's
  cross-entropy towards the target class; a pixel has reached the target when
  ``z(x') > 0``.
* ``background`` (StealthMark's shift): the background probability rises to a
  floor below 0.5 and the mask need not flip. Objective: mean over ``B`` of
  ``relu(logit(floor) + margin - z(x'))``, a hinge in logit space: it stops
  pushing once a pixel is past the floor, so this search does not turn into the
  first one, and it keeps a unit gradient for confident background pixels
  whose probability gradient vanishes. A pixel has reached the target when
  ``sigmoid(z(x')) >= floor``.

``success`` is the share of ``B`` (over the minibatch) that reached the target,
NC's attack success rate; the target is reached when it is at least ``reach``.

The loss adds ``lam * mean(m)`` (the mask's L1 norm per pixel, so that ``lam``
does not depend on the image size; NC's ``init_cost`` of 1e-3 on the sum over
32x32 pixels is about 1 on the mean) under NC's adaptive schedule: the cost
starts at 0, is set to ``lam`` once the target has been reached for
``patience`` consecutive steps, and is then multiplied by 1.5 after
``patience`` steps in a row at the target and divided by 1.5 ** 1.5 after
``patience`` steps in a row below it. The result is the smallest mask (by
mean) seen at the target, as NC keeps ``mask_best``; when the target is never
reached it is the last mask. NC counts patience in epochs of many steps; here
a step is one minibatch, as the thief's budget is a few dozen steps.

Choosing between the two. NC flags a class when its minimal mask is an
outlier by the median absolute deviation over all classes; with two
candidates MAD is degenerate (the median is their mean, both deviate equally).
The rule used instead: a candidate qualifies when it reached its target with
a mask of at most ``max_mask`` of the image (a backdoor trigger is small by
design; a natural adversarial pattern that moves a whole mask is not).
Among qualifying candidates ``foreground`` wins: a flip implies a shift, so a
flip trigger found with a small mask is the stronger backdoor, and the
``background`` search on a flip backdoor tends to return only a partial
trigger (the part enough to reach the floor). If neither qualifies, the
candidate with the higher leverage (``success / mean(m)``: background moved
per unit of mask) is returned; the thief cannot tell a clean model from a
marked one without nulls, and unlearning a non-trigger is only occlusion
augmentation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harness.device import as_input, autocast, model_device
from harness.errors import HarnessError
from harness.segmenter import predict_logits

KINDS = ("foreground", "background")
_UP, _DOWN = 1.5, 1.5**1.5  # NC's cost multipliers


@dataclass
class TriggerCandidate:
    kind: str
    mask: torch.Tensor  # (1, 1, H, W) in [0, 1], on the CPU
    pattern: torch.Tensor  # (1, 3, H, W) in [0, 1], on the CPU
    norm: float  # mean of the mask: the share of the image it covers
    success: float  # share of clean-background pixels that reached the target
    reached: bool

    @property
    def leverage(self) -> float:
        return self.success / max(self.norm, 1e-8)


def stamp(images: torch.Tensor, mask: torch.Tensor, pattern: torch.Tensor) -> torch.Tensor:
    """``(1 - mask) * images + mask * pattern``: NC's trigger applied to a batch."""
    return (1 - mask) * images + mask * pattern


def _objective(logits: torch.Tensor, background: torch.Tensor, kind: str, floor: float,
               margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, success) over the clean-background pixels; see the module docstring."""
    count = background.sum().clamp_min(1)
    if kind == "foreground":
        per_pixel, reached = F.softplus(-logits), logits > 0
    else:
        level = math.log(floor / (1 - floor))
        per_pixel, reached = F.relu(level + margin - logits), logits >= level
    loss = (per_pixel * background).sum() / count
    success = (reached & background).sum() / count
    return loss, success


def search_trigger(model: nn.Module, images: torch.Tensor, background: torch.Tensor, kind: str, seed: int,
                   steps: int = 60, lam: float = 1.0, batch_size: int = 8, lr: float = 0.5,
                   floor: float = 0.1, margin: float = 0.5, reach: float = 0.8, patience: int = 5,
                   init_mask: float = 0.01) -> TriggerCandidate:
    """One NC search for ``kind`` on ``model`` (left untouched: eval mode, no parameter gradients).

    ``background`` (N, 1, H, W) bool marks the pixels the clean answer calls
    background. Minibatches and the initial pattern come from a generator
    seeded by ``seed``. The mask starts at ``init_mask`` everywhere rather than
    NC's uniform random mask, and the rate is 0.5, not NC's 0.1: with a few
    dozen steps there is no time to shrink a half-covering mask, and the
    cost-free first phase grows it where it pays.
    """
    if kind not in KINDS:
        raise HarnessError(f"unknown trigger kind {kind!r}; valid: {', '.join(KINDS)}")
    device = model_device(model)
    generator = torch.Generator().manual_seed(seed)
    height, width = images.shape[-2:]
    mask_logit = torch.full((1, 1, height, width), math.log(init_mask / (1 - init_mask)), device=device)
    pattern_logit = torch.logit(torch.rand(1, 3, height, width, generator=generator).clamp(0.05, 0.95)).to(device)
    mask_logit.requires_grad_(True)
    pattern_logit.requires_grad_(True)
    optimizer = torch.optim.Adam([mask_logit, pattern_logit], lr=lr, betas=(0.5, 0.9))  # NC's Adam betas

    was_training = model.training
    flags = [p.requires_grad for p in model.parameters()]
    model.eval().requires_grad_(False)
    cost, set_counter, up, down = 0.0, 0, 0, 0
    best, last = None, None
    try:
        for _ in range(int(steps)):
            batch = torch.randperm(len(images), generator=generator)[:batch_size]
            x, bg = images[batch].to(device), background[batch].to(device)
            mask, pattern = torch.sigmoid(mask_logit), torch.sigmoid(pattern_logit)
            with autocast(device):
                logits = model(as_input(stamp(x, mask, pattern), device, channels_last=True)).float()
            task, success = _objective(logits, bg, kind, floor, margin)
            norm = mask.mean()
            optimizer.zero_grad(set_to_none=True)
            (task + cost * norm).backward()
            optimizer.step()

            success, norm = float(success), float(norm.detach())
            last = (mask.detach(), pattern.detach(), norm, success)
            at_target = success >= reach
            if at_target and (best is None or norm < best[2]):
                best = last
            if cost == 0:
                set_counter = set_counter + 1 if at_target else 0
                if set_counter >= patience:
                    cost, up, down = float(lam), 0, 0
            else:
                up, down = (up + 1, 0) if at_target else (0, down + 1)
                if up >= patience:
                    cost, up = cost * _UP, 0
                elif down >= patience:
                    cost, down = cost / _DOWN, 0
    finally:
        model.train(was_training)
        for parameter, flag in zip(model.parameters(), flags):
            parameter.requires_grad_(flag)
    chosen = best if best is not None else last
    mask, pattern, norm, success = chosen
    return TriggerCandidate(kind, mask.cpu(), pattern.cpu(), norm, success, best is not None)


def choose(candidates: list[TriggerCandidate], max_mask: float = 0.1) -> TriggerCandidate:
    """The candidate to unlearn, by the rule in the module docstring."""
    qualifying = [c for c in candidates if c.reached and c.norm <= max_mask]
    for kind in KINDS:  # "foreground" first
        for candidate in qualifying:
            if candidate.kind == kind:
                return candidate
    return max(candidates, key=lambda c: c.leverage)


def clean_background(model: nn.Module, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Bool (N, 1, H, W): where the suspect's answer on the unstamped image is background."""
    return predict_logits(model, images, batch_size) <= 0


def search_both(model: nn.Module, images: torch.Tensor, seed: int, background: torch.Tensor | None = None,
                **options) -> list[TriggerCandidate]:
    """One candidate per kind (``foreground``, ``background``), each seeded from ``seed``."""
    if background is None:
        background = clean_background(model, images)
    return [search_trigger(model, images, background, kind, seed + salt, **options)
            for salt, kind in enumerate(KINDS)]


def invert_trigger(model: nn.Module, images: torch.Tensor, seed: int, max_mask: float = 0.1,
                   **options) -> tuple[torch.Tensor, torch.Tensor, str]:
    """NC's trigger inversion for a segmenter: (mask (1,1,H,W), pattern (1,3,H,W), kind) of the chosen trigger.

    ``options`` go to ``search_trigger`` (steps, lam, batch_size, lr, floor,
    margin, reach, patience, init_mask). ``model`` is left bit-identical.
    """
    chosen = choose(search_both(model, images, seed, **options), max_mask)
    return chosen.mask, chosen.pattern, chosen.kind
