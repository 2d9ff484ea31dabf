"""Claims of the strongest-thief issue: one attack of every family, re-run, reproduces the committed leaderboard.

RobustBench-style: the cells below (StealthMark, seed 0, tiny, 19 nulls, attacked nulls
after the attack) are re-computed from scratch and must give the committed records' numbers and
verdicts (``results/runs``, regenerated from a clean commit by ``scripts/regenerate_results.sh
claims-subset``). Everything is deterministic on the CPU, so a difference means the code changed
what it measures and the committed results are stale.
"""

from pathlib import Path

import pytest

from harness.registry import ATTACKS, make_attack
from harness.runner import benchmark

pytestmark = pytest.mark.claims

# One attack per family at one strength: the cheapest honest representative of each.
REPRESENTATIVES = {
    "none": "none",
    "pruning": "prune.l1_30",
    "fine-tuning": "ft-pseudo.e5",
    "distillation": "distill-soft.e10",
    "quantization": "quantize.int8",
    "noise": "weight-noise.std5",
    "input-transform": "jpeg.q50",
    "overwriting": "overwrite.e5",
    "serving": "hard-mask.masks",
    "backdoor-removal": "nc-unlearn.e5",
    "chain": "prune.l1_50+ftal.e5",
}
MARKS = ("stealthmark",)
COMMITTED = Path(__file__).parents[2] / "results"
# The numbers each cell is judged by, and the verdicts derived from them.
COMPARED = ("dice_attacked", "attack_dice_drop", "asr_after", "score_after", "p_value_after", "p_value_null_empirical",
            "verified_after", "null_verified_after", "rank_score_after", "rank_p_value_after",
            "rank_p_value_null_empirical", "rank_verified_after", "rank_null_verified_after", "thief_images",
            "thief_labels", "suspect_queries")


def test_every_family_has_a_representative():
    families = {ATTACKS.get(name)().family for name in ATTACKS.names()}
    assert set(REPRESENTATIVES) == families
    for family, label in REPRESENTATIVES.items():
        assert make_attack(label if "+" in label else label.split(".")[0]).family == family


def test_the_regeneration_script_commits_exactly_these_cells():
    script = (COMMITTED.parent / "scripts" / "regenerate_results.sh").read_text()
    assert f"CLAIMS={','.join(REPRESENTATIVES.values())}\n" in script


@pytest.fixture(scope="module")
def rerun(claims_results):
    quiet = lambda msg: None  # noqa: E731
    return benchmark(watermarks=list(MARKS), attack=",".join(REPRESENTATIVES.values()), seed=0,
                     results=claims_results, log=quiet).records


def test_the_rerun_reproduces_the_committed_records(rerun, assert_reproduces_committed):
    assert len(rerun) == len(MARKS) * len(REPRESENTATIVES)
    assert_reproduces_committed(rerun, COMPARED, "claims-subset")
