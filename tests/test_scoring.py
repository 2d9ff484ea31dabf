"""Scorers against values counted by hand on tiny masks and images."""

from __future__ import annotations

import doctest
import math

import pytest
import torch

import harness.scoring
from harness.scoring import SCORERS, dice, flip_rate, hd95, iou, pixel_auc, psnr, ssim, summarize


def batch(*grids: list[list[float]]) -> torch.Tensor:
    """(N, 1, H, W) float tensor from nested lists, one grid per image."""
    return torch.tensor(grids, dtype=torch.float32).unsqueeze(1)


# 4x4 truth with a 2x2 lesion (4 pixels) in the top-left corner.
TRUTH = [
    [1, 1, 0, 0],
    [1, 1, 0, 0],
    [0, 0, 0, 0],
    [0, 0, 0, 0],
]
# Two of the four lesion pixels plus one false positive: |P| = 3, |G| = 4, |P∩G| = 2, |P∪G| = 5.
PARTIAL = [
    [0.9, 0.9, 0.9, 0.0],
    [0.1, 0.2, 0.0, 0.0],
    [0.0, 0.0, 0.0, 0.0],
    [0.0, 0.0, 0.0, 0.0],
]
EMPTY = [[0.0] * 4 for _ in range(4)]


# -- dice ---------------------------------------------------------------------


def test_dice_partial_overlap():
    # 2 |P∩G| / (|P| + |G|) = 2*2 / (3 + 4) = 4/7
    assert dice(batch(PARTIAL), batch(TRUTH)).tolist() == pytest.approx([4 / 7])


def test_dice_of_empty_prediction_on_large_lesion_is_zero():
    # A 96x96 image with a lesion in columns 30..65 (36 columns, all rows).
    # Summing over axes (1, 2) scored each of the 96 columns separately: the 60
    # lesion-free columns agreed (empty vs empty, 1 each) and the 36 lesion
    # columns scored 0, giving 60/96 = 0.625. Per image: |P∩G| = 0, so Dice = 0.
    masks = torch.zeros(1, 1, 96, 96)
    masks[..., 30:66] = 1
    probs = torch.zeros(1, 1, 96, 96)
    assert dice(probs, masks).tolist() == [0.0]
    assert iou(probs, masks).tolist() == [0.0]


def test_dice_empty_cases():
    truth = batch(EMPTY, EMPTY, TRUTH)
    probs = batch(EMPTY, PARTIAL, EMPTY)
    # both empty -> 1; truth empty, prediction not -> 0; truth not, prediction empty -> 0
    assert dice(probs, truth).tolist() == [1.0, 0.0, 0.0]


def test_threshold_is_strictly_greater_than_half():
    # 0.5 everywhere is an empty prediction, so on an empty truth Dice is 1, not 0.
    assert dice(torch.full((1, 1, 4, 4), 0.5), torch.zeros(1, 1, 4, 4)).tolist() == [1.0]
    # Just above 0.5 everything is foreground: 2*4 / (16 + 4) = 0.4
    assert dice(torch.full((1, 1, 4, 4), 0.5001), batch(TRUTH)).tolist() == pytest.approx([0.4])


def test_dice_accepts_bool_masks():
    assert dice(batch(PARTIAL), batch(TRUTH).bool()).tolist() == pytest.approx([4 / 7])


def test_per_image_average_differs_from_pooled():
    # Image 0: one-pixel lesion found exactly -> Dice 1.
    # Image 1: 8-pixel lesion, empty prediction -> Dice 0.
    # Per image mean: (1 + 0) / 2 = 0.5.
    # Pooled, as one 4x8 image holding both: 2*1 / (1 + 9) = 0.2.
    truth0 = [[0.0] * 4 for _ in range(4)]
    truth0[0][0] = 1.0
    truth1 = [[1.0] * 4, [1.0] * 4, [0.0] * 4, [0.0] * 4]
    probs0 = [[0.0] * 4 for _ in range(4)]
    probs0[0][0] = 0.8
    probs, masks = batch(probs0, EMPTY), batch(truth0, truth1)
    values = dice(probs, masks)
    assert values.tolist() == [1.0, 0.0]
    assert summarize(values) == pytest.approx(0.5)
    side_by_side = (torch.cat([probs[0], probs[1]], dim=-1)[None], torch.cat([masks[0], masks[1]], dim=-1)[None])
    assert dice(*side_by_side).tolist() == pytest.approx([0.2])


# -- iou ----------------------------------------------------------------------


def test_iou_partial_overlap():
    # |P∩G| / |P∪G| = 2 / 5
    assert iou(batch(PARTIAL), batch(TRUTH)).tolist() == pytest.approx([0.4])


def test_iou_empty_cases():
    truth = batch(EMPTY, EMPTY, TRUTH)
    probs = batch(EMPTY, PARTIAL, EMPTY)
    assert iou(probs, truth).tolist() == [1.0, 0.0, 0.0]


# -- hd95 ---------------------------------------------------------------------


