"""Choosing attacks: names, presets, lists, `all`, and the worst-case summary."""

import pytest

from harness.errors import HarnessError, UnknownNameError
from harness.leaderboard import worst_cases
from harness.registry import ATTACKS
from harness.registry import resolve_attacks


def _named(resolved):
    return [(attack.registered_name, strengths) for attack, strengths in resolved]


def test_a_name_sweeps_its_defaults_or_the_given_strengths():
    assert _named(resolve_attacks("prune", None)) == [("prune", (0.1, 0.3, 0.5, 0.7, 0.9))]
    assert _named(resolve_attacks("prune", [0.2, 0.4])) == [("prune", (0.2, 0.4))]


def test_a_preset_is_one_named_strength():
    assert _named(resolve_attacks("prune.l1_50", None)) == [("prune", (0.5,))]
    with pytest.raises(HarnessError, match="prune.l1_10"):
        resolve_attacks("prune.l1_55", None)


def test_all_covers_every_registered_attack_with_its_own_sweep():
    resolved = _named(resolve_attacks("all", None))
    assert [name for name, _ in resolved] == ATTACKS.names()
    assert all(strengths for _, strengths in resolved)


@pytest.mark.parametrize("attack", ["all", "prune.l1_50"])
def test_explicit_strengths_are_refused_where_units_differ(attack):
    with pytest.raises(HarnessError, match="cannot be combined"):
        resolve_attacks(attack, [0.5])


def test_lists_and_unknown_names():
    assert [n for n, _ in _named(resolve_attacks("prune, prune-channels", None))] == ["prune", "prune-channels"]
    with pytest.raises(UnknownNameError, match="did you mean 'prune'"):
        resolve_attacks("prune,prnue", None)


@pytest.mark.parametrize("name", ATTACKS.names())
def test_every_attack_declares_family_presets_and_in_range_defaults(name):
    attack = ATTACKS.get(name)()
    assert attack.family and attack.default_strengths
    for strength in [*attack.default_strengths, *attack.presets.values()]:
        attack.check_strength(strength)


def _row(watermark, attack, strength, verified_after, drop, verified_before=1.0):
    return {"watermark": watermark, "role": "watermark", "trigger": "patch", "model": "m", "dataset": "d",
            "preset": "tiny", "seed": 0, "explainer": "lime", "attack": attack, "strength": strength,
            "verified_before": verified_before, "verified_after": verified_after, "attack_dice_drop": drop,
            "asr_after": 0.0, "p_value_after": 1.0}


def test_worst_case_is_the_cheapest_removal_or_says_why_there_is_none():
    table = [_row("a", "prune", 0.9, 0.0, 0.04), _row("a", "ftal", 5, 0.0, 0.01), _row("a", "prune", 0.1, 1.0, 0.0),
             _row("b", "prune", 0.9, 0.0, 0.7), _row("c", "prune", 0.1, 0.0, 0.0, verified_before=0.0)]
    worst = {row["watermark"]: row for row in worst_cases(table)}
    assert (worst["a"]["worst_attack"], worst["a"]["worst_strength"], worst["a"]["attacks_tried"]) == ("ftal", 5, 3)
    assert worst["a"]["verdict"] == "removed" and worst["a"]["dice_budget"] == 0.05
    # Destroying the model is not a removal; and "none" is an attack's name, so it is never the answer.
    assert worst["b"]["verdict"] == "not removed" and worst["b"]["worst_attack"] is None
    assert worst["b"]["attack_dice_drop"] is None
    # A mark that never verified was never removed "by none at cost 0".
    assert worst["c"]["verdict"] == "never verified" and worst["c"]["worst_attack"] is None


def test_the_budget_is_applied_when_shown():
    table = [_row("a", "ftal", 5, 0.0, 0.03)]
    assert worst_cases(table, 0.05)[0]["verdict"] == "removed"
    assert worst_cases(table, 0.01)[0]["verdict"] == "not removed"


def test_every_attack_is_in_the_readme_table():
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for name in ATTACKS.names():
        assert f"| `{name}` |" in readme, f"README's attack table lacks {name}"
