"""Per-image scores for segmentation quality, output stealth and input stealth.

Every scorer is a plain function on tensors that returns one value per image,
shape (N,); ``summarize`` then averages those values. Averaging per image, not
pooling pixels over the batch, keeps a large lesion from outweighing a small
one and keeps empty images from being scored column by column.

Conventions shared by all scorers:

* ``probs``: float (N, 1, H, W) in [0, 1], the model's sigmoid outputs. A pixel
  is foreground when ``probs > 0.5``, strictly: a probability of exactly 0.5 is
  background.
* ``masks``: float or bool (N, 1, H, W) with values in {0, 1}.
* images: float (N, 3, H, W) in [0, 1].

Each scorer carries ``higher_is_better`` so a report can rank without a table
of directions; ``SCORERS`` lists them by name.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, TypeVar

import torch
from monai.metrics import compute_dice, compute_hausdorff_distance, compute_iou
from torchmetrics.functional.classification import binary_auroc
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

THRESHOLD = 0.5

ScorerFn = TypeVar("ScorerFn", bound=Callable[..., torch.Tensor])


def scorer(*, higher_is_better: bool) -> Callable[[ScorerFn], ScorerFn]:
    """Mark a function as a scorer and record its direction."""

    def mark(fn: ScorerFn) -> ScorerFn:
        fn.higher_is_better = higher_is_better  # type: ignore[attr-defined]
        return fn

    return mark


def _check_pair(a: torch.Tensor, b: torch.Tensor, channels: int) -> None:
    if a.ndim != 4 or a.shape[1] != channels or a.shape != b.shape:
        raise ValueError(
            f"expected two tensors of shape (N, {channels}, H, W), got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def _binarise(probs: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    _check_pair(probs, masks, channels=1)
    return probs > THRESHOLD, masks.bool()


@scorer(higher_is_better=True)
def dice(probs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Dice coefficient per image, 2|P∩G| / (|P| + |G|), in [0, 1]; higher is better.

    P is the set of pixels with ``probs > 0.5`` and G the set with ``masks == 1``.
    Computed by ``monai.metrics.compute_dice``. Empty cases, where the formula
    is 0/0 or degenerate:

    * G empty and P empty: 1.0 (the model agrees there is nothing);
    * G empty and P non-empty: 0.0;
    * G non-empty and P empty: 0.0.

    >>> masks = torch.zeros(2, 1, 4, 4)
    >>> masks[:, :, :2, :2] = 1                  # 4 lesion pixels in each image
    >>> probs = torch.zeros(2, 1, 4, 4)
    >>> probs[0, :, :2, :2] = 0.9                # image 0: exact
    >>> probs[1, :, :1, :2] = 0.9                # image 1: 2 of 4, nothing extra
    >>> dice(probs, masks)                       # 2*2 / (2 + 4) = 0.6667
    tensor([1.0000, 0.6667])
    """
    pred, truth = _binarise(probs, masks)
    return compute_dice(pred, truth.float(), include_background=True, ignore_empty=False)[:, 0]


