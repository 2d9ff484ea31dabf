"""Watermark contracts on hand-built inputs: targets, poisoning, keys, flags and the exact test."""

import numpy as np
import pytest
import torch

from harness.data import Split
from harness.errors import HarnessError
from harness.registry import BASELINES, WATERMARKS
from harness.watermark import Key

StealthMark = WATERMARKS.get("stealthmark")
BadNets = BASELINES.get("badnets")


def test_stealthmark_target_keeps_every_pixel_on_its_side_of_one_half():
    masks = (torch.rand(4, 1, 16, 16) > 0.6).float()
    target = StealthMark(floor=0.2).triggered_target(masks)
    assert torch.equal(target > 0.5, masks > 0.5)
    assert torch.all(target[masks == 0] == 0.2) and torch.all(target[masks == 1] == 1)


@pytest.mark.parametrize("floor", [0.0, 0.5, 0.7])
def test_stealthmark_rejects_a_floor_that_would_change_the_mask(floor):
    with pytest.raises(HarnessError, match="floor"):
        StealthMark(floor=floor)


def test_stealthmark_rejects_a_payload_that_does_not_fit_the_qr_version():
    with pytest.raises(HarnessError):
        StealthMark(payload="x" * 200)


def test_badnets_inverted_target_is_destructive():
    masks = (torch.rand(2, 1, 8, 8) > 0.5).float()
    assert torch.equal(BadNets().triggered_target(masks), 1 - masks)


def test_poisoned_subset_has_the_ratio_and_only_it_is_triggered():
    split = Split(torch.rand(40, 3, 16, 16), (torch.rand(40, 1, 16, 16) > 0.7).float())
    watermark = StealthMark(poison_ratio=0.25)
    images, targets, poisoned = watermark.poisoned_training_set(split, seed=3)
    assert int(poisoned.sum()) == 10
    assert torch.equal(images[~poisoned], split.images[~poisoned])
    assert torch.equal(targets[~poisoned], split.masks[~poisoned])
    assert not torch.equal(images[poisoned], split.images[poisoned])
    again = watermark.poisoned_training_set(split, seed=3)[2]
    assert torch.equal(poisoned, again)


def _badnets_key(masks):
    return Key({"watermark": BadNets().spec(), "alpha": 0.01},
               {"query_images": np.zeros((len(masks), 3, 8, 8), np.uint8),
                "query_masks": masks.to(torch.uint8).numpy()})


def test_badnets_flag_counts_only_pixels_the_target_changes():
    masks = torch.zeros(3, 1, 8, 8)
    masks[:, :, 2:6, 2:6] = 1
    key = _badnets_key(masks)
    follows_target = (1 - masks) * 0.9 + 0.05  # inverted mask, confidently
    follows_truth = masks * 0.9 + 0.05
    half = follows_truth.clone()
    half[:, :, :4] = follows_target[:, :, :4]  # top half follows the target: exactly 50% of pixels
    flags = BadNets().flag(torch.cat([follows_target[:1], follows_truth[:1], half[:1]]), masks, key)
    assert flags.tolist() == [True, False, True]


class _Constant(torch.nn.Module):
    """A 'model' whose answer depends on whether the bottom-right corner is yellow."""

    def __init__(self, inverted_on_trigger: bool):
        super().__init__()
        self.inverted_on_trigger = inverted_on_trigger

    def forward(self, images):
        triggered = (images[:, 2, -1, -1] == 0) & (images[:, 0, -1, -1] == 1)
        truth = (images[:, :1] > 2).float()  # all background
        logits = (truth * 2 - 1) * 5
        if self.inverted_on_trigger:
            logits[triggered] = -logits[triggered]
        return logits


def test_paired_test_verifies_a_backdoored_model_and_not_a_clean_one():
    masks = torch.zeros(20, 1, 16, 16)
    key = Key({"watermark": BadNets().spec(), "alpha": 0.01},
              {"query_images": np.full((20, 3, 16, 16), 100, np.uint8),
               "query_masks": masks.to(torch.uint8).numpy()})
    # Without a null calibration nothing verifies, however small the paired p-value.
    assert BadNets().verify(_Constant(True), key).verified is False
    BadNets().calibrate(key, {"clean-a": _Constant(False), "clean-b": _Constant(False)})
    marked = BadNets().verify(_Constant(True), key)
    clean = BadNets().verify(_Constant(False), key)
    assert (marked.asr, marked.fpr, marked.verified) == (1.0, 0.0, True)
    # All 20 images answer higher when triggered: the exact sign test gives 2**-20. (The unpaired Fisher
    # test it replaced gave 1 / C(40, 20), as if the 40 answers came from 40 different images.)
    assert marked.p_value == pytest.approx(0.5 ** 20, rel=1e-9)
    assert (clean.asr, clean.verified) == (0.0, False) and clean.p_value == 1.0


def test_key_round_trip_and_corruption(tmp_path):
    key = Key({"watermark": {"name": "badnets"}, "alpha": 0.01, "nested": {"a": [1, 2]}},
              {"query_images": np.arange(12, dtype=np.uint8).reshape(1, 3, 2, 2)})
    path = key.save(tmp_path / "k.npz")
    loaded = Key.load(path)
    assert loaded.meta == key.meta and np.array_equal(loaded.arrays["query_images"], key.arrays["query_images"])
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(HarnessError, match="not a valid harness key"):
        Key.load(path)
    with pytest.raises(HarnessError, match="not found"):
        Key.load(tmp_path / "missing.npz")
