"""The registry mechanism, and every registered plugin exercised through it (a new plugin is tested for free)."""

import copy

import pytest
import torch

from harness.watermark import BackdoorWatermark

from harness.attack import AttackerKit
from harness.data import Split
from harness.presets import get_preset
from harness.errors import HarnessError, UnknownNameError
from harness.registry import (ALL_REGISTRIES, ATTACKS, BASELINES, DATASETS, MODELS, TRIGGERS, WATERMARKS,
                              Registry, find_watermark)
from harness.segmenter import build_model


def test_collision_raises():
    reg = Registry("things", packages=())
    reg.register("a")(lambda: 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(lambda: 2)


def test_unknown_name_names_closest_and_all():
    with pytest.raises(UnknownNameError) as info:
        ATTACKS.get("prnue")
    message = str(info.value)
    assert "'prune'" in message and "did you mean" in message
    for name in ATTACKS.names():
        assert name in message
    assert "\n" not in message


def test_unknown_watermark_searches_watermarks_and_baselines():
    with pytest.raises(UnknownNameError, match="stealthmark"):
        find_watermark("stealthmrak")
    assert find_watermark("badnets") is BASELINES.get("badnets")


def test_lazy_entry_is_not_imported_until_get():
    reg = Registry("things", packages=())
    reg.register_lazy("later", "harness.no_such_module:thing", "a plugin that is not importable")
    assert reg.names() == ["later"]  # listing does not import it
    with pytest.raises(HarnessError, match="cannot be loaded"):
        reg.get("later")


def test_wildcard_names():
    assert set(ATTACKS.names("prune*")) >= {"prune", "prune-channels"}


@pytest.mark.parametrize("kind", sorted(ALL_REGISTRIES))
def test_every_plugin_has_a_description(kind):
    registry = ALL_REGISTRIES[kind]
    assert registry.names(), f"no {kind} registered"
    for name, description in registry.describe():
        assert description and "\n" not in description, f"{kind} {name!r} needs a one-line docstring"


@pytest.mark.parametrize("name", MODELS.names())
def test_model_maps_images_to_one_logit_channel(name):
    torch.manual_seed(0)
    model = build_model(name, "smoke").eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 1, 32, 32)


# Folder datasets need a downloaded copy; tests/test_datasets_folders.py runs them on generated fixtures.
@pytest.mark.parametrize("name", [n for n in DATASETS.names() if not getattr(DATASETS.get(n), "needs_root", False)])
def test_dataset_gives_images_and_binary_masks(name):
    images, masks = DATASETS.get(name)(image_size=32).generate(range(4), seed=0)
    assert images.shape == (4, 3, 32, 32) and masks.shape == (4, 1, 32, 32)
    assert set(masks.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("name", TRIGGERS.names())
def test_trigger_changes_only_its_footprint(name):
    trigger = TRIGGERS.get(name)()
    images = torch.rand(3, 3, 48, 48)
    original = images.clone()
    triggered = trigger.apply(images)
    assert torch.equal(images, original), "apply must not modify its input"
    changed = (triggered != images).any(1)
    assert changed.any()
    footprint = trigger.footprint(48, 48)
    if footprint is not None:
        assert not (changed & ~footprint).any()


# Backdoor watermarks only: a scheme such as stealthmark-qr has no triggered target.
@pytest.mark.parametrize("name", [n for n in WATERMARKS.names() + BASELINES.names()
                                  if issubclass(find_watermark(n), BackdoorWatermark)])
def test_watermark_triggered_target_is_a_probability_map(name):
    watermark = find_watermark(name)()
    masks = (torch.rand(2, 1, 16, 16) > 0.7).float()
    target = watermark.triggered_target(masks)
    assert target.shape == masks.shape and target.min() >= 0 and target.max() <= 1


@pytest.mark.parametrize("name", ATTACKS.names())
def test_attack_changes_the_model_and_leaves_the_owners_copy_bit_identical(name):
    torch.manual_seed(0)
    owner = build_model("basic-unet", "smoke").eval()
    before = copy.deepcopy(owner.state_dict())
    attack = ATTACKS.get(name)()
    strength = attack.default_strengths[0]  # the moderate one: every attack must already act there
    data = Split(torch.rand(8, 3, 32, 32), (torch.rand(8, 1, 32, 32) > 0.5).float())
    kit = AttackerKit(data, "basic-unet", get_preset("smoke"))
    attacked = attack.apply(owner, kit, strength, seed=0)
    after = owner.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        changed = not torch.equal(attacked(x), owner(x))
    # "none" is the leaderboard's no-attack reference row: it must change nothing.
    assert changed == (attack.family != "none"), f"{name} at {strength}: changed={changed}"


@pytest.mark.parametrize("name", ATTACKS.names())
def test_attack_rejects_out_of_range_strength(name):
    attack = ATTACKS.get(name)()
    with pytest.raises(HarnessError, match="out of range"):
        attack.check_strength(attack.strength_range[1] + 1)
