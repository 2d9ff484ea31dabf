"""The report's pages: report.html from the Jinja2 template ``templates/report.html.j2``, report.md as text.

Both pages show the same things in the same order: the watermark x attack matrix first (the answer),
then the summary, the leaderboard table and the figures. ``Content`` holds everything a page needs;
the views below turn the matrix into labels, colour classes and tooltips once, for both pages.
"""

from __future__ import annotations

import base64
import datetime as _dt
import math
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from harness.leaderboard import LEADERBOARD_FILE
from harness.metrics import Column
from harness.report.data import NO_ATTACK, TEXT_COLUMNS, THIEF_ORDER, UNDECLARED, Matrix, MatrixCell, display, fmt
from harness.report.figures import COST_CAPTION, Figure
from harness.verdicts import DESTROYED, NEVER_VERIFIED, NOT_REMOVED, REMOVED, SURVIVED, cell_verdict

FIGURES_DIR = "figures"
GENERATED_PREFIX = "Generated on "  # the one line that may differ between two runs
VERDICT_COLUMN = "verdict"  # derived per row at the report's budget; not a CSV column
SECTIONS = (("strength", "Verification evidence against attack strength"),
            ("cost", "Dice cost against ASR after attack"),
            ("gallery", "Gallery: QR certificates and attribution maps, watermarked vs null models"))
# What each verdict means, for the legend of both pages.
LEGEND = (
    (REMOVED, "not verified after the attack, at a Dice cost within the budget: the thief wins"),
    (SURVIVED, "still verified after the attack at every strength tried (none column: the mark verified)"),
    (DESTROYED, "not verified after the attack, but only at a Dice cost above the budget"),
    (NEVER_VERIFIED, "the mark did not verify before the attack: there was nothing to remove"),
)
MD_SYMBOL = {REMOVED: "🔴", SURVIVED: "🟢", NOT_REMOVED: "🟢", DESTROYED: "⚪", NEVER_VERIFIED: "🟡"}


@dataclass
class Content:
    """Everything both pages show."""

    table: list[dict]
    columns: list[Column]
    matrix: Matrix
    summary: list[str]
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    existing: list[Path] = field(default_factory=list)  # readable PNGs under results/figures
    seeds: list[dict] = field(default_factory=list)  # harness.report.seeds.over_seeds


SEEDS_INTRO = ("Each mark's figures before any attack, over the seeds it was run with (a seed is an independent "
               "set of models: clean, watermarked and nulls): the mean, a 95% interval (Student t over seeds; "
               "Wilson for the share of seeds verified), each seed's value, and the issue's bar judged on the "
               "mean (for the method under test only).")


def seeds_view(content: Content) -> list[dict]:
    rows = []
    for r in content.seeds:
        label = f"{r['watermark']} ({r['trigger']}) {r['model']} {r['dataset']} {r['preset']}"
        if r.get("nulls") and "same-data" in str(r["nulls"]):
            label += f", nulls {r['nulls']}"
        rows.append({"mark": label, "metric": r["metric"], "seeds": str(r["seeds"]), "mean": fmt(r["mean"]),
                     "interval": f"[{fmt(r['low'])}, {fmt(r['high'])}]",
                     "values": ", ".join(fmt(v) for v in r["values"]), "bar": r["bar"], "met": r["bar_met"]})
    return rows


def generated_day() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    day = _dt.datetime.fromtimestamp(int(epoch), _dt.timezone.utc).date() if epoch else _dt.date.today()
    return day.isoformat()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def verdict_class(name: str) -> str:
    """The CSS class of a verdict: 'never verified' -> 'v-never-verified'."""
    return "v-" + name.replace(" ", "-")


# ----------------------------------------------------------------------------- matrix views


def _label(name: str, attack: str) -> str:
    # Without an attack, "survived" only says the mark verified.
    return "verified" if attack == NO_ATTACK and name == SURVIVED else name


