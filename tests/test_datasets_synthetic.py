"""Procedural stand-ins for fundus, echo and cardiac MR: the synthetic-polyp contract, per modality."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.data import dataset_fingerprint, is_finite, make_splits, open_dataset
from harness.errors import HarnessError
from harness.presets import PRESETS
from harness.registry import DATASETS

STAND_INS = {  # name -> (modality, target options)
    "synthetic-fundus": ("fundus", [{"target": "disc"}, {"target": "cup"}]),
    "synthetic-echo": ("echocardiography", [{}]),
    "synthetic-cardiac-mr": ("cardiac-mr", [{"target": "cavity"}, {"target": "myocardium"}]),
}
CASES = [(name, opts) for name, (_, options) in STAND_INS.items() for opts in options]
N = 40


def _best_threshold_dice(feature: torch.Tensor, target: torch.Tensor) -> float:
    """Best pooled Dice of ``feature >= t`` or ``feature <= t`` over every threshold ``t``."""
    values, truth = feature.flatten(), target.flatten()
    hits = truth[torch.argsort(values)].double()
    positives, n = hits.sum(), len(hits)
    top = 2 * hits.flip(0).cumsum(0) / (torch.arange(1, n + 1) + positives)
    bottom = 2 * hits.cumsum(0) / (torch.arange(1, n + 1) + positives)
    return max(top.max().item(), bottom.max().item())


@pytest.fixture(scope="module")
def batches():
    return {(name, tuple(sorted(opts.items()))): DATASETS.get(name)(48, **opts).generate(range(N), seed=0)
            for name, opts in CASES}


@pytest.mark.parametrize("name", STAND_INS)
def test_registered_procedural(name):
    cls = DATASETS.get(name)
    data = cls(32)
    assert cls.modality == STAND_INS[name][0] and not is_finite(data) and not cls.needs_root
    assert data.fingerprint().startswith(cls.__name__ + "-v")


@pytest.mark.parametrize("name,opts", CASES)
def test_shapes_ranges_and_foreground(batches, name, opts):
    images, masks = batches[(name, tuple(sorted(opts.items())))]
    assert images.shape == (N, 3, 48, 48) and images.dtype == torch.float32
    assert masks.shape == (N, 1, 48, 48) and masks.dtype == torch.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert set(masks.unique().tolist()) == {0.0, 1.0}
    fraction = masks.mean(dim=(1, 2, 3))
    assert fraction.min() >= 0.01 and fraction.max() < 0.4
    assert images.std(dim=(2, 3)).mean() > 0.05  # textured, not flat


@pytest.mark.parametrize("name,opts", CASES)
def test_no_single_colour_threshold_segments_it(batches, name, opts):
    images, masks = batches[(name, tuple(sorted(opts.items())))]
    for channel in range(3):
        assert _best_threshold_dice(images[:, channel], masks[:, 0]) < 0.75


@pytest.mark.parametrize("name", STAND_INS)
def test_depends_only_on_seed_and_index(name):
    data = DATASETS.get(name)(48)
    a = data.generate([3, 7], seed=5)
    b = data.generate([7], seed=5)
    again = DATASETS.get(name)(48).generate([3, 7], seed=5)
    assert torch.equal(a[0], again[0]) and torch.equal(a[1], again[1])
    assert torch.equal(a[0][1:], b[0]) and torch.equal(a[1][1:], b[1])
    other = data.generate([3, 7], seed=6)
    assert not torch.equal(a[0], other[0]) and not torch.equal(a[0][0], a[0][1])


@pytest.mark.parametrize("name", STAND_INS)
def test_bad_size_and_option(name):
    with pytest.raises(HarnessError, match="image_size must be between 16 and 1024"):
        DATASETS.get(name)(8)
    with pytest.raises(HarnessError, match=f"dataset '{name}' has no option 'colour'"):
        open_dataset(name, 32, options={"colour": "red"})
    with pytest.raises(HarnessError, match="index and seed"):
        DATASETS.get(name)(32).sample(-1, 0)


def test_target_option_changes_mask_and_fingerprint():
    disc = open_dataset("synthetic-fundus", 48, options={"target": "disc"})
    cup = open_dataset("synthetic-fundus", 48, options={"target": "cup"})
    (di, dm), (ci, cm) = disc.generate([0], 1), cup.generate([0], 1)
    assert torch.equal(di, ci) and (cm <= dm).all() and cm.sum() < dm.sum()
    assert dataset_fingerprint("synthetic-fundus", options={"target": "cup"}) != dataset_fingerprint(
        "synthetic-fundus")
    with pytest.raises(HarnessError, match="option target must be one of disc, cup"):
        open_dataset("synthetic-fundus", 48, options={"target": "rim"})


def test_procedural_splits_unchanged_for_synthetic_polyp():
    """The procedural path of make_splits is the index-range scheme cached models were trained on."""
    preset = PRESETS["smoke"]
    splits = make_splits("synthetic-polyp", preset, 2)
    data = DATASETS.get("synthetic-polyp")(preset.image_size)
    start = preset.owner_train + preset.owner_verify
    expected, _ = data.generate(range(start, start + preset.attacker), 2)
    assert torch.equal(splits.attacker.images, expected)
    assert dataset_fingerprint("synthetic-polyp") == "synthetic-polyp"
    assert np.isclose(splits.owner_train.images.mean().item(), splits.owner_train.images.mean().item())
