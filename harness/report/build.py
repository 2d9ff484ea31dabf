"""``write_report``: read the leaderboard, draw the figures, render both pages, write them atomically."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError
from harness.io import atomic_write_bytes
from harness.report.data import attacked_marks, build_matrix, load_table, mark_label, summary, table_columns
from harness.report.figures import COST_CAPTION, STRENGTH_CAPTION, Figure, plot_cost_scatter, plot_strength_curves, png
from harness.report.gallery import gallery_figures
from harness.report.render import FIGURES_DIR, Content, render_html, render_markdown
from harness.report.seeds import over_seeds
from harness.verdicts import DEFAULT_DICE_BUDGET

REPORT_DIR = "report"
HTML_FILE = "report.html"
MARKDOWN_FILE = "report.md"


@dataclass(frozen=True)
class ReportPaths:
    html: Path
    markdown: Path
    figures: list[Path] = field(default_factory=list)


def _readable_png(path: Path) -> bool:
    try:
        from PIL import Image

        with Image.open(path) as image:
            image.verify()
        return True
    except Exception:  # noqa: BLE001 - any failure means "do not show it"
        return False


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def strength_figures(table: list[dict]) -> list[Figure]:
    """One verification-evidence figure per attacked mark (seeds apart: each seed is its own model)."""
    marks = attacked_marks(table)
    labels = list(marks)
    figures = []
    for mark, rows in marks.items():
        label = mark_label(mark, labels)
        fig, _ = plot_strength_curves(rows, label)
        figures.append(Figure(f"strength-{_slug(label)}.png", label, STRENGTH_CAPTION.format(label=label), png(fig),
                              "strength"))
    return figures


def write_report(results_dir: str | Path = "results", out_dir: str | Path | None = None,
                 dice_budget: float = DEFAULT_DICE_BUDGET, gallery: bool = True, log=print,
                 gallery_samples: int = 300) -> ReportPaths:
    """Write report.html (self-contained), report.md and figures/*.png into ``out_dir``
    (default ``results_dir/report``) from the leaderboard of ``results_dir``.

    ``gallery=False`` skips the certificate/attribution pictures (they need the cached models and take
    seconds per mark); the report then says so. ``gallery_samples``: LIME perturbations per attribution map.
    """
    if not 0 <= dice_budget <= 1:
        raise HarnessError(f"dice budget must be in [0, 1], got {dice_budget}")
    results = Path(results_dir)
    table = load_table(results, log=log)
    out = Path(out_dir) if out_dir is not None else results / REPORT_DIR
    figures = strength_figures(table)
    if any(r.get("attack") != "none" for r in table):
        fig, _ = plot_cost_scatter(table, dice_budget)
        figures.append(Figure("cost-vs-asr.png", "Dice cost against ASR after attack",
                              COST_CAPTION.format(budget=dice_budget), png(fig), "cost"))
    if gallery:
        shown, notes = gallery_figures(results, table, gallery_samples, log=log)
        figures += shown
    else:
        notes = [("Gallery unavailable: not rendered in this run (gallery disabled), so no certificates or "
                  "attribution maps are shown.")]
    existing = [p for p in sorted((results / FIGURES_DIR).glob("*.png")) if _readable_png(p)]
    if not existing:
        notes.append(f"No pictures in {results / FIGURES_DIR} (`harness guard` writes artifact_guard.png there).")

    figure_dir = out / FIGURES_DIR
    paths = []
    for fig in figures:
        path = figure_dir / fig.name
        atomic_write_bytes(path, lambda h, data=fig.png: h.write(data))
        paths.append(path)
    # Figures of an earlier report that this one no longer draws would be dangling: remove them.
    for stale in sorted(figure_dir.glob("*.png")):
        if stale not in paths:
            stale.unlink()
    matrix = build_matrix(table, dice_budget)
    content = Content(table, table_columns(table), matrix, summary(table, matrix), figures, notes, existing,
                      over_seeds(table))
    md = render_markdown(content)
    # The Markdown links figures relative to itself; existing figures via ../figures only when out is results/report.
    if out.resolve() != (results / REPORT_DIR).resolve():
        rel = os.path.relpath(results / FIGURES_DIR, out)
        md = md.replace(f"](../{FIGURES_DIR}/", f"]({Path(rel).as_posix()}/")
    page = render_html(content)
    md_path, html_path = out / MARKDOWN_FILE, out / HTML_FILE
    atomic_write_bytes(md_path, lambda h: h.write(md.encode()))
    atomic_write_bytes(html_path, lambda h: h.write(page.encode()))
    log(f"report: {html_path} and {md_path} ({len(table)} rows, {len(paths)} figures)")
    return ReportPaths(html_path, md_path, paths)