def test_hd95_single_pixels_at_known_distance():
    # Pixels (0, 0) and (3, 4): sqrt(3**2 + 4**2) = 5 in both directions.
    masks = torch.zeros(2, 1, 6, 8)
    probs = torch.zeros(2, 1, 6, 8)
    masks[0, 0, 0, 0] = 1
    probs[0, 0, 3, 4] = 0.9
    # Pixels (5, 0) and (5, 7): 7 apart along the bottom row.
    masks[1, 0, 5, 0] = 1
    probs[1, 0, 5, 7] = 0.9
    assert hd95(probs, masks).tolist() == pytest.approx([5.0, 7.0])


def test_hd95_identical_masks_is_zero():
    assert hd95(batch(TRUTH), batch(TRUTH)).tolist() == [0.0]


def test_hd95_empty_cases_use_image_diagonal():
    # 6x8 image: diagonal sqrt(6**2 + 8**2) = 10.
    masks = torch.zeros(3, 1, 6, 8)
    probs = torch.zeros(3, 1, 6, 8)
    masks[1, 0, 2, 2] = 1  # missed lesion
    probs[2, 0, 2, 2] = 0.9  # lesion where there is none
    assert hd95(probs, masks).tolist() == [0.0, 10.0, 10.0]


def test_hd95_ignores_the_worst_five_percent():
    # Truth: row 0, columns 0..39 (a 1-pixel-thick line, so every pixel is boundary).
    # Prediction: the same line plus one stray pixel at (7, 0), 7 pixels below it.
    # Prediction -> truth distances: forty 0s and one 7; the 95th percentile by
    # linear interpolation sits at rank 0.95 * 40 = 38 of 0..40, a 0.
    # Truth -> prediction: all 0. So HD95 = 0 while the plain Hausdorff distance is 7.
    masks = torch.zeros(1, 1, 8, 48)
    masks[0, 0, 0, :40] = 1
    probs = masks * 0.9
    probs[0, 0, 7, 0] = 0.9
    assert hd95(probs, masks).tolist() == pytest.approx([0.0], abs=1e-6)


def test_hd95_is_always_finite():
    generator = torch.Generator().manual_seed(0)
    masks = (torch.rand(6, 1, 16, 16, generator=generator) > 0.7).float()
    probs = torch.rand(6, 1, 16, 16, generator=generator)
    masks[0] = 0
    probs[1] = 0
    masks[2] = 0
    probs[2] = 0
    values = hd95(probs, masks)
    assert values.shape == (6,)
    assert torch.isfinite(values).all()
    assert values[2] == 0.0
    assert values[0] == values[1] == pytest.approx(math.hypot(16, 16))


# -- pixel_auc ----------------------------------------------------------------


def test_pixel_auc_perfect_reversed_and_constant():
    truth = [[0, 0], [1, 1]]
    ranked = [[0.1, 0.2], [0.7, 0.8]]  # every lesion pixel above every background pixel
    reversed_ = [[0.8, 0.7], [0.2, 0.1]]  # every lesion pixel below
    masks = batch(truth, truth, [[0, 0], [0, 0]], [[1, 1], [1, 1]])
    probs = batch(ranked, reversed_, ranked, ranked)
    values = pixel_auc(probs, masks)
    assert values[:2].tolist() == [1.0, 0.0]
    assert torch.isnan(values[2:]).all()
    assert summarize(values) == pytest.approx(0.5)


def test_pixel_auc_counts_ordered_pairs():
    # Lesion scores {0.35, 0.8}, background {0.1, 0.4}. Of the 4 (lesion,
    # background) pairs, 0.35 > 0.1, 0.8 > 0.1, 0.8 > 0.4 are ordered and
    # 0.35 < 0.4 is not: AUC = 3/4.
    values = pixel_auc(batch([[0.1, 0.4], [0.35, 0.8]]), batch([[0, 0], [1, 1]]))
    assert values.tolist() == pytest.approx([0.75])


def test_pixel_auc_ties_count_half():
    # A constant score ties every pair: AUC = 1/2.
    values = pixel_auc(torch.full((1, 1, 2, 2), 0.3), batch([[0, 1], [0, 1]]))
    assert values.tolist() == pytest.approx([0.5])


# -- flip_rate ----------------------------------------------------------------


def test_flip_rate_with_and_without_footprint():
    a = torch.full((2, 1, 4, 4), 0.9)
    b = a.clone()
    b[0, 0, 0, :] = 0.1  # image 0: the 4 pixels of row 0 flip; image 1: none
    # Without exclusion: 4 / 16 = 0.25 and 0 / 16.
    assert flip_rate(a, b).tolist() == [0.25, 0.0]
    # Footprint = top-left 2x2: hides 2 flipped pixels (row 0, cols 0-1) and
    # 2 unflipped ones; 12 pixels counted, 2 of them flipped: 2/12.
    footprint = torch.zeros(4, 4, dtype=torch.bool)
    footprint[:2, :2] = True
    assert flip_rate(a, b, exclude=footprint).tolist() == pytest.approx([2 / 12, 0.0])