def _cost(row: dict) -> str:
    """The Dice cost in a matrix cell: 3 decimals, enough to compare with a budget like 0.05, and narrow."""
    drop = row.get("attack_dice_drop")
    # + 0.0 turns the -0.0 of a tiny negative cost into 0.0, so it does not print as "-0.000".
    return f"{round(drop, 3) + 0.0:.3f}" if isinstance(drop, float) else "?"


def cell_view(cell: MatrixCell | None, attack: str, budget: float) -> dict:
    """How one matrix cell is shown: css class, verdict label, seed counts, detail line, tooltip."""
    if cell is None:
        return {"verdict": None, "cls": "v-untried", "label": "·", "counts": "", "detail": "",
                "title": f"{attack}: not tried"}
    counts = "" if cell.seeds == 1 else " · ".join(
        f"{_label(v, attack)} {n}/{cell.seeds}" for v, n in _counted(cell))
    row = cell.cell
    detail, title = "", f"{attack}: {_label(cell.verdict, attack)}"
    if row is not None and attack != NO_ATTACK:
        detail = f"{_cost(row)} @ {fmt(row.get('strength'))}"
        which = {REMOVED: "the cheapest removal", DESTROYED: "the cheapest strength that broke verification",
                 SURVIVED: "the costliest strength survived"}.get(cell.verdict, "")
        title += (f" ({which} of {cell.strengths} strength{'s' if cell.strengths != 1 else ''} tried): strength "
                  f"{fmt(row.get('strength'))}, Dice cost {fmt(row.get('attack_dice_drop'))} (budget {budget:g}), "
                  f"ASR after {fmt(row.get('asr_after'))}, FPR after {fmt(row.get('fpr_after'))}, score after "
                  f"{fmt(row.get('score_after'))} vs attacked nulls' threshold {fmt(row.get('null_threshold_after'))}")
    if counts:
        title += f"; seeds: {counts}"
    return {"verdict": cell.verdict, "cls": verdict_class(cell.verdict), "label": _label(cell.verdict, attack),
            "counts": counts,
            "detail": detail, "title": title}


def worst_view(cell: MatrixCell | None, budget: float) -> dict:
    """The row's worst case over every attack tried (``harness.verdicts.worst_case``)."""
    if cell is None:
        return {"verdict": None, "cls": "v-untried", "label": "not attacked", "counts": "", "detail": "",
                "title": "no attack was tried on this mark"}
    counts = "" if cell.seeds == 1 else " · ".join(f"{v} {n}/{cell.seeds}" for v, n in _counted(cell))
    detail = title = ""
    if cell.verdict == REMOVED and cell.cell is not None:
        row = cell.cell
        detail = f"by {row['attack']} @ {fmt(row.get('strength'))}, cost {_cost(row)}"
        title = f"cheapest removal of {cell.strengths} attacks tried: {detail} (budget {budget:g})"
    elif cell.verdict == NOT_REMOVED:
        detail = f"{cell.strengths} attack{'s' if cell.strengths != 1 else ''} tried"
        title = f"no attack removed the mark within a Dice cost of {budget:g}"
    else:
        title = "the mark did not verify before any attack"
    if counts:
        title += f"; seeds: {counts}"
    return {"verdict": cell.verdict, "cls": verdict_class(cell.verdict), "label": cell.verdict, "counts": counts,
            "detail": detail, "title": title}


def _counted(cell: MatrixCell) -> list[tuple[str, int]]:
    return [(v, cell.counts[v]) for v in THIEF_ORDER if cell.counts.get(v)]


