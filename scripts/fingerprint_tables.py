"""Watermark against fingerprint: the side-by-side tables of the README and docs/measurements.md.

Reads the leaderboard rows of a results folder whose null population includes innocents trained on
the owner's own images (``harness run --same-data-innocents N``) and prints three Markdown tables:

1. per attack family, cheapest spend first, each scheme's share of attacked models (attacks x seeds)
   still verified, with and without the same-data innocents, and the removals within the Dice budget;
2. per attack, each scheme's verdicts over seeds: verified against the nulls alone, and against the
   nulls together with the same-data innocents (``k/n · k/n``), and the thief's mean Dice cost;
3. false accusations before any attack, with and without the same-data innocents, counted over
   models (the independent units) with a one-sided 95% Clopper-Pearson upper bound, and the worst
   attack for the same-data innocents.

    .venv/bin/python scripts/fingerprint_tables.py [--results results]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from harness.calibration import clopper_pearson_upper  # noqa: E402
from harness.report.data import load_table  # noqa: E402

SCHEMES = (("stealthmark", ""), ("stealthmark", "rank_"), ("badnets", ""), ("badnets", "rank_"),
           ("mask-agreement", ""), ("prob-distance", ""), ("adversarial-agreement", ""))


def scheme_label(watermark: str, prefix: str) -> str:
    return f"{watermark}{' (paired-rank)' if prefix else ''}"


def _share(values) -> str:
    values = [v for v in values if v is not None]
    return f"{int(round(sum(values)))}/{len(values)}" if values else "-"


def verdict_table(rows: list[dict]) -> list[str]:
    by_attack: dict[tuple, dict] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        key = (row["attack"], row["strength"])
        by_attack[key][(row["watermark"], "")].append(row)
        by_attack[key][(row["watermark"], "rank_")].append(row)
    present = [s for s in SCHEMES if any(s in cells for cells in by_attack.values())
               and any(r.get(f"{s[1]}verified_before") is not None for r in by_attack[min(by_attack)][s])]
    head = ["attack", "family", "thief's data"] + [scheme_label(*s) for s in present]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    families = {(r["attack"], r["strength"]): (r["attack_family"], r.get("budget_class") or "") for r in rows}
    order = sorted(by_attack, key=lambda k: (k[0] != "none", families[k][0] != "serving", families[k][0], k[0], k[1]))
    for key in order:
        cells = []
        for watermark, prefix in present:
            group = by_attack[key].get((watermark, prefix), [])
            after = "before" if key[0] == "none" else "after"
            alone = [r.get(f"{prefix}verified_{after}") for r in group]
            joint = [r.get(f"{prefix}verified_{after}_with_same_data") for r in group]
            costs = [r["attack_dice_drop"] for r in group if r.get("attack_dice_drop") is not None]
            # The thief's Dice cost, on the detector's column only (the paired-rank column is the same model).
            cost = "" if prefix or key[0] == "none" or not costs else f", {np.mean(costs):+.3f}"
            cells.append(f"{_share(alone)} · {_share(joint)}{cost}")
        label = key[0] if key[0] == "none" else f"`{key[0]}` {key[1]:g}"
        out.append("| " + " | ".join([label, families[key][0], families[key][1], *cells]) + " |")
    return out


SPEND_ORDER = ("no data", "unlabelled data", "labelled data")


def family_table(rows: list[dict]) -> list[str]:
    """Scheme x attack family: attacked models (attacks x seeds; not independent units, so no interval)
    still verified against the nulls · against nulls and same-data innocents, and the removals: not
    verified within the Dice budget, under the scheme's own verdict."""
    attacked = [r for r in rows if r["attack"] != "none"]
    present = [s for s in SCHEMES if any(r["watermark"] == s[0] and r.get(f"{s[1]}verified_after") is not None
                                         for r in attacked)]
    groups = sorted({(r.get("budget_class") or "", r["attack_family"]) for r in attacked},
                    key=lambda g: (SPEND_ORDER.index(g[0]) if g[0] in SPEND_ORDER else len(SPEND_ORDER), g[1]))
    head = ["thief's spend", "family", "attacks"] + [scheme_label(*s) for s in present]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for spend, family in groups:
        mine = [r for r in attacked if (r.get("budget_class") or "", r["attack_family"]) == (spend, family)]
        attacks = sorted({(r["attack"], r["strength"]) for r in mine})
        cells = []
        for watermark, prefix in present:
            group = [r for r in mine if r["watermark"] == watermark]
            removed = sum(r.get(f"{prefix}verdict") == "removed" for r in group)
            cells.append(f"{_share(r.get(f'{prefix}verified_after') for r in group)} · "
                         f"{_share(r.get(f'{prefix}verified_after_with_same_data') for r in group)}"
                         + (f", **{removed} removed**" if removed else ""))
        names = ", ".join(f"`{a}`" for a, _ in attacks)
        out.append("| " + " | ".join([spend, family, names, *cells]) + " |")
    return out


def accusation_table(rows: list[dict]) -> list[str]:
    head = ["scheme", "owner's Dice cost (mean over seeds)", "nulls accused, nulls only (leave one out)",
            "same-data innocents accused by the nulls' calibration",
            "all innocents accused, same-data included (leave one out)",
            "worst attack for the same-data innocents (attacked, against attacked nulls)"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for watermark, prefix in SCHEMES:
        mine = [r for r in rows if r["watermark"] == watermark]
        before = {r["seed"]: r for r in mine if r["attack"] == "none"}
        if not before or all(r.get(f"{prefix}verified_before") is None for r in before.values()):
            continue
        nulls = [int(round(float(str(r["nulls"]).split("x")[0]))) for r in before.values()]
        same = [int(r["same_data_innocents"]) for r in before.values()]

        def counted(column, sizes):
            accused = sum(int(round(r[column] * n)) for r, n in zip(before.values(), sizes))
            total = sum(sizes)
            return f"{accused}/{total} (bound {clopper_pearson_upper(accused, total):.3f})"

        worst = max((r for r in mine if r["attack"] != "none" and r.get(f"{prefix}same_data_verified_after") is not None),
                    key=lambda r: (r[f"{prefix}same_data_verified_after"], -r["seed"]), default=None)
        worst_text = "-" if worst is None else (
            f"{worst[f'{prefix}same_data_verified_after']:.2f} of {int(worst['same_data_innocents_after'])} "
            f"(`{worst['attack']}` {worst['strength']:g}, seed {int(worst['seed'])})")
        harm = np.mean([r["harm_dice_drop"] for r in before.values()])
        out.append("| " + " | ".join([
            scheme_label(watermark, prefix), f"{harm:+.3f}",
            counted(f"{prefix}null_verified", nulls),
            counted(f"{prefix}same_data_verified", same),
            counted(f"{prefix}innocents_verified_with_same_data", [n + s for n, s in zip(nulls, same)]),
            worst_text]) + " |")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results")
    args = parser.parse_args(argv)
    rows = [r for r in load_table(args.results, log=lambda msg: None) if "same-data" in str(r.get("nulls"))]
    if not rows:
        print(f"no records with same-data innocents in {args.results}", file=sys.stderr)
        return 1
    seeds = sorted({int(r["seed"]) for r in rows})
    print(f"Seeds {', '.join(map(str, seeds))}; each cell: seeds verified against the nulls alone · "
          "against the nulls and the same-data innocents together.\n")
    print("\n".join(family_table(rows)))
    print()
    print("\n".join(verdict_table(rows)))
    print()
    print("\n".join(accusation_table(rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
