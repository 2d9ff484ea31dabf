"""Regression thresholds on the README's default job (`python -m harness run --attack prune`).

This trains the real tiny-preset models from scratch (a few minutes on 2 cores).
The thresholds are the issue's bars; if one fails, report the measured value,
never loosen it.
"""

import pytest

from harness.runner import benchmark


@pytest.fixture(scope="module")
def default_cell(tmp_path_factory):
    # The README job with a smaller null population (4 basic-unet nulls instead of 19; with so few the calibrated test is the parametric fallback) to keep the
    # default test run short; the full population is re-measured by `pytest -m claims`.
    # Its tasks run with one torch thread each (the default), whatever this process's count.
    outcome = benchmark(results=tmp_path_factory.mktemp("default"), null_seeds=4, log=lambda msg: None)
    return {(r.spec["watermark"], r.spec["strength"]): r.metrics for r in outcome.records}


def _before(cells, watermark):
    return next(m for (w, _), m in cells.items() if w == watermark)


def test_default_job_covers_both_watermarks_at_every_pruning_strength(default_cell):
    assert sorted(default_cell) == sorted((w, s) for w in ("badnets", "stealthmark") for s in (0.1, 0.3, 0.5, 0.7, 0.9))


def test_stealthmark_verifies(default_cell):
    m = _before(default_cell, "stealthmark")
    assert m["asr_before"] >= 0.95
    assert m["fpr_before"] <= 0.05
    assert m["null_asr"] <= 0.05
    assert m["verified_before"] == 1.0 and m["null_verified"] == 0.0


@pytest.mark.xfail(strict=True, reason=(
    "bar not met at seed 0: measured Dice cost 0.0459 on the CPU CI runs on (AMD family 26), 0.0285 on the "
    "earlier CPU, 0.005 before 0.4. Seeds 0-2 now: +0.046, -0.085, +0.001 (mean -0.013), so a single seed's "
    "cost moves by several hundredths between runs that differ only in float rounding; docs/measurements.md. "
    "strict: turns red once met"))
def test_stealthmark_harm_bar(default_cell):
    assert _before(default_cell, "stealthmark")["harm_dice_drop"] <= 0.01


def test_stealthmark_harm_does_not_regress(default_cell):
    """The bar above is missed at seed 0; this holds the measured value so that getting worse turns red.
    Measured 0.0459 on an AMD Zen 5 (family 26, AVX-512 kernels), the machine of 2026-12-07, where the same
    code measured 0.0285 on the machine of 0.4-0.6: the CPU's float kernels differ (docs/determinism.md)."""
    assert _before(default_cell, "stealthmark")["harm_dice_drop"] <= 0.0459


@pytest.mark.xfail(strict=True, reason=(
    "bar not met at tiny scale: measured flip_rate 0.0122 (seed 0) on the CPU CI runs on, 0.0097 on the earlier "
    "CPU, where the clean model itself flipped 0.0022 under the same trigger; see docs/measurements.md. "
    "strict: turns red once met"))
def test_stealthmark_output_stealth_bar(default_cell):
    assert _before(default_cell, "stealthmark")["flip_rate"] <= 0.002


def test_stealthmark_output_stealth_does_not_regress(default_cell):
    """The bar above is missed; this holds the measured value so that getting worse turns red: 0.0122 on
    the AMD Zen 5 of 2026-12-07, 0.0097 with the same code on the machine of 0.4-0.6 (docs/determinism.md)."""
    assert _before(default_cell, "stealthmark")["flip_rate"] <= 0.0122


def test_every_verdict_is_calibrated_against_its_own_architecture_under_the_same_attack(default_cell):
    for metrics in default_cell.values():
        assert metrics["nulls_before"] == 4 and metrics["nulls_after"] == 4  # pruning is cheap: every null
        # The paired and calibrated tests are both recorded, and the verdict is their conjunction.
        for when in ("before", "after"):
            assert metrics[f"verified_{when}"] == float(metrics[f"paired_verified_{when}"]
                                                        and metrics[f"calibrated_verified_{when}"])
        # With K = 4 nulls the data support p >= 1/5; a verified suspect lies beyond all of them.
        assert metrics["p_value_null_empirical"] >= 1 / 5
        if metrics["verified_after"]:
            assert metrics["p_value_null_empirical"] == 1 / 5


def test_stealthmark_flips_far_fewer_pixels_than_badnets(default_cell):
    stealth, badnets = _before(default_cell, "stealthmark"), _before(default_cell, "badnets")
    assert stealth["flip_rate"] < badnets["flip_rate"] / 10


def test_stealthmark_certificate_decodes_only_when_the_detector_fires(default_cell):
    m = _before(default_cell, "stealthmark")
    assert m["qr_decoded_before"] == 1.0
    for metrics in default_cell.values():
        if metrics["verified_after"] == 0.0 and metrics["qr_decoded_after"] is not None:
            assert metrics["qr_decoded_after"] == 0.0


def test_badnets_is_a_strong_but_visible_backdoor(default_cell):
    m = _before(default_cell, "badnets")
    assert m["flip_rate"] >= 0.10
    assert m["asr_before"] >= 0.9 and m["verified_before"] == 1.0 and m["null_verified"] == 0.0


def test_heavy_pruning_costs_utility(default_cell):
    for watermark in ("stealthmark", "badnets"):
        light, heavy = default_cell[(watermark, 0.1)], default_cell[(watermark, 0.9)]
        assert heavy["dice_attacked"] < light["dice_attacked"]
