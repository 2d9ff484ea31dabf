"""Trigger families and the backdoor-watermark baselines, on hand-built inputs (fast)."""

import numpy as np
import pytest
import torch

from baselines._destructive import DESTRUCTIVE_TARGETS, DestructiveBackdoor
from harness.errors import HarnessError
from harness.registry import BASELINES, TRIGGERS, WATERMARKS
from harness.watermark import Key

# The issue's table: each baseline family and the trigger it uses.
BASELINE_TRIGGERS = {"badnets": "patch", "text-backdoor": "text", "border-backdoor": "border",
                     "noise-backdoor": "noise", "wanet": "warp", "blended": "blend"}


def _images(n=3, size=32, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", TRIGGERS.names())
def test_trigger_changes_a_copy_within_range_deterministically(name):
    images = _images()
    before = images.clone()
    trigger = TRIGGERS.get(name)()
    out = trigger.apply(images)
    assert torch.equal(images, before), "apply must not modify its input"
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, images)
    assert torch.equal(out, TRIGGERS.get(name)().apply(images)), "a trigger must be reproducible by the owner"


@pytest.mark.parametrize("name", TRIGGERS.names())
def test_trigger_changes_only_its_footprint(name):
    trigger = TRIGGERS.get(name)()
    images = _images(size=48)
    footprint = trigger.footprint(48, 48)
    changed = (trigger.apply(images) != images).any(dim=1).any(dim=0)
    if footprint is None:
        assert changed.float().mean() > 0.5, "a full-image trigger should touch most pixels"
    else:
        assert footprint.shape == (48, 48) and footprint.any()
        assert not (changed & ~footprint).any(), f"{name} changed pixels outside its footprint"


@pytest.mark.parametrize("name", TRIGGERS.names())
def test_masks_follow_only_geometric_triggers(name):
    masks = torch.zeros(1, 1, 48, 48)
    masks[:, :, 10:30, 5:20] = 1
    moved = TRIGGERS.get(name)().apply_to_mask(masks)
    if name == "warp":
        assert not torch.equal(moved, masks) and set(moved.unique().tolist()) <= {0.0, 1.0}
    else:
        assert torch.equal(moved, masks)


def test_warp_moves_the_mask_exactly_as_it_moves_the_image():
    # An image whose red channel is the mask: after the warp, the red channel and the warped mask agree.
    masks = torch.zeros(1, 1, 48, 48)
    masks[:, :, 12:36, 8:30] = 1
    images = masks.repeat(1, 3, 1, 1)
    warp = TRIGGERS.get("warp")()
    agree = ((warp.apply(images)[:, :1] > 0.5).float() == warp.apply_to_mask(masks)).float().mean()
    assert agree == 1.0


def test_noise_trigger_pattern_depends_on_its_seed_only():
    images = _images()
    a, b = TRIGGERS.get("noise")(seed=1), TRIGGERS.get("noise")(seed=2)
    assert torch.equal(a.apply(images), TRIGGERS.get("noise")(seed=1).apply(images))
    assert not torch.equal(a.apply(images), b.apply(images))


@pytest.mark.parametrize("name,kwargs", [("border", {"fraction": 0.3}), ("noise", {"sigma": 0}),
                                         ("blend", {"alpha": 1.0}), ("warp", {"strength": 0.5})])
def test_trigger_rejects_out_of_range_parameters(name, kwargs):
    with pytest.raises(HarnessError):
        TRIGGERS.get(name)(**kwargs)


def test_every_issue_baseline_is_registered_with_its_trigger():
    assert set(BASELINE_TRIGGERS) <= set(BASELINES.names())
    for name, trigger in BASELINE_TRIGGERS.items():
        baseline = BASELINES.get(name)()
        assert isinstance(baseline, DestructiveBackdoor) and baseline.role == "baseline"
        assert baseline.trigger.registered_name == trigger


@pytest.mark.parametrize("target", sorted(DESTRUCTIVE_TARGETS))
@pytest.mark.parametrize("name", sorted(BASELINE_TRIGGERS))
def test_baseline_targets_are_configurable_and_destructive(name, target):
    masks = (torch.rand(2, 1, 8, 8) > 0.5).float()
    made = BASELINES.get(name)(target=target).triggered_target(masks)
    assert torch.equal(made, DESTRUCTIVE_TARGETS[target](masks))


def test_unknown_target_is_a_one_line_error():
    with pytest.raises(HarnessError, match="unknown backdoor target 'inverse'"):
        BASELINES.get("wanet")(target="inverse")


@pytest.mark.parametrize("trigger", TRIGGERS.names())
def test_stealthmark_accepts_every_trigger_family(trigger):
    mark = WATERMARKS.get("stealthmark")(trigger=trigger)
    assert mark.spec()["trigger"]["name"] == trigger


def test_wanet_agreement_is_measured_on_the_warped_ground_truth():
    # A model that answers the inverted *warped* mask is a perfect hit; one that answers the
    # inverted unwarped mask is not, because the lesion moved.
    wanet = BASELINES.get("wanet")()
    masks = torch.zeros(4, 1, 32, 32)
    masks[:, :, 4:14, 4:14] = 1
    key = Key({"watermark": wanet.spec(), "alpha": 0.01},
              {"query_images": np.zeros((4, 3, 32, 32), np.uint8), "query_masks": masks.to(torch.uint8).numpy()})
    warped = wanet.trigger.apply_to_mask(masks)
    assert wanet.answer_scores(1 - warped, warped, key).min() == 1.0
    assert wanet.answer_scores(1 - masks, warped, key).max() < 1.0
