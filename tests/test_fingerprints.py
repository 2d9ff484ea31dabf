"""Fingerprints (``harness.fingerprint``, ``fingerprints/``): nothing embedded, the owner's model untouched,
a copy scored exactly as the owner, and adversarial inputs that flip the owner's mask by construction.

The owner and the innocents here are small random convolutional nets (milliseconds each), so the
verdict can be calibrated against a full population of 19 nulls without training anything."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from harness.data import make_splits
from harness.errors import HarnessError
from harness.io import weights_hash
from harness.presets import get_preset
from harness.registry import FINGERPRINTS, find_watermark
from harness.watermark import Key

PRESET = get_preset("smoke")


def small_net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1)).eval()
    with torch.no_grad():  # confident answers, as a trained segmenter gives, not probabilities near 0.5
        net[2].weight.mul_(20)
    return net


@pytest.fixture(scope="module")
def splits():
    return make_splits("synthetic-polyp", PRESET, 0)


def keyed(name, owner, splits, tmp_path=None):
    scheme = FINGERPRINTS.get(name)()
    key = scheme.make_key(owner, splits, PRESET, seed=0)
    if tmp_path is not None:  # what `harness verify` reads: the saved file, not the object
        key = Key.load(key.save(tmp_path / f"{name}.npz"))
    return scheme, key


def test_fingerprints_are_found_where_watermarks_are():
    assert set(FINGERPRINTS.names()) >= {"mask-agreement", "prob-distance", "adversarial-agreement"}
    for name in FINGERPRINTS.names():
        assert find_watermark(name).role == "fingerprint"


@pytest.mark.parametrize("name", FINGERPRINTS.names())
def test_embedding_keying_and_verifying_leave_the_owners_model_bit_identical(name, splits):
    owner = small_net(0)
    before, params = weights_hash(owner), [p.requires_grad for p in owner.parameters()]
    scheme = FINGERPRINTS.get(name)()
    assert scheme.embed(owner, splits, PRESET, seed=0) is owner
    key = scheme.make_key(owner, splits, PRESET, seed=0)
    scheme.verify(owner, key)
    assert weights_hash(owner) == before
    assert [p.requires_grad for p in owner.parameters()] == params
    assert all(p.grad is None for p in owner.parameters()), "no gradient may be left on the owner's weights"
    assert not owner.training


@pytest.mark.parametrize("name", FINGERPRINTS.names())
def test_an_exact_copy_scores_as_the_owner_does_and_the_most_a_model_can(name, splits, tmp_path):
    owner = small_net(0)
    scheme, key = keyed(name, owner, splits, tmp_path)
    mine, copied = scheme.verify(owner, key), scheme.verify(copy.deepcopy(owner), key)
    assert mine.score == copied.score == pytest.approx(1.0, abs=1e-6)
    images = len(scheme.scored(owner, key)[0])
    assert mine.asr == copied.asr == 1.0 and copied.p_value == pytest.approx(0.5**images)  # the sign test's floor
    innocent = scheme.verify(small_net(1), key)
    assert innocent.score < mine.score - 0.05


def test_adversarial_inputs_flip_the_owners_mask_by_construction(splits, tmp_path):
    owner = small_net(0)
    scheme, key = keyed("adversarial-agreement", owner, splits, tmp_path)
    index = key.arrays["adversarial_index"]
    assert len(index) >= len(splits.queries) // 2, "most key images must give a flip"
    clean = key.queries().images[torch.from_numpy(index)]
    perturbed = torch.from_numpy(key.arrays["adversarial_images"])
    region = torch.from_numpy(key.arrays["adversarial_region"]).bool()
    with torch.no_grad():
        before, after = owner(clean) > 0, owner(perturbed) > 0
    assert region.flatten(1).any(1).all(), "every stored image has a flipped region"
    assert (before != after)[region].all(), "the owner's mask flips on every region pixel"
    assert (perturbed - clean).abs().max() <= scheme.eps + 1e-6 and 0 <= perturbed.min() and perturbed.max() <= 1


@pytest.mark.parametrize("name", FINGERPRINTS.names())
def test_calibrated_verdict_accuses_the_copy_and_no_innocent(name, splits):
    """19 innocents calibrate (the empirical p-value reaches 1/20); each innocent judged against the
    other 18 and the owner's copy are the two sides of the verdict."""
    from harness.measure import innocents_verified

    owner = small_net(0)
    scheme, key = keyed(name, owner, splits)
    nulls = {f"null{k}": small_net(100 + k) for k in range(19)}
    scheme.calibrate(key, nulls)
    copied = scheme.verify(copy.deepcopy(owner), key)
    assert copied.verified and copied.p_value_null_empirical == pytest.approx(1 / 20)
    assert innocents_verified(scheme, nulls, key, 0.05)["verified"] == 0.0
    assert not scheme.verify(small_net(999), key).verified


