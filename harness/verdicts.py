"""Verdicts derived from a record's evidence when they are shown, never stored.

A record keeps what was measured (Dice before and after, ``verified_before``,
``verified_after``). Whether an attack *removed* a mark depends on the Dice
budget the reader allows the thief, so it is computed here, by one function,
for the leaderboard, ``worst_case.csv``, the terminal summary and the report.

>>> cell = {"verified_before": 1.0, "verified_after": 0.0, "attack_dice_drop": 0.02}
>>> cell_verdict(cell, budget=0.05)
'removed'
>>> cell_verdict(cell, budget=0.01)
'destroyed'
>>> cell_verdict({**cell, "verified_before": 0.0}, budget=0.05)
'never verified'
"""

from __future__ import annotations

DEFAULT_DICE_BUDGET = 0.05

NEVER_VERIFIED = "never verified"  # the mark did not verify before any attack: nothing to remove
SURVIVED = "survived"  # still verified after the attack
REMOVED = "removed"  # not verified after the attack, and the thief kept the model within the Dice budget
DESTROYED = "destroyed"  # not verified after the attack, but only by costing more Dice than the budget
NOT_REMOVED = "not removed"  # worst case of a mark that no attack removed within the budget
VERDICTS = (NEVER_VERIFIED, SURVIVED, REMOVED, DESTROYED)


def cell_verdict(metrics: dict, budget: float = DEFAULT_DICE_BUDGET) -> str:
    """What one attacked cell shows: one of ``VERDICTS`` (WRT's payoff rule for ``removed``)."""
    if not metrics.get("verified_before"):
        return NEVER_VERIFIED
    if metrics.get("verified_after"):
        return SURVIVED
    drop = metrics.get("attack_dice_drop")
    return REMOVED if drop is not None and drop <= budget else DESTROYED


def is_removed(metrics: dict, budget: float = DEFAULT_DICE_BUDGET) -> bool:
    return cell_verdict(metrics, budget) == REMOVED


def worst_case(cells: list[dict], budget: float = DEFAULT_DICE_BUDGET) -> tuple[str, dict | None]:
    """Per mark: (verdict, the cheapest removing cell or None).

    The verdict is ``never verified`` when the mark never verified, ``removed`` when some
    attack removed it within the budget (the returned cell has the smallest Dice cost), and
    ``not removed`` otherwise.

    >>> cells = [{"verified_before": 1.0, "verified_after": 0.0, "attack_dice_drop": d, "attack": a, "strength": 1}
    ...          for a, d in (("prune", 0.2), ("ftal", 0.03))]
    >>> verdict, cell = worst_case(cells)
    >>> verdict, cell["attack"]
    ('removed', 'ftal')
    >>> worst_case(cells, budget=0.01)[0]
    'not removed'
    """
    if not cells or not any(c.get("verified_before") for c in cells):
        return NEVER_VERIFIED, None
    removals = [c for c in cells if is_removed(c, budget)]
    if not removals:
        return NOT_REMOVED, None
    return REMOVED, min(removals, key=lambda c: (c["attack_dice_drop"], str(c.get("attack")),
                                                 float(c.get("strength") or 0)))


def _columns():
    from harness.metrics import Column

    return [Column("dice_budget", None, "The Dice budget the verdict is derived with (`--dice-budget`, default "
                                        "0.05): the most Dice a thief may lose for a failed verification to "
                                        "count as a removal. Not part of the record."),
            Column("verdict", None, "Derived when shown, from verified_before, verified_after and "
                                    "attack_dice_drop: `never verified` (the mark did not verify before the "
                                    "attack), `survived` (still verified), `removed` (not verified, Dice cost "
                                    "within the budget), `destroyed` (not verified, but only at a Dice cost "
                                    "beyond the budget).")]


COLUMNS = _columns()
