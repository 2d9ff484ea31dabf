"""Chained attacks (``prune.l1_50+ftal.e5``) and the thief's image budget (``--attacker-images``)."""

import pytest
import torch

from harness.attack import AttackerKit, Budget
from harness.cell import HARNESS_VERSION, CellSpec
from harness.data import Split, make_splits, thief_split
from harness.errors import HarnessError, UnknownNameError
from harness.io import spec_hash
from harness.presets import get_preset
from harness.registry import ATTACKS, make_attack, resolve_attacks
from harness.segmenter import build_model


def _owner():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_model("basic-unet", "smoke").eval()


@pytest.fixture(scope="module")
def kit():
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(8, 3, 32, 32, generator=generator)
    masks = (torch.rand(8, 1, 32, 32, generator=generator) > 0.5).float()
    return AttackerKit(Split(images, masks), "basic-unet", get_preset("smoke"))


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_chain_is_its_steps_in_order_and_spares_the_owner(kit):
    owner = _owner()
    before = _state(owner)
    chained = make_attack("prune.l1_50+ftal.e5").apply(owner, kit, 1, seed=3)
    assert _same(before, _state(owner))
    by_hand = ATTACKS.get("ftal")().apply(ATTACKS.get("prune")().apply(owner, kit, 0.5, 3), kit, 5, 3)
    assert _same(_state(chained), _state(by_hand))
    assert not _same(_state(chained), before)


def test_a_chain_resolves_to_one_cell_named_by_its_steps():
    [(chain, strengths)] = resolve_attacks("prune.l1_50 + ftal.e5".replace(" ", ""), None)
    assert (chain.registered_name, chain.label, chain.family, strengths) == ("chain", "prune.l1_50+ftal.e5", "chain", (1.0,))
    assert chain.trains  # fine-tuning trains, so its attacked nulls cost a run each
    assert make_attack(chain.label).spec() == chain.spec()
    # A step's recipe is part of the chain's run id.
    assert [s["name"] for s in chain.spec()["step_specs"]] == ["prune", "ftal"]
    assert not make_attack("prune.l1_50+quantize").trains
    assert make_attack("prune").label == "prune"


def test_the_default_chain_is_in_all():
    names = [a.label for a, _ in resolve_attacks("all", None)]
    assert "prune.l1_50+ftal.e5" in names


@pytest.mark.parametrize("steps, message", [
    ("prune.l1_50", "two or more attacks"),
    ("prune.l1_50+", "two or more attacks"),
    ("prune.l1_50+ftal.e7", "presets of 'ftal'"),
    ("hard-mask+ftal.e5", "can only be the last step"),
    ("jpeg+prune.l1_50", "can only be the last step"),
    ("chain+prune", "cannot contain a chain"),
])
def test_bad_chains_are_one_line_errors(steps, message):
    with pytest.raises(HarnessError, match=message):
        make_attack(steps) if "+" in steps else ATTACKS.get("chain")(steps=steps)


def test_an_unknown_step_names_the_closest_attack():
    with pytest.raises(UnknownNameError, match="did you mean 'prune'"):
        make_attack("prnue.l1_50+ftal.e5")


def test_a_chains_budget_adds_up(kit):
    budget = make_attack("prune.l1_50+distill-soft.e60+recalibrate").budget(kit, 1)
    parts = [ATTACKS.get(n)().budget(kit, s) for n, s in (("prune", 0.5), ("distill-soft", 60), ("recalibrate", 1))]
    assert budget == Budget(images=max(p.images for p in parts), labels=True, queries=sum(p.queries for p in parts))
    assert budget.queries == 2 * len(kit.data)  # the distiller's and the recalibrator's queries


# -- the thief's images ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def splits():
    return make_splits("synthetic-polyp", get_preset("smoke"), 0)


def test_the_default_thief_has_the_preset_split(splits):
    assert thief_split(splits, "synthetic-polyp", get_preset("smoke"), 0, None) is splits.attacker


def test_fewer_images_are_a_prefix_and_more_are_fresh_ones(splits):
    preset = get_preset("smoke")
    have = len(splits.attacker)
    fewer = thief_split(splits, "synthetic-polyp", preset, 0, 3)
    assert torch.equal(fewer.images, splits.attacker.images[:3])
    more = thief_split(splits, "synthetic-polyp", preset, 0, have + 20)
    assert len(more) == have + 20 and torch.equal(more.images[:have], splits.attacker.images)
    assert torch.equal(more.images, thief_split(splits, "synthetic-polyp", preset, 0, have + 20).images)
    extra = more.images[have:].flatten(1)
    owner_and_test = torch.cat([splits.owner_train.images, splits.owner_verify.images, splits.test.images]).flatten(1)
    # No fresh image is one the owner trained on or the test set scores: every pair differs.
    assert torch.cdist(extra, owner_and_test).min() > 0
    assert torch.cdist(extra, splits.attacker.images.flatten(1)).min() > 0


def test_a_thief_needs_at_least_one_image(splits):
    with pytest.raises(HarnessError, match="at least 1"):
        thief_split(splits, "synthetic-polyp", get_preset("smoke"), 0, 0)


def test_the_usual_thief_keeps_the_run_ids_records_already_have():
    cell = CellSpec("stealthmark", "basic-unet", "synthetic-polyp", "prune", 0.5, 0, "tiny", "lime", "patch",
                    "19x basic-unet @ 0.05", "m", "a")
    legacy = {k: v for k, v in cell.__dict__.items() if k != "attacker_images"}
    assert cell.run_id == spec_hash({**legacy, "harness": HARNESS_VERSION})
    more = CellSpec(**{**cell.__dict__, "attacker_images": 1000})
    assert more.run_id != cell.run_id
