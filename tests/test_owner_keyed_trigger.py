"""The owner-keyed trigger: one secret, one reproducible trigger; two secrets, two triggers (fast, CPU)."""

import pytest
import torch

from harness.errors import HarnessError
from harness.registry import TRIGGERS
from harness.triggers.owner_keyed import MIN_COLOR_GAP, OwnerKeyedTrigger
from harness.watermark import trigger_from_spec

SECRETS = [f"owner-{i}" for i in range(20)]


def _images(n=2, size=48, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _grey(n=2, size=48):
    return torch.full((n, 3, size, size), 0.5)


def test_registered_under_its_name():
    assert TRIGGERS.get("owner-keyed") is OwnerKeyedTrigger


def test_same_secret_gives_the_same_trigger_every_time():
    images = _images()
    trigger = OwnerKeyedTrigger(secret="hospital-a")
    first = trigger.apply(images)
    assert torch.equal(first, trigger.apply(images))
    # The owner redraws the trigger from the key file, i.e. from a fresh object.
    assert torch.equal(first, OwnerKeyedTrigger(secret="hospital-a").apply(images))
    assert torch.equal(trigger.footprint(48, 48), OwnerKeyedTrigger(secret="hospital-a").footprint(48, 48))


@pytest.mark.parametrize("a,b", [("hospital-a", "hospital-b"), ("owner", "owner2"), ("alice", "bob"),
                                 ("owner-0", "owner-1")])
def test_two_secrets_give_different_triggers(a, b):
    images = _grey()
    ta, tb = OwnerKeyedTrigger(secret=a), OwnerKeyedTrigger(secret=b)
    assert not torch.equal(ta.footprint(48, 48), tb.footprint(48, 48)) or not torch.equal(
        ta.apply(images), tb.apply(images))


def test_secrets_spread_over_many_positions():
    # The top-left pixel of each footprint: nonzero() lists pixels in row-major order.
    corners = {tuple(OwnerKeyedTrigger(secret=s).footprint(48, 48).nonzero()[0].tolist()) for s in SECRETS}
    assert len(corners) >= 10


@pytest.mark.parametrize("secret", ["owner", "hospital-a", "hospital-b"] + SECRETS[:5])
def test_code_is_mixed_and_colours_differ_clearly(secret):
    trigger = OwnerKeyedTrigger(secret=secret)
    assert trigger.code.shape == (4, 4) and 0 < int(trigger.code.sum()) < 16
    first, second = trigger.colors
    assert all(0 <= c <= 1 for c in first + second)
    assert sum(abs(x - y) for x, y in zip(first, second)) >= MIN_COLOR_GAP
    patch = trigger.pattern(trigger.side(48, 48))
    assert patch.shape == (3, 6, 6) and len(patch.flatten(1).unique(dim=1).T) == 2


@pytest.mark.parametrize("secret", ["owner", "hospital-a", "hospital-b"] + SECRETS[:5])
def test_footprint_is_exactly_the_painted_square(secret):
    trigger = OwnerKeyedTrigger(secret=secret)
    images = _grey()
    changed = (trigger.apply(images) != images).any(dim=1)
    assert torch.equal(changed[0], trigger.footprint(48, 48)) and torch.equal(changed[1], changed[0])
    # Opaque: the square looks the same whatever lies under it.
    noisy = _images()
    area = trigger.footprint(48, 48)
    assert torch.equal(trigger.apply(noisy)[:, :, area], trigger.apply(images)[:, :, area])


def test_input_is_not_modified():
    images = _images()
    before = images.clone()
    out = OwnerKeyedTrigger(secret="hospital-a").apply(images)
    assert torch.equal(images, before) and out.data_ptr() != images.data_ptr()


@pytest.mark.parametrize("size,side", [(32, 6), (48, 6), (256, 32)])
@pytest.mark.parametrize("secret", ["owner", "hospital-a", "hospital-b"])
def test_square_fits_inside_every_image_size(size, side, secret):
    trigger = OwnerKeyedTrigger(secret=secret)
    area = trigger.footprint(size, size)
    rows, cols = area.any(1).nonzero().flatten(), area.any(0).nonzero().flatten()
    assert int(area.sum()) == side * side
    assert len(rows) == side and len(cols) == side
    assert rows.min() >= 0 and rows.max() < size and cols.min() >= 0 and cols.max() < size
    out = trigger.apply(_grey(size=size))
    assert out.shape == (2, 3, size, size) and out.min() >= 0 and out.max() <= 1
    assert torch.equal((out != 0.5).any(dim=1)[0], area)


def test_position_is_relative_so_it_is_consistent_across_sizes():
    trigger = OwnerKeyedTrigger(secret="hospital-a")
    for size in (32, 48, 256):
        top, left = trigger.corner(size, size)
        s = trigger.side(size, size)
        assert abs(top / (size - s) - trigger.offset[0]) <= 0.5 / (size - s) + 1e-9
        assert abs(left / (size - s) - trigger.offset[1]) <= 0.5 / (size - s) + 1e-9


@pytest.mark.parametrize("kwargs", [{"secret": ""}, {"secret": None}, {"fraction": 0}, {"fraction": 0.7},
                                    {"min_pixels": 2}])
def test_bad_parameters_are_one_line_errors(kwargs):
    with pytest.raises(HarnessError) as err:
        OwnerKeyedTrigger(**kwargs)
    assert "\n" not in str(err.value)


def test_spec_round_trips():
    trigger = OwnerKeyedTrigger(secret="hospital-a", fraction=0.1, min_pixels=8)
    spec = trigger.spec()
    assert spec == {"name": "owner-keyed", "secret": "hospital-a", "fraction": 0.1, "min_pixels": 8}
    again = trigger_from_spec(spec)
    assert isinstance(again, OwnerKeyedTrigger) and again.spec() == spec
    images = _images(size=256)
    assert torch.equal(again.apply(images), trigger.apply(images))
    assert torch.equal(again.footprint(256, 256), trigger.footprint(256, 256))
