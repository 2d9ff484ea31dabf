"""Named scalar reductions: a segmentation answer read as one number per image.

An explainer needs one scalar per (perturbed) image; a segmentation model gives
a probability map. A reduction maps sigmoid probabilities ``(B, 1, H, W)`` and
an optional pixel ``region`` (bool ``(H, W)``; ``None`` = every pixel) to a
tensor ``(B,)``. Every reduction is written in torch so that gradients flow
through it (white-box explainers such as ``captum-ig`` need that).

>>> import torch
>>> probs = torch.tensor([[[[0.2, 0.4], [0.6, 1.0]]]])
>>> get_reduction("foreground-mean")(probs, torch.tensor([[False, False], [True, True]]))
tensor([0.8000])
>>> get_reduction("background-mea")
Traceback (most recent call last):
...
harness.errors.HarnessError: unknown reduction 'background-mea'; did you mean 'background-mean' or 'foreground-mean'? Valid reductions: ...
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch

from harness.errors import HarnessError
from harness.registry import look_up

Reduction = Callable[[torch.Tensor, "torch.Tensor | None"], torch.Tensor]
"""(probs (B, 1, H, W), region (H, W) bool or None) -> (B,)."""

ScoreFn = Callable[[torch.Tensor, "torch.Tensor | None"], "torch.Tensor | np.ndarray"]
"""A detector's score: (probs (B, 1, H, W), region or None) -> (B,), a tensor (differentiable) or an array."""

_EPS = 1e-7
# The threshold that turns probabilities into the model's mask, as everywhere in the harness.
THRESHOLD = 0.5


def _region_mean(values: torch.Tensor, region: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values`` (B, H, W) over ``region`` (H, W) bool, or over every pixel."""
    if region is None:
        return values.mean(dim=(1, 2))
    weights = region.to(device=values.device, dtype=values.dtype)
    # A weighted sum instead of boolean indexing: same value, one fused kernel, same gradient.
    return (values * weights).sum(dim=(1, 2)) / weights.sum()


def background_mean(probs: torch.Tensor, region: torch.Tensor | None = None) -> torch.Tensor:
    """Mean probability over the background region: the pixels the model calls background
    (p <= 0.5) on the unperturbed image (see ``region_for``). A floor that lifts them is what
    StealthMark's trigger does."""
    return _region_mean(probs[:, 0], region)


def foreground_mean(probs: torch.Tensor, region: torch.Tensor | None = None) -> torch.Tensor:
    """Mean probability over the foreground region: the pixels the model calls object
    (p > 0.5) on the unperturbed image (see ``region_for``)."""
    return _region_mean(probs[:, 0], region)


def binary_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Entropy of a Bernoulli(p) in bits, elementwise: 0 at p in {0, 1}, 1 at p = 0.5."""
    p = probs.clamp(_EPS, 1 - _EPS)
    return -(p * torch.log2(p) + (1 - p) * torch.log2(1 - p))


def entropy_mean(probs: torch.Tensor, region: torch.Tensor | None = None) -> torch.Tensor:
    """Mean binary entropy (bits) of the pixel probabilities over the region: the answer's uncertainty."""
    return _region_mean(binary_entropy(probs[:, 0]), region)


def detector_score(probs: torch.Tensor, region: torch.Tensor | None = None, *, score: ScoreFn) -> torch.Tensor:
    """A detector's score of each answer, from a callable ``score(probs, region) -> (B,)`` (hook for
    a watermark's own detector; differentiable only if ``score`` returns a differentiable tensor)."""
    out = score(probs, region)
    out = out if isinstance(out, torch.Tensor) else torch.as_tensor(np.asarray(out), device=probs.device)
    if out.shape != (len(probs),):
        raise HarnessError(f"detector-score's score function must return one value per image, shape "
                           f"({len(probs)},); got shape {tuple(out.shape)}")
    return out


REDUCTIONS: dict[str, Callable] = {
    "background-mean": background_mean,
    "foreground-mean": foreground_mean,
    "entropy-mean": entropy_mean,
    "detector-score": detector_score,
}
"""Name -> reduction; the first line of each docstring describes it (``describe_reductions``)."""


def get_reduction(name: str, score: ScoreFn | None = None) -> Reduction:
    """The reduction called ``name``; ``detector-score`` needs ``score`` and no other takes one."""
    fn = look_up(name, REDUCTIONS, "reduction")
    if fn is detector_score:
        if score is None or not callable(score):
            raise HarnessError("reduction 'detector-score' needs a score function: score(probs, region) -> (B,)")
        return functools.partial(detector_score, score=score)
    if score is not None:
        raise HarnessError(f"reduction {name!r} takes no score function (only 'detector-score' does)")
    return fn


def describe_reductions() -> list[tuple[str, str]]:
    """(name, one-line description) of every reduction."""
    return [(name, " ".join((fn.__doc__ or "").split(". ")[0].split()).rstrip(".")) for name, fn in REDUCTIONS.items()]


def region_for(name: str, probs: torch.Tensor) -> torch.Tensor | None:
    """The pixel region ``name`` averages over, read from the model's answer on the unperturbed image.

    ``probs``: that answer, (H, W), (1, H, W) or (1, 1, H, W). background-mean: p <= 0.5;
    foreground-mean: p > 0.5; if the model calls no pixel that, every pixel (rather than a
    mean over nothing). entropy-mean and detector-score use every pixel: ``None``.
    """
    look_up(name, REDUCTIONS, "reduction")
    prob_map = torch.as_tensor(probs).detach()
    while prob_map.ndim > 2 and prob_map.shape[0] == 1:
        prob_map = prob_map[0]
    if prob_map.ndim != 2:
        raise HarnessError(f"region_for needs one probability map (H, W), got shape {tuple(torch.as_tensor(probs).shape)}")
    if name == "background-mean":
        region = prob_map <= THRESHOLD
    elif name == "foreground-mean":
        region = prob_map > THRESHOLD
    else:
        return None
    return region if region.any() else torch.ones_like(region)