def test_a_fingerprint_takes_no_trigger():
    with pytest.raises(HarnessError, match="adds no trigger"):
        FINGERPRINTS.get("mask-agreement")(trigger="text")


def test_js_divergence_is_zero_on_equal_maps_and_one_bit_on_certain_opposites():
    from fingerprints.prob_distance import js_divergence

    p = torch.rand(2, 1, 8, 8)
    assert torch.all(js_divergence(p, p) == 0)
    hard = (p > 0.5).float()
    assert torch.allclose(js_divergence(hard, 1 - hard), torch.ones(2, dtype=torch.float64), atol=1e-4)


def test_same_data_innocents_join_every_verdict_and_the_fingerprint_costs_nothing(tmp_path, capsys):
    """A smoke run (seconds): the fingerprint's model is the clean reference, bit for bit, and the
    same-data columns are filled before and after the attack, for fingerprints and watermarks alike."""
    from harness.records import load_records
    from harness.runner import benchmark

    outcome = benchmark(watermarks="mask-agreement,badnets", attack="none,hard-mask", preset="smoke",
                        results=tmp_path, same_data_innocents=2, log=lambda msg: None)
    assert not outcome.failed
    records = load_records(tmp_path)
    assert {r.spec["nulls"] for r in records} == {"4x basic-unet @ 0.05 + 2 same-data"}
    for record in records:
        m = record.metrics
        assert m["same_data_innocents"] == 2.0 and m["same_data_innocents_after"] == 2.0
        for column in ("verified_before_with_same_data", "same_data_verified", "innocents_verified_with_same_data",
                       "verified_after_with_same_data", "same_data_verified_after",
                       "innocents_verified_after_with_same_data"):
            assert m[column] is not None and 0.0 <= m[column] <= 1.0, column
        if record.spec["watermark"] == "mask-agreement":
            assert record.spec["role"] == "fingerprint" and m["harm_dice_drop"] == 0.0
            assert m["flip_rate"] is None and m["trigger_psnr"] is None
            assert m.get("rank_verified_before_with_same_data") is None  # paired-rank needs a trigger
        else:
            assert m["rank_verified_before_with_same_data"] is not None
    # The fingerprint's model is the clean reference's cache entry itself: bit-identical weights.
    from harness.cell import Setting
    from harness.tasks import Context, Mark, clean_model, marked_model_and_key

    ctx = Context(results=str(tmp_path), same_data_innocents=2)
    setting = Setting("basic-unet", "synthetic-polyp", "smoke", 0, None, ())
    owner, _ = marked_model_and_key(ctx, Mark(setting, "mask-agreement", None))
    assert weights_hash(owner) == weights_hash(clean_model(ctx, setting))
    dice = {r.spec["watermark"]: (r.metrics["dice_clean"], r.metrics["dice_watermarked"]) for r in records}
    assert dice["mask-agreement"][0] == dice["mask-agreement"][1]

    # The owner's workflow: `harness verify` on the fingerprint's key and the exported owner's checkpoint.
    from harness.cli import main

    capsys.readouterr()
    assert main(["verify", "--model", "basic-unet", "--checkpoint", str(outcome.checkpoints["mask-agreement"]),
                 "--key", str(outcome.keys["mask-agreement"])]) == 0
    printed = capsys.readouterr().out
    assert "mask-agreement fingerprint, score 1.000" in printed and "of the key images" in printed


@pytest.mark.parametrize("count", [1, -1, 2.5])
def test_same_data_innocents_refuse_a_count_that_cannot_calibrate(count, tmp_path):
    from harness.runner import benchmark

    with pytest.raises(HarnessError, match="same-data innocents"):
        benchmark(watermarks="mask-agreement", attack="none", preset="smoke", results=tmp_path,
                  same_data_innocents=count, log=lambda msg: None)
    assert not any(tmp_path.iterdir()), "nothing may be written before the error"
