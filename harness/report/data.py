"""The report's data: the leaderboard rows, their verdicts, and the watermark x attack matrix.

Nothing here draws or renders. Every "removed" decision is ``harness.verdicts``'s:
a verdict depends on the Dice budget the reader allows the thief, so it is
derived here from the evidence columns (``verified_before``, ``verified_after``,
``attack_dice_drop``) and never read from the CSV.

>>> rows = [{"watermark": "wm", "role": "watermark", "trigger": "patch", "model": "unet", "dataset": "d",
...          "preset": "tiny", "explainer": "lime", "nulls": "n", "seed": float(seed), "attack": "ftal",
...          "attack_family": "fine-tuning", "strength": 5.0, "verified_before": 1.0,
...          "verified_after": float(seed == 2), "attack_dice_drop": 0.01} for seed in (0, 1, 2)]
>>> matrix = build_matrix(rows, budget=0.05)
>>> cell = matrix.cells[(matrix.rows[0].key, "ftal")]
>>> cell.verdict, cell.counts_text()
('removed', 'removed 2/3 · survived 1/3')
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError
from harness.leaderboard import LEADERBOARD_FILE, leaderboard_columns, write_leaderboard
from harness.metrics import Column
from harness.records import RUNS_DIR
from harness.verdicts import (
    DEFAULT_DICE_BUDGET,
    DESTROYED,
    NEVER_VERIFIED,
    NOT_REMOVED,
    REMOVED,
    SURVIVED,
    cell_verdict,
    per_verifier,
    worst_case,
)

# Columns read as text even when a value looks like a number (a dataset or run id may).
TEXT_COLUMNS = frozenset({"watermark", "role", "trigger", "model", "dataset", "preset", "attack", "attack_family",
                          "explainer", "nulls", "run_id", "verdict", "rank_verdict", "budget_class"})
# One watermarked model (its figures are per seed).
MARK_FIELDS = ("watermark", "trigger", "model", "dataset", "preset", "seed", "explainer")
# One row of the matrix: a mark and a verifier, without the seed, since seeds are counted inside the cell.
ROW_FIELDS = ("watermark", "trigger", "model", "dataset", "preset", "explainer", "nulls", "verifier")
NO_ATTACK = "none"
# The thief's preference when one attack was tried at several strengths (or seeds): a removal within the
# budget wins; a mark destroyed with the model still tells more than one that survived; a mark that never
# verified had nothing to remove.
# A mark's worst case over all attacks is REMOVED, NOT_REMOVED or NEVER_VERIFIED, in that order.
THIEF_ORDER = (REMOVED, DESTROYED, SURVIVED, NOT_REMOVED, NEVER_VERIFIED)
UNDECLARED = "Not a declared leaderboard column (a plugin's own column?); shown as the CSV has it."


# ----------------------------------------------------------------------------- table


def _parse(name: str, text: str):
    if name in TEXT_COLUMNS:
        return text
    if text == "":
        return None
    try:
        return float(text)
    except ValueError:
        return text


def load_table(results_dir: str | Path, log=print) -> list[dict]:
    """The leaderboard rows with every CSV column in CSV order (numbers as floats, empty cells as None).

    The CSV is rebuilt from the records if missing. Columns nobody declared (a plugin's) are kept.
    """
    results = Path(results_dir)
    runs = results / RUNS_DIR
    if not results.is_dir() or not runs.is_dir() or not any(runs.glob("*.json")):
        raise HarnessError(f"no run records under {runs}; run `harness run` first")
    path = results / LEADERBOARD_FILE
    if not path.is_file():
        path, count = write_leaderboard(results)
        log(f"leaderboard rebuilt from the records: {path} ({count} rows)")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        table = [{name: _parse(name, row.get(name) or "") for name in reader.fieldnames or []} for row in reader]
    if not table:
        raise HarnessError(f"no finished cells in {path} (records under {runs} all failed?); run `harness run` first")
    missing = sorted({"watermark", "attack", "strength"} - set(table[0]))
    if missing:
        raise HarnessError(f"{path} has no column {', '.join(missing)}; rebuild it with `harness leaderboard`")
    return table


def table_columns(table: list[dict]) -> list[Column]:
    """The table's columns in CSV order, each with its declaration (an undeclared one gets a stub)."""
    declared = {c.name: c for c in leaderboard_columns()}
    return [declared.get(name) or Column(name, None, UNDECLARED) for name in (table[0] if table else [])]


def display(row: dict, name: str) -> str:
    """A cell of ``row`` as people read it: ``fmt``, except that a null-calibrated p-value never shows a
    number below 1/(K+1) (``harness.calibration.format_null_p``) and a parametric one says so."""
    from harness.calibration import format_null_p

    value = row.get(name)
    for stem in ("p_value_null_empirical", "p_value_null_parametric"):
        if name.startswith(stem) and isinstance(value, float) and not math.isnan(value):
            suffix = name[len(stem):]  # "" (after the attack) or "_before"
            if stem.endswith("parametric"):
                return f"({value:.2g}, parametric)"
            k = row.get("nulls_before" if suffix else "nulls_after")
            return format_null_p(value, row.get("p_value_null_parametric" + suffix), int(k) if k else 0)
    return fmt(value)


def fmt(value) -> str:
    """A cell as the report prints it: 4 significant digits, integers without a decimal point, None as ''.

    >>> fmt(0.123456), fmt(20.0), fmt(None), fmt("patch")
    ('0.1235', '20', '', 'patch')
    """
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if value == int(value) and abs(value) < 1e9:
            return str(int(value))
        return f"{value:.4g}"
    return str(value)


def is_attack(row: dict) -> bool:
    return row.get("attack") != NO_ATTACK


def family(row: dict) -> str:
    return row.get("attack_family") or row["attack"]


def mark_of(row: dict) -> tuple:
    return tuple(row.get(f) for f in MARK_FIELDS)


def label(fields: tuple[str, ...], key: tuple, keys: list[tuple]) -> tuple[str, list[str]]:
    """(watermark, the other fields that tell ``key`` apart from the keys of the same watermark)."""
    return key[0], [f"{name} {fmt(key[i])}" for i, name in _varying(fields, key, keys)]


def _varying(fields: tuple[str, ...], key: tuple, keys: list[tuple]) -> list[tuple[int, str]]:
    same = [k for k in keys if k[0] == key[0]]
    return [(i, name) for i, name in enumerate(fields) if i > 0 and len({k[i] for k in same}) > 1]


def mark_label(mark: tuple, marks: list[tuple]) -> str:
    name, extra = label(MARK_FIELDS, mark, marks)
    return name + (f" ({', '.join(extra)})" if extra else "")


def attacked_marks(table: list[dict]) -> dict[tuple, list[dict]]:
    """Marks (watermark, trigger, model, dataset, preset, seed, explainer) with at least one real attack."""
    marks: dict[tuple, list[dict]] = {}
    for row in table:
        marks.setdefault(mark_of(row), []).append(row)
    return {m: rows for m, rows in marks.items() if any(is_attack(r) for r in rows)}


# ----------------------------------------------------------------------------- matrix


@dataclass
class MatrixCell:
    """What one attack did to one mark, over its seeds: each seed's verdict at the strength best for the thief.

    ``verdict`` is the thief's best over the seeds; ``cell`` the leaderboard row behind it (the cheapest
    removal or destruction, the costliest attack survived; None when the mark never verified).
    """

    verdict: str
    counts: dict[str, int]
    seeds: int
    cell: dict | None
    strengths: int  # strengths tried, over all seeds (for a mark's worst case: attacks tried)

    def counts_text(self) -> str:
        """'' for one seed, else 'removed 2/3 · survived 1/3' (the thief's best first)."""
        if self.seeds == 1:
            return ""
        return " · ".join(f"{v} {self.counts[v]}/{self.seeds}" for v in _ordered(self.counts))


@dataclass
class MatrixRow:
    key: tuple  # ROW_FIELDS values
    role: str
    name: str  # the watermark
    extra: list[str]  # the fields that tell it apart from the other rows of that watermark
    values: list[str]  # their values alone, for the matrix's narrow first column
    seeds: list
    worst: MatrixCell | None  # over every attack but `none`; None when no attack was tried

    @property
    def label(self) -> str:
        return self.name + (f" ({', '.join(self.extra)})" if self.extra else "")


@dataclass
class Matrix:
    budget: float
    rows: list[MatrixRow]
    attacks: list[tuple[str, str]]  # (attack, family), `none` first
    cells: dict[tuple[tuple, str], MatrixCell] = field(default_factory=dict)

    def families(self) -> list[tuple[str, int]]:
        """(family, number of attack columns) in column order, for a grouped header."""
        out: list[tuple[str, int]] = []
        for _, fam in self.attacks:
            if out and out[-1][0] == fam:
                out[-1] = (fam, out[-1][1] + 1)
            else:
                out.append((fam, 1))
        return out


def _ordered(counts: dict[str, int]) -> list[str]:
    return sorted((v for v in counts if counts[v]), key=THIEF_ORDER.index)


def _cost(row: dict) -> float:
    """The Dice cost for picking the cheapest cell (unknown sorts last)."""
    drop = row.get("attack_dice_drop")
    return math.inf if drop is None else drop


def _spent(row: dict) -> float:
    """The Dice cost for picking the costliest cell (unknown sorts first)."""
    drop = row.get("attack_dice_drop")
    return -math.inf if drop is None else drop


def _strength(row: dict) -> float:
    value = row.get("strength")
    return value if isinstance(value, float) else 0.0


def _best_for_thief(cells: list[dict], budget: float) -> tuple[str, dict | None]:
    """One seed's cells of one attack: (verdict, the row behind it)."""
    found, removal = worst_case(cells, budget)
    if found == REMOVED or found == NEVER_VERIFIED:
        return found, removal
    verdicts = [(cell_verdict(c, budget), c) for c in cells]
    destroyed = [c for v, c in verdicts if v == DESTROYED]
    if destroyed:
        return DESTROYED, min(destroyed, key=lambda c: (_cost(c), _strength(c)))
    survived = [c for v, c in verdicts if v == SURVIVED]
    # worst_case says it verified and nothing removed it, so some strength survived.
    return SURVIVED, max(survived, key=lambda c: (_spent(c), _strength(c)))


def _over_seeds(per_seed: list[tuple[str, dict | None]], strengths: int) -> MatrixCell:
    counts: dict[str, int] = {}
    for v, _ in per_seed:
        counts[v] = counts.get(v, 0) + 1
    headline = _ordered(counts)[0]
    mine = [c for v, c in per_seed if v == headline and c is not None]
    if not mine:
        cell = None
    elif headline == SURVIVED:
        cell = max(mine, key=_spent)
    else:
        cell = min(mine, key=_cost)
    return MatrixCell(headline, counts, len(per_seed), cell, strengths)


def _seed_key(row: dict):
    return fmt(row.get("seed"))


def build_matrix(table: list[dict], budget: float = DEFAULT_DICE_BUDGET) -> Matrix:
    """Rows = marks x verifiers (seeds pooled), columns = attacks (`none` first, then by family): the verdicts."""
    table = per_verifier(table)
    groups: dict[tuple, dict[str, dict[str, list[dict]]]] = {}
    attacks: dict[str, str] = {}
    roles: dict[tuple, str] = {}
    for row in table:
        key = tuple(row.get(f) for f in ROW_FIELDS)
        roles.setdefault(key, row.get("role") or "")
        attacks.setdefault(row["attack"], family(row) if is_attack(row) else "")
        groups.setdefault(key, {}).setdefault(row["attack"], {}).setdefault(_seed_key(row), []).append(row)
    columns = sorted(attacks.items(), key=lambda a: (a[0] != NO_ATTACK, a[1], a[0]))
    matrix = Matrix(budget, [], columns)
    keys = list(groups)
    for key, by_attack in groups.items():
        for attack, by_seed in by_attack.items():
            per_seed = [_best_for_thief(cells, budget) for _, cells in sorted(by_seed.items())]
            strengths = len({r.get("strength") for cells in by_seed.values() for r in cells})
            matrix.cells[(key, attack)] = _over_seeds(per_seed, strengths)
        seeds = sorted({s for by_seed in by_attack.values() for s in by_seed})
        attacked = [a for a in by_attack if a != NO_ATTACK]
        worst = None
        if attacked:
            per_seed = []
            for seed in seeds:
                cells = [r for a in attacked for r in by_attack[a].get(seed, [])]
                if cells:
                    per_seed.append(worst_case(cells, budget))
            worst = _over_seeds(per_seed, len(attacked))
        name, extra = label(ROW_FIELDS, key, keys)
        values = [fmt(key[i]) for i, _ in _varying(ROW_FIELDS, key, keys)]
        matrix.rows.append(MatrixRow(key, roles[key], name, extra, values, seeds, worst))
    # Methods under test before baselines; the most thoroughly attacked mark of a watermark first.
    matrix.rows.sort(key=lambda r: (r.role != "watermark", r.name, -len(groups[r.key]),
                                    tuple(fmt(v) for v in r.key)))
    return matrix


# ----------------------------------------------------------------------------- summary


def summary(table: list[dict], matrix: Matrix) -> list[str]:
    """The summary's bullet points: what was run, and which marks an attack removed within the budget."""
    attacked = [r for r in matrix.rows if r.worst is not None]
    removed = [r for r in attacked if r.worst.verdict == REMOVED]
    never = [r for r in matrix.rows if matrix.cells.get((r.key, NO_ATTACK)) is not None
             and matrix.cells[(r.key, NO_ATTACK)].verdict == NEVER_VERIFIED]
    lines = [(f"{len(table)} cells, {len({r['watermark'] for r in table})} watermarks and baselines, "
              f"{len(matrix.rows)} rows (mark x verifier), "
              f"{len([a for a, _ in matrix.attacks if a != NO_ATTACK])} attacks."),
             (f"Removal budget: a Dice cost of at most {matrix.budget:g}. {len(removed)} of {len(attacked)} attacked "
              f"rows were removed by some attack within it; {len(never)} of {len(matrix.rows)} never verified.")]
    for row in removed:
        cell = row.worst.cell
        seeds = f" ({row.worst.counts_text()})" if row.worst.seeds > 1 else ""
        lines.append(f"removed: {row.label} by {cell['attack']} at strength {fmt(cell['strength'])}, Dice cost "
                     f"{fmt(cell['attack_dice_drop'])}, ASR after {fmt(cell.get('asr_after'))}{seeds}")
    lines += disagreements(table)
    return lines


def disagreements(table: list[dict]) -> list[str]:
    """The cells where the paired and the calibrated test disagree after the attack (verified needs both),
    and those whose verdict changed because the nulls were attacked too: shown, never hidden in a verdict.

    >>> disagreements([{"watermark": "w", "trigger": "t", "model": "m", "seed": 0, "attack": "a", "strength": 1.0,
    ...                 "paired_verified_after": 0.0, "calibrated_verified_after": 1.0}])
    ['1 cells where the paired and the calibrated test disagree after the attack (not verified: both must pass): w (t) m seed 0 a 1: calibrated only']
    """
    split = [r for r in table if r.get("paired_verified_after") is not None
             and r.get("calibrated_verified_after") is not None
             and bool(r["paired_verified_after"]) != bool(r["calibrated_verified_after"])]
    moved = [r for r in table if r.get("verified_after_clean_calibration") is not None
             and bool(r["verified_after_clean_calibration"]) != bool(r.get("verified_after"))]

    def name(r):
        return f"{r['watermark']} ({r['trigger']}) {r['model']} seed {r['seed']} {r['attack']} {fmt(r['strength'])}"

    lines = []
    if split:
        lines.append(f"{len(split)} cells where the paired and the calibrated test disagree after the attack (not "
                     "verified: both must pass): " + "; ".join(
                         f"{name(r)}: {'paired' if r['paired_verified_after'] else 'calibrated'} only"
                         for r in split))
    if moved:
        lines.append(f"{len(moved)} cells whose verdict differs from the one against the unattacked nulls: " + "; ".join(
            f"{name(r)}: {'verified' if r.get('verified_after') else 'not verified'} against attacked nulls"
            for r in moved))
    return lines
