"""Claims of the watermark-against-fingerprint issue: re-run, the fingerprint cells reproduce the committed ones.

RobustBench-style: the three fingerprints at seed 0 (tiny, 19 nulls and 5 innocents trained on the
owner's own images), before any attack and after the attacks below, are computed again from scratch
and must give the committed records' numbers and verdicts, with and without the same-data
innocents (``results/runs``, from ``scripts/regenerate_results.sh fingerprints``). The attacks are
the ones that need no training, so the re-run costs the five same-data innocents and seconds per
cell; the nulls are shared with the other claims tests.
"""

from pathlib import Path

import pytest

from harness.registry import FINGERPRINTS
from harness.runner import benchmark

pytestmark = pytest.mark.claims

ATTACKS = ("none", "hard-mask.masks", "tta.flips4", "jpeg.q50", "median.k3", "prune.l1_30", "quantize.int8")
SAME_DATA = 5
COMMITTED = Path(__file__).parents[2] / "results"
COMPARED = ("harm_dice_drop", "score_before", "p_value_before", "verified_before", "null_verified",
            "verified_before_with_same_data", "same_data_verified", "innocents_verified_with_same_data",
            "dice_attacked", "attack_dice_drop", "asr_after", "score_after", "p_value_after", "p_value_null_empirical",
            "verified_after", "null_verified_after", "verified_after_with_same_data", "same_data_verified_after",
            "innocents_verified_after_with_same_data")


def test_the_regeneration_script_commits_these_cells():
    script = (COMMITTED.parent / "scripts" / "regenerate_results.sh").read_text()
    lines = [line.split("=", 1)[1] for line in script.splitlines() if line.startswith("FINGERPRINT_ATTACKS=")]
    committed = {name for line in lines for name in line.split(",") if not name.startswith("$")}
    assert set(ATTACKS) <= committed
    marks = next(line for line in script.splitlines() if line.startswith("FINGERPRINT_MARKS="))
    assert set(FINGERPRINTS.names()) <= set(marks.split("=", 1)[1].split(","))
    assert f"--same-data-innocents {SAME_DATA} --seed 0,1,2" in script


@pytest.fixture(scope="module")
def rerun(claims_results):
    return benchmark(watermarks=FINGERPRINTS.names(), attack=",".join(ATTACKS), seed=0, results=claims_results,
                     same_data_innocents=SAME_DATA, log=lambda msg: None).records


def test_the_rerun_reproduces_the_committed_records(rerun, assert_reproduces_committed):
    assert len(rerun) == len(FINGERPRINTS.names()) * len(ATTACKS)
    assert_reproduces_committed(rerun, COMPARED, "fingerprints")


def test_a_fingerprint_costs_the_owner_nothing(rerun):
    for record in rerun:
        assert record.metrics["harm_dice_drop"] == 0.0 and record.metrics["dice_watermarked"] == record.metrics["dice_clean"]