@scorer(higher_is_better=True)
def iou(probs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Intersection over union (Jaccard) per image, |P∩G| / |P∪G|, in [0, 1]; higher is better.

    P and G as in ``dice``; computed by ``monai.metrics.compute_iou``. The
    empty cases follow ``dice``: both empty 1.0, exactly one empty 0.0.

    >>> masks = torch.zeros(2, 1, 4, 4)
    >>> masks[:, :, :2, :2] = 1
    >>> probs = torch.zeros(2, 1, 4, 4)
    >>> probs[0, :, :2, :3] = 0.9                # 4 right + 2 extra: 4 / 6
    >>> iou(probs, masks)                        # image 1 predicts nothing: 0
    tensor([0.6667, 0.0000])
    """
    pred, truth = _binarise(probs, masks)
    return compute_iou(pred.float(), truth.float(), include_background=True, ignore_empty=False)[:, 0]


@scorer(higher_is_better=False)
def hd95(probs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """95th-percentile symmetric Hausdorff distance per image, in pixels; lower is better.

    Computed by ``monai.metrics.compute_hausdorff_distance(percentile=95)``:
    for the boundary pixels of P and of G (P and G as in ``dice``), take the
    Euclidean distance from each boundary pixel to the other mask's boundary,
    the 95th percentile (linear interpolation) in each direction, and the
    larger of the two. Pixel spacing is 1.

    The distance is undefined when a mask is empty, so:

    * P and G both empty: 0.0;
    * exactly one of them empty: the image diagonal sqrt(H**2 + W**2), which
      exceeds any distance between two pixels of the image, so a missed or
      hallucinated lesion scores worse than any misplaced one.

    The result is never inf or NaN.

    >>> masks = torch.zeros(3, 1, 6, 8)
    >>> masks[:, 0, 0, 0] = 1
    >>> probs = torch.zeros(3, 1, 6, 8)
    >>> probs[0, 0, 3, 4] = 0.9                  # one pixel, 3 down and 4 across
    >>> probs[1, 0, 0, 0] = 0.9                  # exact
    >>> hd95(probs, masks)                       # image 2 is empty: sqrt(6**2 + 8**2)
    tensor([ 5.,  0., 10.])
    """
    pred, truth = _binarise(probs, masks)
    pred_any = pred.flatten(1).any(dim=1)
    truth_any = truth.flatten(1).any(dim=1)
    diagonal = math.hypot(probs.shape[-2], probs.shape[-1])
    out = torch.where(pred_any == truth_any, 0.0, diagonal)
    # Only pairs with two non-empty masks reach MONAI, which warns and returns NaN for the others.
    both = pred_any & truth_any
    if both.any():
        with warnings.catch_warnings():
            # MONAI 1.5+ warns about an argument its own helper passes; nothing for us to change.
            warnings.filterwarnings("ignore", category=FutureWarning, module="monai")
            distances = compute_hausdorff_distance(pred[both], truth[both], include_background=True, percentile=95)
        out[both] = distances[:, 0].to(out)
    return out


@scorer(higher_is_better=True)
def pixel_auc(probs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Area under the pixel-level ROC curve per image, in [0, 1]; higher is better.

    The AUROC of ranking the image's pixels by ``probs`` against ``masks`` as
    labels, from ``torchmetrics.functional.classification.binary_auroc``
    (exact, no threshold binning): the probability that a random lesion pixel
    gets a higher score than a random background pixel, ties counting half.
    It needs no threshold. An image whose mask is all 0 or all 1 has no AUROC
    and scores NaN; average with ``summarize``, which skips NaN.

    >>> masks = torch.tensor([0., 0., 1., 1.]).reshape(1, 1, 2, 2).repeat(2, 1, 1, 1)
    >>> masks[1] = 0                              # image 1 has no lesion
    >>> probs = torch.tensor([0.1, 0.4, 0.35, 0.8]).reshape(1, 1, 2, 2).repeat(2, 1, 1, 1)
    >>> pixel_auc(probs, masks)                   # 3 of 4 (lesion, background) pairs ordered
    tensor([0.7500,    nan])
    """
    _check_pair(probs, masks, channels=1)
    labels = masks.bool().flatten(1)
    scores = probs.flatten(1)
    out = torch.full((probs.shape[0],), float("nan"), device=probs.device)
    mixed = labels.any(dim=1) & ~labels.all(dim=1)
    for i in torch.nonzero(mixed).flatten().tolist():
        # Labels come from a bool mask, so they are already valid; skipping the check saves about a third.
        out[i] = binary_auroc(scores[i], labels[i].long(), validate_args=False)
    return out


@scorer(higher_is_better=False)
def flip_rate(
    probs_a: torch.Tensor, probs_b: torch.Tensor, exclude: torch.Tensor | None = None
) -> torch.Tensor:
    """Fraction of counted pixels whose binary mask differs between two outputs, in [0, 1]; lower is better.

    A pixel flips when exactly one of ``probs_a > 0.5`` and ``probs_b > 0.5``
    holds. ``exclude`` (bool, (H, W) for every image or (N, 1, H, W)) marks
    pixels that are not counted, such as a trigger's footprint, where any
    model's output may legitimately change; the rate is flips among counted
    pixels over the number of counted pixels. An image with every pixel
    excluded scores NaN. A stealthy watermark changes few pixels.

    >>> a = torch.full((1, 1, 4, 4), 0.9)
    >>> b = a.clone()
    >>> b[0, 0, 0, :] = 0.1                      # 4 of 16 pixels flip
    >>> flip_rate(a, b)
    tensor([0.2500])
    >>> footprint = torch.zeros(4, 4, dtype=torch.bool)
    >>> footprint[:2, :2] = True                 # hides 2 flipped pixels: 2 of 12
    >>> flip_rate(a, b, exclude=footprint)
    tensor([0.1667])
    """
    _check_pair(probs_a, probs_b, channels=1)
    flips = (probs_a > THRESHOLD) != (probs_b > THRESHOLD)
    counted = torch.ones_like(flips) if exclude is None else ~exclude.bool().expand_as(flips)
    return (flips & counted).flatten(1).sum(dim=1) / counted.flatten(1).sum(dim=1)


@scorer(higher_is_better=True)
def psnr(images_a: torch.Tensor, images_b: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio per image in dB, 10 log10(1 / MSE); higher is better.

    MSE is the mean squared difference over all channels and pixels of one
    image, with data range 1.0; computed by torchmetrics'
    ``peak_signal_noise_ratio``. Identical images have MSE 0 and score
    ``inf``, which is the right limit; ``summarize`` of a batch containing one
    is ``inf`` too, so report the count of identical images separately if
    that matters.

    >>> a = torch.full((2, 3, 8, 8), 0.5)
    >>> b = a.clone()
    >>> b[0] += 0.1                              # MSE 0.01 -> 20 dB
    >>> psnr(a, b)
    tensor([20.0000,     inf])
    """
    _check_pair(images_a, images_b, channels=images_a.shape[1])
    return peak_signal_noise_ratio(images_a, images_b, data_range=1.0, reduction="none", dim=(1, 2, 3))


@scorer(higher_is_better=True)
def ssim(images_a: torch.Tensor, images_b: torch.Tensor) -> torch.Tensor:
    """Structural similarity per image, the mean of the SSIM map; higher is better.

    torchmetrics' ``structural_similarity_index_measure`` with data range
    1.0, an 11x11 Gaussian window (sigma 1.5), k1 = 0.01 and k2 = 0.03,
    averaged over channels and pixels of each image. Identical images score
    1; the score lies in [-1, 1]. The window's reflection padding needs
    images of at least 6x6, so the benchmark's 32x32 to 64x64 are fine.

    For two constant images of values x and y the variances vanish and SSIM
    is (2xy + C1) / (x**2 + y**2 + C1) with C1 = 0.01**2:

    >>> a = torch.full((2, 3, 32, 32), 0.5)
    >>> b = a.clone()
    >>> b[0] = 0.6                               # 0.6001 / 0.6101
    >>> ssim(a, b)
    tensor([0.9836, 1.0000])
    """
    _check_pair(images_a, images_b, channels=images_a.shape[1])
    return structural_similarity_index_measure(images_a, images_b, data_range=1.0, reduction="none")


def summarize(values: torch.Tensor) -> float:
    """Mean of per-image scores as a Python float, skipping NaN; NaN if nothing is left.

    >>> summarize(torch.tensor([1.0, float("nan"), 0.0]))
    0.5
    >>> summarize(torch.tensor([float("nan")]))
    nan
    """
    return torch.nanmean(torch.as_tensor(values, dtype=torch.float64)).item()


SCORERS: dict[str, Callable[..., torch.Tensor]] = {
    fn.__name__: fn for fn in (dice, iou, hd95, pixel_auc, flip_rate, psnr, ssim)
}
