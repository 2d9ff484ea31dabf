"""The leaderboard CSV, derived from run records alone (delete it and nothing is lost).

Its columns are the declarations of the code that computes them: the cell's spec
(``harness.cell``), the core measurements (``harness.measure``), each plugin's
own ``columns`` (attacks, watermarks), and the verdict derived at the budget
it is shown with (``harness.verdicts``). ``results/README.md``'s column table is
generated from the same list (``columns_markdown``) and a test keeps the two in
step. A metric in a record that no column declares is never dropped: it fails
the rebuild with its name.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from harness import measure, verdicts
from harness.cell import RUN_ID_COLUMN, SPEC_COLUMNS
from harness.errors import HarnessError
from harness.io import atomic_write_bytes
from harness.metrics import Column, merge
from harness.records import load_records
from harness.registry import ATTACKS, BASELINES, WATERMARKS

LEADERBOARD_FILE = "leaderboard.csv"
WORST_CASE_FILE = "worst_case.csv"
# One worst case per mark: everything that identifies the watermarked model, and the innocents its
# verdicts were judged against (a population with same-data innocents is another basis).
MARK_FIELDS = ("watermark", "role", "trigger", "model", "dataset", "preset", "seed", "explainer", "nulls")
_CLASS_SLUGS = {"no data": "no_data", "unlabelled data": "unlabelled", "labelled data": "labelled"}
# One worst case per mark and verifier; then the cheapest removal within each budget class.
WORST_CASE_COLUMNS = [*MARK_FIELDS, "verifier", "dice_budget", "attacks_tried", "verdict", "worst_attack",
                      "worst_strength", "attack_dice_drop", "budget_class", "asr_after", "p_value_after",
                      *(f"{slug}_{what}" for slug in _CLASS_SLUGS.values()
                        for what in ("verdict", "attack", "strength", "dice_drop"))]


def plugin_columns() -> list[Column]:
    """The columns plugins declare (attacks' reports, watermarks' extra verification metrics)."""
    groups = []
    for registry in (ATTACKS, WATERMARKS, BASELINES):
        for name in registry.names():
            groups.append(getattr(registry.get(name), "columns", ()))
    return merge(groups)


def leaderboard_columns() -> list[Column]:
    """Every leaderboard column, in order: spec, core metrics, plugins' metrics, derived verdict, run id."""
    return merge([SPEC_COLUMNS, measure.COLUMNS, plugin_columns(), verdicts.COLUMNS, [RUN_ID_COLUMN]])


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def rows(results_dir: str | Path, dice_budget: float = verdicts.DEFAULT_DICE_BUDGET) -> list[dict]:
    """One row per successful record: its spec and metrics, and the verdict at ``dice_budget``."""
    names = [c.name for c in leaderboard_columns()]
    known = set(names)
    out = []
    for record in load_records(results_dir):
        if record.status != "ok":
            continue
        undeclared = sorted(k for k in record.metrics if k not in known)
        if undeclared:
            raise HarnessError(f"record {record.run_id} has undeclared metric(s) {', '.join(undeclared)}; "
                               "declare each as a harness.metrics.Column where it is computed")
        has_rank = record.metrics.get("rank_verified_before") is not None
        row = {**record.spec, **record.metrics, "run_id": record.run_id,
               "dice_budget": dice_budget, "verdict": verdicts.cell_verdict(record.metrics, dice_budget),
               "rank_verdict": verdicts.cell_verdict(record.metrics, dice_budget, "paired-rank") if has_rank else None,
               "budget_class": verdicts.budget_class(record.metrics)}
        out.append({name: row.get(name) for name in names})
    order = ("role", "watermark", "trigger", "model", "dataset", "preset", "attack", "strength", "seed", "explainer")
    return sorted(out, key=lambda r: tuple(str(r[k]) if k != "strength" else float(r[k]) for k in order))


def worst_cases(table: list[dict], dice_budget: float = verdicts.DEFAULT_DICE_BUDGET) -> list[dict]:
    """Per mark and verifier, the attack that removes it at the smallest Dice cost (WRT's payoff rule), or
    why none does; and the same within each budget class (no data, unlabelled data, labelled data)."""
    marks: dict[tuple, list[dict]] = {}
    for row in table:
        marks.setdefault(tuple(row.get(f) for f in MARK_FIELDS), []).append(row)
    out = []
    for mark, cells in marks.items():
        for verifier, (before, _) in verdicts.VERDICT_FIELDS.items():
            if all(c.get(before) is None for c in cells):
                continue  # a scheme this verifier does not apply to
            verdict, best = verdicts.worst_case(cells, dice_budget, verifier)
            row = {**dict(zip(MARK_FIELDS, mark)), "verifier": verifier, "dice_budget": dice_budget,
                   "attacks_tried": len(cells), "verdict": verdict,
                   **{k: (best or {}).get(k) for k in ("attack_dice_drop", "budget_class", "asr_after",
                                                        "p_value_after")},
                   "worst_attack": best["attack"] if best else None,
                   "worst_strength": best["strength"] if best else None}
            for budget_class, slug in _CLASS_SLUGS.items():
                mine = [c for c in cells if verdicts.budget_class(c) == budget_class]
                if not mine:
                    continue  # no attack of this class was tried: nothing to say, not "not removed"
                verdict, best = verdicts.worst_case(mine, dice_budget, verifier)
                row.update({f"{slug}_verdict": verdict, f"{slug}_attack": best["attack"] if best else None,
                            f"{slug}_strength": best["strength"] if best else None,
                            f"{slug}_dice_drop": best["attack_dice_drop"] if best else None})
            out.append(row)
    return out


def _write_csv(path: Path, columns: list[str], table: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _cell(row.get(k)) for k in columns} for row in table)
    atomic_write_bytes(path, lambda h: h.write(buffer.getvalue().encode()))


def write_leaderboard(results_dir: str | Path, dice_budget: float = verdicts.DEFAULT_DICE_BUDGET) -> tuple[Path, int]:
    """Rebuild ``leaderboard.csv`` and ``worst_case.csv`` from the records; returns (path, number of rows)."""
    table = rows(results_dir, dice_budget)
    path = Path(results_dir) / LEADERBOARD_FILE
    _write_csv(path, [c.name for c in leaderboard_columns()], table)
    _write_csv(Path(results_dir) / WORST_CASE_FILE, WORST_CASE_COLUMNS, worst_cases(table, dice_budget))
    return path, len(table)


def columns_markdown() -> str:
    """The column reference table of results/README.md."""
    lines = ["| column | better | definition |", "|---|---|---|"]
    lines += [f"| `{c.name}` | {c.direction} | {c.definition} |" for c in leaderboard_columns()]
    return "\n".join(lines) + "\n"