def matrix_view(matrix: Matrix) -> dict:
    """The matrix as the template and the Markdown table walk it."""
    rows = []
    for row in matrix.rows:
        cells = [{**cell_view(matrix.cells.get((row.key, attack)), attack, matrix.budget), "attack": attack}
                 for attack, _ in matrix.attacks]
        seeds = f"{len(row.seeds)} seeds" if len(row.seeds) > 1 else f"seed {row.seeds[0]}"
        rows.append({"name": row.name, "extra": " · ".join(row.values), "role": row.role, "label": row.label,
                     "title": ", ".join(f"{k} {fmt(v)}" for k, v in zip(
                         ("watermark", "trigger", "model", "dataset", "preset", "explainer", "nulls"), row.key))
                     + f", {seeds}",
                     "worst": worst_view(row.worst, matrix.budget), "cells": cells})
    families = [{"name": fam or "no attack", "span": span} for fam, span in matrix.families()]
    legend = [{"cls": verdict_class(v), "label": v, "text": text} for v, text in LEGEND]
    return {"rows": rows, "attacks": [a for a, _ in matrix.attacks], "families": families, "legend": legend,
            "budget": f"{matrix.budget:g}"}


MATRIX_INTRO = (
    "Rows: marks (a watermark or baseline, with whatever tells its models apart). Columns: attacks. Each cell "
    "is the verdict of that attack against that mark at the strength best for the thief: the cheapest removal "
    "within the Dice budget if there is one, else destroyed (broke verification only above the budget), survived, "
    "or never verified; its small line is the Dice cost (attack_dice_drop) @ the strength behind it. The none "
    "column says whether the mark verified at all. With several seeds a cell counts the seeds per verdict. Hover "
    "a cell for its evidence.")


# ----------------------------------------------------------------------------- leaderboard views


def _sort_value(value) -> str | None:
    """The exact number a numeric cell sorts by (data-v); None for text and non-finite values."""
    return repr(value) if isinstance(value, float) and math.isfinite(value) else None


def table_view(content: Content) -> dict:
    columns = [{"name": VERDICT_COLUMN, "text": True, "cls": "text",
                "title": (f"Derived, not in the CSV: harness.verdicts.cell_verdict at a Dice budget of "
                          f"{content.matrix.budget:g}.")}]
    for col in content.columns:
        text = col.name in TEXT_COLUMNS
        cls = " ".join(c for c, on in (("text", text), ("undeclared", col.definition == UNDECLARED)) if on)
        columns.append({"name": col.name, "text": text, "cls": cls,
                        "title": f"better: {col.direction}. {col.definition}"})
    rows = []
    for row in content.table:
        v = cell_verdict(row, content.matrix.budget)
        cells = [{"text": _label(v, row.get("attack")), "v": None, "cls": f"text {verdict_class(v)}"}]
        for col in content.columns:
            value = row.get(col.name)
            sort = None if col.name in TEXT_COLUMNS else _sort_value(value)
            cells.append({"text": display(row, col.name), "v": sort, "cls": "" if sort is not None else "text"})
        rows.append({"removed": v == REMOVED and row.get("attack") != NO_ATTACK, "cells": cells})
    return {"columns": columns, "rows": rows}


# ----------------------------------------------------------------------------- HTML


