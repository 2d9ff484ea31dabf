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

Every record carries both verifiers' verdicts (``harness.verifiers``); ``verifier``
picks whose evidence a verdict is derived from. What the thief spent is a
record's evidence too (``thief_images``, ``thief_labels``); its budget class is
derived here, so the worst case can be asked per class: the cheapest removal
that needs no data, unlabelled data, or labelled data.
"""

from __future__ import annotations

DEFAULT_DICE_BUDGET = 0.05

NEVER_VERIFIED = "never verified"  # the mark did not verify before any attack: nothing to remove
SURVIVED = "survived"  # still verified after the attack
REMOVED = "removed"  # not verified after the attack, and the thief kept the model within the Dice budget
DESTROYED = "destroyed"  # not verified after the attack, but only by costing more Dice than the budget
NOT_REMOVED = "not removed"  # worst case of a mark that no attack removed within the budget
VERDICTS = (NEVER_VERIFIED, SURVIVED, REMOVED, DESTROYED)


# Where each verifier's verdicts live in a record (harness.measure). "+same-data": the same verifier
# judged against a population that also holds innocents trained on the owner's own images
# (``--same-data-innocents``); records without them have no such verdict.
VERDICT_FIELDS = {"detector": ("verified_before", "verified_after"),
                  "paired-rank": ("rank_verified_before", "rank_verified_after"),
                  "detector+same-data": ("verified_before_with_same_data", "verified_after_with_same_data"),
                  "paired-rank+same-data": ("rank_verified_before_with_same_data",
                                            "rank_verified_after_with_same_data")}
BUDGET_CLASSES = ("no data", "unlabelled data", "labelled data")  # cheapest first


def budget_class(metrics: dict) -> str | None:
    """``no data``, ``unlabelled data`` or ``labelled data`` from the attack's declared spend; None for a
    record without one.

    >>> budget_class({"thief_images": 0.0, "thief_labels": 0.0}), budget_class({"thief_images": 100.0, "thief_labels": 1.0})
    ('no data', 'labelled data')
    """
    images = metrics.get("thief_images")
    if images is None:
        return None
    if not images:
        return BUDGET_CLASSES[0]
    return BUDGET_CLASSES[2] if metrics.get("thief_labels") else BUDGET_CLASSES[1]


def per_verifier(table: list[dict]) -> list[dict]:
    """Each row once per verifier whose evidence it carries, with ``verifier`` set and that verifier's
    verdicts in ``verified_before`` and ``verified_after``: what a view that pivots on the verifier reads.

    >>> rows = per_verifier([{"verified_before": 1.0, "verified_after": 0.0,
    ...                       "rank_verified_before": 1.0, "rank_verified_after": 1.0}])
    >>> [(r["verifier"], r["verified_after"]) for r in rows]
    [('detector', 0.0), ('paired-rank', 1.0)]
    """
    out = []
    for row in table:
        for verifier, (before, after) in VERDICT_FIELDS.items():
            if row.get(before) is not None:
                out.append({**row, "verifier": verifier, "verified_before": row[before],
                            "verified_after": row.get(after)})
    return out


def cell_verdict(metrics: dict, budget: float = DEFAULT_DICE_BUDGET, verifier: str = "detector") -> str:
    """What one attacked cell shows under ``verifier``: one of ``VERDICTS`` (WRT's payoff rule for ``removed``).
    A record without that verifier's evidence (a scheme it does not apply to) was never verified by it."""
    before, after = VERDICT_FIELDS[verifier]
    if not metrics.get(before):
        return NEVER_VERIFIED
    if metrics.get(after):
        return SURVIVED
    drop = metrics.get("attack_dice_drop")
    return REMOVED if drop is not None and drop <= budget else DESTROYED


def is_removed(metrics: dict, budget: float = DEFAULT_DICE_BUDGET, verifier: str = "detector") -> bool:
    return cell_verdict(metrics, budget, verifier) == REMOVED


def worst_case(cells: list[dict], budget: float = DEFAULT_DICE_BUDGET,
               verifier: str = "detector") -> tuple[str, dict | None]:
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
    if not cells or not any(c.get(VERDICT_FIELDS[verifier][0]) for c in cells):
        return NEVER_VERIFIED, None
    removals = [c for c in cells if is_removed(c, budget, verifier)]
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
                                    "beyond the budget)."),
            Column("rank_verdict", None, "The same verdict under the paired-rank verifier (rank_verified_before, "
                                         "rank_verified_after); `never verified` for a scheme it does not apply to."),
            Column("budget_class", None, "Derived from thief_images and thief_labels: `no data`, `unlabelled "
                                         "data` or `labelled data`, what the attack needs beyond the stolen model.")]


COLUMNS = _columns()
