"""``harness report``: the leaderboard as one self-contained HTML page and a Markdown file.

``write_report`` reads ``results/leaderboard.csv`` (rebuilding it from the run
records when it is missing) and writes ``results/report/``:

- ``report.html``: one file that works offline, rendered from
  ``templates/report.html.j2``. CSS and the table-sorting script are inline,
  every figure is a ``data:`` URI. Its first screen answers the question: a
  watermark x attack matrix of verdicts (``harness.verdicts``) at the Dice budget.
- ``report.md``: the same sections, the tables as GitHub tables, figures as
  relative links into ``report/figures/``.
- ``figures/*.png``: the verifier's separation score against attack strength per
  mark (with the null threshold), the Dice cost / ASR scatter with the removal
  budget, and a gallery of QR certificates and attribution maps (watermarked
  model next to a null model).

The gallery needs the cached models and keys (``results/cache``). It never
trains anything: when an artifact is missing the report says so in a visible
note instead of showing a broken picture.

Output is deterministic: the only line that changes between two runs on the
same results is the generation date (``SOURCE_DATE_EPOCH`` fixes it).

Modules: ``data`` (table, verdicts, matrix), ``figures`` (matplotlib),
``gallery`` (cached-model pictures), ``render`` (HTML and Markdown), ``build``
(``write_report``).
"""

from harness.report.build import HTML_FILE, MARKDOWN_FILE, REPORT_DIR, ReportPaths, write_report
from harness.report.data import Matrix, MatrixCell, build_matrix, load_table
from harness.report.figures import Figure, plot_cost_scatter, plot_strength_curves
from harness.report.render import FIGURES_DIR, GENERATED_PREFIX, render_html, render_markdown

__all__ = ["FIGURES_DIR", "GENERATED_PREFIX", "HTML_FILE", "MARKDOWN_FILE", "REPORT_DIR", "Figure", "Matrix",
           "MatrixCell", "ReportPaths", "build_matrix", "load_table", "plot_cost_scatter", "plot_strength_curves",
           "render_html", "render_markdown", "write_report"]
