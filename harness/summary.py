"""The terminal summary printed at the end of ``run``: one table before the attack, one after."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from harness import verdicts
from harness.calibration import format_null_p
from harness.leaderboard import worst_cases
from harness.records import RunRecord


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and abs(value) < 10 ** -digits and value != 0:
        return f"{value:.1e}"
    return f"{value:.{digits}f}"


def _yes(value) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _null_p(m: dict, suffix: str) -> str:
    """The calibrated p-value, never below 1/(K+1) as a number (``format_null_p``)."""
    k = m.get("nulls_before" if suffix else "nulls_after")
    return format_null_p(m.get("p_value_null_empirical" + suffix), m.get("p_value_null_parametric" + suffix),
                         int(k) if k else 0)


def _verdict(word: str) -> str:
    return f"[bold red]{word}[/]" if word == verdicts.REMOVED else word


def print_summary(records: list[RunRecord], console: Console | None = None,
                  dice_budget: float = verdicts.DEFAULT_DICE_BUDGET) -> None:
    console = console or Console(width=160)
    by_watermark: dict[str, list[RunRecord]] = {}
    # A grid varies more than the watermark: name every field that differs between the records.
    varying = [k for k in ("model", "dataset", "preset", "seed") if len({str(r.spec.get(k)) for r in records}) > 1]
    for record in records:
        label = f"{record.spec['watermark']} ({record.spec.get('trigger', '?')})"
        label += "".join(f" {record.spec[k] if k != 'seed' else 'seed ' + str(record.spec[k])}" for k in varying)
        by_watermark.setdefault(label, []).append(record)

    before = Table(title="Before the attack (test split; verification: M triggered + M benign queries)")
    for column in ("watermark", "role", "dice clean", "dice marked", "harm", "AUC harm", "flip rate", "flip clean",
                   "trigger PSNR", "ASR", "FPR", "p paired", "p vs nulls", "verified", "rank verified", "QR",
                   "null ASR", "nulls verified"):
        before.add_column(column, justify="left" if column in ("watermark", "role") else "right",
                          no_wrap=column == "watermark")
    for name, rows in by_watermark.items():
        m = rows[0].metrics
        before.add_row(name, rows[0].spec["role"], _fmt(m["dice_clean"]), _fmt(m["dice_watermarked"]),
                       _fmt(m["harm_dice_drop"], 4), _fmt(m.get("harm_auc_drop"), 4), _fmt(m["flip_rate"], 4), _fmt(m["flip_rate_clean"], 4),
                       _fmt(m["trigger_psnr"], 1), _fmt(m["asr_before"], 2), _fmt(m["fpr_before"], 2),
                       _fmt(m["p_value_before"]), _null_p(m, "_before"), _yes(m["verified_before"]),
                       _yes(m.get("rank_verified_before")), _yes(m["qr_decoded_before"]), _fmt(m["null_asr"], 2), _fmt(m["null_verified"], 2))
    console.print(before)

    after = Table(title=f"After the attack (removed = not verified while the Dice drop is within the budget, "
                        f"{dice_budget:g})")
    for column in ("watermark", "attack", "strength", "dice", "dice drop", "ASR", "FPR", "p paired",
                   "p vs attacked nulls", "verified", "QR", "null ASR", "nulls verified", "verdict", "rank verdict",
                   "seconds"):
        after.add_column(column, justify="left" if column in ("watermark", "attack") else "right",
                         no_wrap=column == "watermark")
    for name, rows in by_watermark.items():
        for record in sorted(rows, key=lambda r: (r.spec["attack"], r.spec["strength"])):
            m = record.metrics
            after.add_row(name, record.spec["attack"], f"{record.spec['strength']:g}", _fmt(m["dice_attacked"]),
                          _fmt(m["attack_dice_drop"]), _fmt(m["asr_after"], 2), _fmt(m["fpr_after"], 2),
                          _fmt(m["p_value_after"]), _null_p(m, ""), _yes(m["verified_after"]),
                          _yes(m["qr_decoded_after"]), _fmt(m["null_asr_after"], 2),
                          _fmt(m.get("null_verified_after"), 2), _verdict(verdicts.cell_verdict(m, dice_budget)),
                          "-" if m.get("rank_verified_before") is None
                          else _verdict(verdicts.cell_verdict(m, dice_budget, "paired-rank")),
                          _fmt(m["attack_seconds"], 2))
    console.print(after)

    table = [{**r.spec, **r.metrics} for r in records]
    worst = Table(title=f"Worst case within the Dice budget of {dice_budget:g} (the removal with the smallest "
                        "Dice cost)")
    classes = {"no_data": "no data", "unlabelled": "unlabelled data", "labelled": "labelled data"}
    for column in ("watermark", "verifier", "attacks tried", "verdict", "worst attack", "strength", "dice drop",
                   *(f"cheapest, {name}" for name in classes.values())):
        worst.add_column(column)
    for row in worst_cases(table, dice_budget):
        label = f"{row['watermark']} ({row['trigger']})" + "".join(
            f" {row[k] if k != 'seed' else 'seed ' + str(row[k])}" for k in varying)
        per_class = [_cheapest(row, slug) for slug in classes]
        worst.add_row(label, row["verifier"], str(row["attacks_tried"]), _verdict(row["verdict"]),
                      row["worst_attack"] or "-", "-" if row["worst_strength"] is None else f"{row['worst_strength']:g}",
                      _fmt(row["attack_dice_drop"]), *per_class)
    console.print(worst)


def _cheapest(row: dict, slug: str) -> str:
    """One budget class's cell of the worst-case table: the cheapest removal in it, or why there is none."""
    verdict = row.get(f"{slug}_verdict")
    if verdict is None:
        return "- (none tried)"
    if row.get(f"{slug}_attack") is None:
        return verdict
    return f"{row[f'{slug}_attack']} {row[f'{slug}_strength']:g} ({_fmt(row[f'{slug}_dice_drop'])})"