@lru_cache(maxsize=1)
def _environment():
    from jinja2 import Environment, PackageLoader, StrictUndefined

    # Autoescape everything: labels, notes and CSV cells are data (a plugin's column may hold '<').
    return Environment(loader=PackageLoader("harness.report", "templates"), autoescape=True,
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def render_html(content: Content) -> str:
    sections = []
    for section, heading in SECTIONS:
        mine = [f for f in content.figures if f.section == section]
        sections.append({
            "id": section, "heading": heading,
            "intro": COST_CAPTION.format(budget=content.matrix.budget) if section == "cost" else "",
            "figures": [{"src": data_uri(f.png), "alt": f.title, "caption": f.caption} for f in mine],
            "notes": content.notes if section == "gallery" else
            ([] if mine else ["nothing to plot: no attacked cells."]),
            "existing": [{"src": data_uri(p.read_bytes()), "name": p.name, "path": f"{FIGURES_DIR}/{p.name}"}
                         for p in content.existing] if section == "gallery" else [],
        })
    return _environment().get_template("report.html.j2").render(
        generated=f"{GENERATED_PREFIX}{generated_day()}", matrix=matrix_view(content.matrix),
        matrix_intro=MATRIX_INTRO, summary=content.summary, table=table_view(content),
        seeds=seeds_view(content), seeds_intro=SEEDS_INTRO,
        leaderboard_file=LEADERBOARD_FILE, sections=sections)


# ----------------------------------------------------------------------------- Markdown


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def _md_cell(view: dict) -> str:
    if view["verdict"] is None:
        return view["label"]
    symbol = MD_SYMBOL[view["verdict"]]
    words = view["counts"] or view["label"]
    detail = f" ({view['detail']})" if view["detail"] else ""
    return _md(f"{symbol} {words}{detail}".strip())


def render_markdown(content: Content) -> str:
    matrix = matrix_view(content.matrix)
    out = ["# Benchmark report", "", f"{GENERATED_PREFIX}{generated_day()} by `harness report`.", ""]
    out += [f"## Can an attack remove the mark? Verdicts at a Dice budget of {matrix['budget']}", "", MATRIX_INTRO,
            ""]
    out += [" ".join(f"{MD_SYMBOL[item['label']]} **{item['label']}**: {item['text']}." for item in matrix["legend"]),
            ""]
    out.append("| mark | worst case | " + " | ".join(_md(a) for a in matrix["attacks"]) + " |")
    out.append("|---|---|" + "---|" * len(matrix["attacks"]))
    for row in matrix["rows"]:
        out.append(f"| {_md(row['label'])} | {_md_cell(row['worst'])} | "
                   + " | ".join(_md_cell(c) for c in row["cells"]) + " |")
    out.append("")
    out += ["## Summary", ""] + [f"- {line}" for line in content.summary] + [""]
    seeds = seeds_view(content)
    if seeds:
        out += ["## Across seeds", "", SEEDS_INTRO, "",
                "| mark | metric | seeds | mean | 95% interval | per seed | bar | met on the mean |",
                "|---|---|---:|---:|---|---|---|---|"]
        out += [f"| {_md(r['mark'])} | {r['metric']} | {r['seeds']} | {r['mean']} | {r['interval']} | {r['values']} | "
                f"{_md(r['bar'])} | {r['met']} |" for r in seeds] + [""]
    table = table_view(content)
    out += ["## Leaderboard", "",
            (f"One row per cell ({len(content.table)} rows), as in `{LEADERBOARD_FILE}` (numbers rounded to 4 "
             f"significant digits here; column definitions in `README.md`), with the verdict at a Dice budget of "
             f"{matrix['budget']} first. The HTML report sorts by any column."), ""]
    out.append("| " + " | ".join(c["name"] for c in table["columns"]) + " |")
    out.append("|" + "|".join("---" if c["text"] else "---:" for c in table["columns"]) + "|")
    out += ["| " + " | ".join(_md(cell["text"]) for cell in row["cells"]) + " |" for row in table["rows"]]
    out.append("")
    for section, heading in SECTIONS:
        out += [f"## {heading}", ""]
        mine = [f for f in content.figures if f.section == section]
        if section == "cost":
            out += [COST_CAPTION.format(budget=content.matrix.budget), ""]
        for fig in mine:
            out += [f"### {fig.title}", "", f"![{fig.title}]({FIGURES_DIR}/{fig.name})", "", fig.caption, ""]
        if section == "gallery":
            for note in content.notes:
                out += [f"> **Note:** {note}", ""]
            for path in content.existing:
                out += [f"### {path.name}", "", f"![{path.name}](../{FIGURES_DIR}/{path.name})", "",
                        f"`{FIGURES_DIR}/{path.name}`, written by `harness guard`.", ""]
        elif not mine:
            out += ["> **Note:** nothing to plot: no attacked cells.", ""]
    return "\n".join(out).rstrip("\n") + "\n"