def test_flip_rate_per_image_footprint():
    a = torch.full((2, 1, 4, 4), 0.9)
    b = a.clone()
    b[:, 0, 0, :] = 0.1  # both images: row 0 flips (4 of 16)
    exclude = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    exclude[0, 0, 0, :] = True  # image 0 hides the whole flipped row: 0 / 12
    exclude[1, 0, 3, :] = True  # image 1 hides an unflipped row: 4 / 12
    assert flip_rate(a, b, exclude=exclude).tolist() == pytest.approx([0.0, 4 / 12])


def test_flip_rate_uses_the_same_strict_threshold():
    a = torch.full((1, 1, 2, 2), 0.5)
    b = torch.tensor([0.4, 0.5, 0.51, 0.49]).reshape(1, 1, 2, 2)
    # 0.5 is background like 0.4, 0.5 and 0.49; only 0.51 is foreground: 1 of 4.
    assert flip_rate(a, b).tolist() == [0.25]


def test_flip_rate_everything_excluded_is_nan():
    a = torch.zeros(1, 1, 3, 3)
    assert torch.isnan(flip_rate(a, a + 0.9, exclude=torch.ones(3, 3, dtype=torch.bool))).all()


# -- psnr ---------------------------------------------------------------------


def test_psnr_of_known_mse():
    a = torch.full((3, 3, 8, 8), 0.5)
    b = a.clone()
    b[0] = 0.6  # MSE 0.1**2 = 0.01 -> 10 log10(1 / 0.01) = 20 dB
    b[1, :, :4] = 0.7  # half the pixels off by 0.2: MSE 0.04 / 2 = 0.02 -> 10 log10(50) dB
    values = psnr(a, b)
    assert values[:2].tolist() == pytest.approx([20.0, 10 * math.log10(50)], rel=1e-5)
    assert values[2] == float("inf")


# -- ssim ---------------------------------------------------------------------


def test_ssim_of_identical_images_is_one():
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    assert ssim(images, images).tolist() == pytest.approx([1.0, 1.0])


def test_ssim_of_constant_images():
    # Constant images have zero variance, so SSIM = (2xy + C1) / (x**2 + y**2 + C1)
    # with C1 = (0.01 * 1.0)**2: x = 0.5, y = 0.6 -> 0.6001 / 0.6101.
    a = torch.full((1, 3, 32, 32), 0.5)
    b = torch.full((1, 3, 32, 32), 0.6)
    assert ssim(a, b).tolist() == pytest.approx([0.6001 / 0.6101], rel=1e-5)


def test_ssim_decreases_with_noise():
    generator = torch.Generator().manual_seed(2)
    clean = torch.rand(1, 3, 48, 48, generator=generator).repeat(4, 1, 1, 1)
    noise = torch.randn(1, 3, 48, 48, generator=generator)
    levels = torch.tensor([0.0, 0.05, 0.1, 0.2]).reshape(4, 1, 1, 1)
    values = ssim(clean, (clean + levels * noise).clamp(0, 1))
    assert values[0] == pytest.approx(1.0)
    assert (values[1:] < values[:-1]).all()
    assert values[-1] < 0.9


# -- summarize ----------------------------------------------------------------


def test_summarize_skips_nan_and_returns_float():
    value = summarize(torch.tensor([0.2, float("nan"), 0.4]))
    assert isinstance(value, float)
    assert value == pytest.approx(0.3)
    assert math.isnan(summarize(torch.tensor([float("nan"), float("nan")])))


# -- the collection -----------------------------------------------------------

DIRECTIONS = {
    "dice": True,
    "iou": True,
    "hd95": False,
    "pixel_auc": True,
    "flip_rate": False,
    "psnr": True,
    "ssim": True,
}


def test_every_scorer_declares_its_direction():
    assert set(SCORERS) == set(DIRECTIONS)
    for name, fn in SCORERS.items():
        assert fn.higher_is_better is DIRECTIONS[name], name


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_every_scorer_returns_one_value_per_image(name):
    generator = torch.Generator().manual_seed(3)
    channels = 3 if name in ("psnr", "ssim") else 1
    a = torch.rand(5, channels, 48, 48, generator=generator)
    b = torch.rand(5, channels, 48, 48, generator=generator)
    if name not in ("flip_rate", "psnr", "ssim"):
        b = (b > 0.5).float()
    values = SCORERS[name](a, b)
    assert values.shape == (5,)
    assert values.dtype.is_floating_point


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_mismatched_shapes_are_rejected(name):
    with pytest.raises(ValueError, match="expected two tensors"):
        SCORERS[name](torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 9))


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_every_scorer_documents_direction_and_example(name):
    doc = SCORERS[name].__doc__
    wanted = "higher is better" if DIRECTIONS[name] else "lower is better"
    assert wanted in doc
    assert ">>>" in doc


def test_doctests_pass():
    result = doctest.testmod(harness.scoring)
    assert result.attempted > len(SCORERS)
    assert result.failed == 0
