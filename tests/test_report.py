"""``harness report``: pages and figures from a small fake results dir (no models, no training)."""

from __future__ import annotations

import base64
import csv
import io
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.errors import HarnessError
from harness.leaderboard import LEADERBOARD_FILE, rows, write_leaderboard
from harness.records import RunRecord
from harness.report import (
    GENERATED_PREFIX,
    HTML_FILE,
    MARKDOWN_FILE,
    load_table,
    plot_cost_scatter,
    plot_strength_curves,
    write_report,
)

ROOT = Path(__file__).resolve().parents[1]
NULLS = "10x basic-unet @ 0.05"
THRESHOLD = 0.3
# (watermark, role, trigger, attack, family, strength, asr_after, dice_attacked, verified_before, verified_after,
#  score_after). With the Dice budget 0.05 the matrix must read:
#   stealthmark: none verified; prune destroyed (only 0.9 breaks it, at a cost of 0.72); fine-prune survived;
#                ftal removed, cheapest at strength 5 (cost 0.02).
#   badnets:     prune destroyed; jpeg survived; gauss-noise removed although ASR = 1 (FPR = 1 too).
#   wanet:       never verified, with and without an attack.
CELLS = [
    ("stealthmark", "watermark", "patch", "none", "none", 0.0, 1.0, 0.77, 1.0, 1.0, 0.9),
    ("stealthmark", "watermark", "patch", "prune", "pruning", 0.1, 1.0, 0.76, 1.0, 1.0, 0.85),
    ("stealthmark", "watermark", "patch", "prune", "pruning", 0.5, 0.6, 0.60, 1.0, 1.0, 0.5),
    ("stealthmark", "watermark", "patch", "prune", "pruning", 0.9, 0.0, 0.05, 1.0, 0.0, 0.05),
    ("stealthmark", "watermark", "patch", "fine-prune", "pruning", 0.3, 1.0, 0.74, 1.0, 1.0, 0.8),
    ("stealthmark", "watermark", "patch", "ftal", "fine-tuning", 5.0, 0.5, 0.75, 1.0, 0.0, 0.2),
    ("stealthmark", "watermark", "patch", "ftal", "fine-tuning", 20.0, 0.0, 0.74, 1.0, 0.0, 0.1),
    ("badnets", "baseline", "patch", "none", "none", 0.0, 1.0, 0.58, 1.0, 1.0, 0.9),
    ("badnets", "baseline", "patch", "prune", "pruning", 0.3, 1.0, 0.57, 1.0, 1.0, 0.9),
    ("badnets", "baseline", "patch", "prune", "pruning", 0.7, 0.0, 0.10, 1.0, 0.0, 0.0),
    ("badnets", "baseline", "patch", "jpeg", "input-transform", 20.0, 1.0, 0.40, 1.0, 1.0, 0.7),
    ("badnets", "baseline", "patch", "gauss-noise", "noise", 0.1, 1.0, 0.57, 1.0, 0.0, 0.1),
    ("wanet", "baseline", "warp", "none", "none", 0.0, 0.1, 0.70, 0.0, 0.0, 0.1),
    ("wanet", "baseline", "warp", "prune", "pruning", 0.5, 0.1, 0.69, 0.0, 0.0, 0.1),
]
DICE_MARKED = {"stealthmark": 0.77, "badnets": 0.58, "wanet": 0.70}
EXPECTED = {  # (mark, attack) -> (css class, label) in the HTML matrix
    ("stealthmark", "none"): ("v-survived", "verified"),
    ("stealthmark", "prune"): ("v-destroyed", "destroyed"),
    ("stealthmark", "fine-prune"): ("v-survived", "survived"),
    ("stealthmark", "ftal"): ("v-removed", "removed"),
    ("stealthmark", "jpeg"): ("v-untried", "·"),
    ("stealthmark", "worst case"): ("v-removed", "removed"),
    ("badnets", "prune"): ("v-destroyed", "destroyed"),
    ("badnets", "jpeg"): ("v-survived", "survived"),
    ("badnets", "gauss-noise"): ("v-removed", "removed"),
    ("badnets", "worst case"): ("v-removed", "removed"),
    ("wanet", "none"): ("v-never-verified", "never verified"),
    ("wanet", "prune"): ("v-never-verified", "never verified"),
    ("wanet", "worst case"): ("v-never-verified", "never verified"),
}


def _write_records(results: Path, cells=CELLS, seed: int = 0) -> None:
    for i, (wm, role, trigger, attack, family, strength, asr, dice, before, after, score) in enumerate(cells):
        spec = {"watermark": wm, "role": role, "trigger": trigger, "model": "basic-unet",
                "dataset": "synthetic-polyp", "preset": "tiny", "attack": attack, "attack_family": family,
                "strength": strength, "seed": seed, "explainer": "lime", "nulls": NULLS}
        flags_everything = asr == 1.0 and not after  # the verifier flags benign queries too
        metrics = {"dice_clean": 0.78, "dice_watermarked": DICE_MARKED[wm], "dice_attacked": dice,
                   "attack_dice_drop": DICE_MARKED[wm] - dice, "asr_before": 1.0, "fpr_before": 0.0,
                   "verified_before": before, "score_before": 0.9, "null_threshold": THRESHOLD,
                   "asr_after": asr, "fpr_after": 1.0 if flags_everything else 0.0, "verified_after": after,
                   "score_after": score, "p_value_after": 0.5,
                   "qr_decoded_after": None if role == "baseline" else after}
        RunRecord(f"{seed:04x}{i:012x}", spec, metrics, versions={}, command="test").write(results)


@pytest.fixture(scope="module")
def fake_results(tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("results")
    _write_records(results)
    write_leaderboard(results)
    figures = results / "figures"
    figures.mkdir()
    Image.fromarray(np.full((20, 30), 128, np.uint8)).save(figures / "artifact_guard.png")
    return results


@pytest.fixture(scope="module")
def report(fake_results):
    return write_report(fake_results, gallery=True, log=lambda msg: None)


def _png_ok(data: bytes) -> bool:
    with Image.open(io.BytesIO(data)) as image:
        image.verify()
        return image.format == "PNG" and image.size[0] > 0


class _Matrix(HTMLParser):
    """The matrix cells of a page: (data-mark, data-attack) -> (verdict class, <b> text, all text)."""

    def __init__(self):
        super().__init__()
        self.cells, self._cell, self._bold, self._in = {}, None, False, False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._in = attrs.get("id") == "matrix"
        elif self._in and tag == "td":
            verdict = [c for c in attrs["class"].split() if c.startswith("v-")]
            self._cell = [attrs["data-mark"], attrs["data-attack"], " ".join(verdict), "", ""]
        elif tag == "b" and self._cell is not None:
            self._bold = True

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            mark, attack, cls, bold, text = self._cell
            self.cells[(mark, attack)] = (cls, bold, text)
            self._cell = None
        elif tag == "b":
            self._bold = False
        elif tag == "table":
            self._in = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[4] += data + " "
            if self._bold:
                self._cell[3] += data


def _matrix(page: str) -> dict:
    parser = _Matrix()
    parser.feed(page)
    return parser.cells


def _leaderboard_html(page: str) -> str:
    return page.split('id="leaderboard"', 1)[1].split("</table>", 1)[0]


def test_html_and_markdown_written(report, fake_results):
    assert report.html == fake_results / "report" / HTML_FILE and report.html.is_file()
    assert report.markdown == fake_results / "report" / MARKDOWN_FILE and report.markdown.is_file()
    assert report.figures and all(p.is_file() and p.parent == fake_results / "report" / "figures"
                                  for p in report.figures)


def test_every_html_image_decodes_and_page_is_self_contained(report):
    page = report.html.read_text()
    sources = re.findall(r'<img\b[^>]*\bsrc="([^"]+)"', page)
    # 3 strength figures (one per attacked mark), the scatter, the existing artifact_guard.png
    assert len(sources) == len(re.findall(r"<img\b", page)) == 5
    for src in sources:
        assert src.startswith("data:image/png;base64,"), src[:40]
        assert _png_ok(base64.b64decode(src.split(",", 1)[1]))
    assert "http://" not in page and "https://" not in page  # no CDN, works offline
    assert "<style>" in page and "<script>" in page
    assert "{%" not in page and "{{" not in page  # the template was rendered, not copied


def test_every_markdown_link_is_a_readable_png(report):
    text = report.markdown.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(links) == 5
    for link in links:
        assert not link.startswith(("/", "http", "data:")), link
        assert _png_ok((report.markdown.parent / link).read_bytes()), link
    assert "../figures/artifact_guard.png" in links


def test_matrix_is_the_first_section(report):
    page = report.html.read_text()
    first_h2 = re.search(r"<h2>(.*?)</h2>", page).group(1)
    assert first_h2.startswith("Can an attack remove the mark?") and "Dice budget of 0.05" in first_h2
    assert re.search(r"<table\b[^>]*>", page).group(0) == '<table class="matrix" id="matrix">'
    assert page.index('id="matrix"') < page.index("<h2>Summary</h2>") < page.index('id="leaderboard"') \
        < page.index("<figure>")
    # The legend explains each colour next to the matrix.
    legend = page.split('<ul class="legend">', 1)[1].split("</ul>", 1)[0]
    for cls in ("v-removed", "v-survived", "v-destroyed", "v-never-verified"):
        assert f'class="swatch {cls}"' in legend
    text = report.markdown.read_text()
    first_table = next(line for line in text.splitlines() if line.startswith("|"))
    assert first_table.startswith("| mark | worst case | none |")
    assert text.index("| mark | worst case |") < text.index("## Summary") < text.index("## Leaderboard")


def test_each_verdict_has_its_colour_class(report):
    page = report.html.read_text()
    cells = _matrix(page)
    marks = {mark for mark, _ in cells}
    assert marks == {"stealthmark", "badnets", "wanet"}
    assert {a for _, a in cells} == {"worst case", "none", "prune", "fine-prune", "ftal", "jpeg", "gauss-noise"}
    for key, (cls, label) in EXPECTED.items():
        assert cells[key][:2] == (cls, label), key
    # The cheapest removal is shown with its Dice cost and strength.
    assert "0.020 @ 5" in cells[("stealthmark", "ftal")][2]
    assert "by ftal @ 5, cost 0.020" in cells[("stealthmark", "worst case")][2]
    assert "0.720 @ 0.9" in cells[("stealthmark", "prune")][2]  # the cheapest strength that broke it
    style = page.split("<style>", 1)[1].split("</style>", 1)[0]
    colours = {cls: re.search(rf"\.{cls}\{{background:([^;}}]+)", style).group(1)
               for cls in ("v-removed", "v-survived", "v-destroyed", "v-never-verified")}
    assert len(set(colours.values())) == 4 and "repeating-linear-gradient" in colours["v-never-verified"]
    md = report.markdown.read_text()
    assert "| stealthmark | 🔴 removed (by ftal @ 5, cost 0.020) | 🟢 verified |" in md


def test_several_seeds_are_counted(tmp_path):
    # Four seeds of one mark under ftal: seeds 0 and 1 removed, seed 2 survived, seed 3 destroyed.
    for seed in range(4):
        after, dice = {2: (1.0, 0.75), 3: (0.0, 0.10)}.get(seed, (0.0, 0.75))
        _write_records(tmp_path, [
            ("stealthmark", "watermark", "patch", "none", "none", 0.0, 1.0, 0.77, 1.0, 1.0, 0.9),
            ("stealthmark", "watermark", "patch", "ftal", "fine-tuning", 5.0, 0.5, dice, 1.0, after, 0.2),
        ], seed=seed)
    paths = write_report(tmp_path, gallery=False, log=lambda msg: None)
    cells = _matrix(paths.html.read_text())
    cls, label, text = cells[("stealthmark", "ftal")]
    # The headline is the thief's best seed; the counts follow the thief's order.
    assert (cls, label) == ("v-removed", "removed") and "removed 2/4 · destroyed 1/4 · survived 1/4" in text
    assert "verified 4/4" in cells[("stealthmark", "none")][2]
    assert "removed 2/4 · not removed 2/4" in cells[("stealthmark", "worst case")][2]


def test_one_table_row_per_leaderboard_row(report, fake_results):
    table = rows(fake_results)
    body = _leaderboard_html(report.html.read_text())
    assert body.split("<tbody>", 1)[1].count("<tr") == len(table) == len(CELLS)
    assert len(re.findall(r"<th\b", body)) == len(table[0]) + 1  # + the derived verdict column
    md = report.markdown.read_text().split("## Leaderboard", 1)[1].split("\n## ", 1)[0]
    md_rows = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(md_rows) == 1 + len(table)  # header + one per cell
    # stealthmark ftal at 5 and 20 and badnets gauss-noise: removed within the budget.
    assert body.count('<tr class="removed">') == 3


def test_undeclared_plugin_column_is_shown_and_escaped(tmp_path):
    _write_records(tmp_path)
    write_leaderboard(tmp_path)
    path = tmp_path / LEADERBOARD_FILE
    with open(path, newline="") as handle:
        table = list(csv.DictReader(handle))
    columns = [c for c in table[0] if c != "removed"] + ["plugin_score", "plugin_note"]  # no stored verdicts
    for i, row in enumerate(table):
        row.update(plugin_score=str(0.5 + i), plugin_note="<b>x</b>")
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(table)
    paths = write_report(tmp_path, gallery=False, log=lambda msg: None)
    page = paths.html.read_text()
    body = _leaderboard_html(page)
    header = re.search(r'<th class="([^"]*)" title="([^"]*)">plugin_score</th>', body)
    assert header and "undeclared" in header.group(1) and "Not a declared leaderboard column" in header.group(2)
    assert '<td data-v="13.5">13.5</td>' in body  # numeric, so it sorts as a number
    assert "&lt;b&gt;x&lt;/b&gt;" in body and "<b>x</b>" not in page  # autoescaped
    assert "| plugin_score | plugin_note |" in paths.markdown.read_text()
    assert _matrix(page)[("stealthmark", "ftal")][0] == "v-removed"  # derived, not read from a removed column


def test_strength_plot_caption_says_asr_alone_is_no_evidence(report):
    page = report.html.read_text()
    assert "ASR = 1 with FPR = 1" in page and "null threshold" in page
    assert "<h2>Verification evidence against attack strength</h2>" in page


def test_sort_script_present(report):
    page = report.html.read_text()
    assert 'class="sortable"' in page
    assert "addEventListener('click'" in page and "aria-sort" in page and "Number(v)" in page


def test_gallery_without_cache_says_so(report):
    page, text = report.html.read_text(), report.markdown.read_text()
    assert '<p class="note"><strong>Note:</strong> Gallery unavailable' in page
    # Every mark is missing from the cache (not, say, an import error caught as "unavailable").
    assert "> **Note:** Gallery unavailable for 3 of 3 marks: their models or keys are not in" in text
    assert text.count("no cached watermarked model") == 3


def test_gallery_pictures_a_mark_once_whatever_innocents_calibrate_it(tmp_path):
    """Same-data innocents join only the calibration: the mark's rows with and without them are one
    watermarked model, so one gallery entry; a fingerprint embeds nothing and gets none."""
    from harness.report.gallery import gallery_figures

    mark = {"watermark": "stealthmark", "trigger": "patch", "model": "basic-unet", "dataset": "synthetic-polyp",
            "preset": "tiny", "seed": 0, "run_id": "absent", "explainer": "lime"}
    table = [{**mark, "nulls": NULLS}, {**mark, "nulls": f"{NULLS} + 5 same-data"},
             {**mark, "watermark": "prob-distance", "trigger": "none", "role": "fingerprint", "nulls": NULLS}]
    figures, notes = gallery_figures(tmp_path, table, n_samples=10, log=lambda msg: None)
    assert figures == [] and len(notes) == 1, notes
    assert notes[0].startswith("Gallery unavailable for 1 of 1 marks") and "not understood" not in notes[0], notes
    assert notes[0].count("no cached watermarked model") == 1


def test_gallery_disabled_says_so(fake_results, tmp_path):
    paths = write_report(fake_results, out_dir=tmp_path / "out", gallery=False, log=lambda msg: None)
    assert "Gallery unavailable: not rendered" in paths.html.read_text()
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", paths.markdown.read_text()):
        assert _png_ok((paths.markdown.parent / link).read_bytes()), link


def test_output_is_deterministic(report, fake_results, monkeypatch):
    first = {p: p.read_bytes() for p in [report.html, report.markdown, *report.figures]}
    again = write_report(fake_results, gallery=True, log=lambda msg: None)
    assert again.figures == report.figures

    def strip(data: bytes) -> list[str]:
        return [line for line in data.decode().splitlines() if GENERATED_PREFIX not in line]

    for path, data in first.items():
        if path.suffix == ".png":
            assert path.read_bytes() == data, path
        else:
            assert strip(path.read_bytes()) == strip(data), path
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    assert "1970-01-01" in write_report(fake_results, gallery=False, log=lambda msg: None).markdown.read_text()


def test_scatter_rings_the_removed_cells():
    table = load_table_rows()
    fig, ax = plot_cost_scatter(table, dice_budget=0.07)
    vertical = [line for line in ax.get_lines() if list(line.get_xdata()) == [0.07, 0.07]]
    assert len(vertical) == 1
    labels = ax.get_legend_handles_labels()[1]
    assert "Dice budget 0.07" in labels and "stealthmark" in labels and "badnets" in labels
    assert "removed (3 cells)" in labels
    ring = next(c for c in ax.collections if c.get_gid() == "removed")
    # stealthmark ftal 5 and 20, badnets gauss-noise (ASR 1, not verified): (Dice cost, ASR after)
    assert sorted(map(tuple, np.round(ring.get_offsets(), 6))) == [(0.01, 1.0), (0.02, 0.5), (0.03, 0.0)]
    shapes = {c.get_gid() for c in ax.collections if c.get_gid()}
    assert {"wanet:never verified", "stealthmark:destroyed", "badnets:survived", "badnets:removed"} <= shapes
    fig.clf()


def test_strength_curves_plot_score_against_the_null_threshold():
    table = [r for r in load_table_rows() if r["watermark"] == "stealthmark"]
    fig, pairs = plot_strength_curves(table, "stealthmark")
    assert [ax.get_title() for ax, _ in pairs] == ["fine-tuning", "pruning"]  # "none" is no family to plot
    for score_ax, dice_ax in pairs:
        assert dice_ax.get_shared_x_axes().joined(score_ax, dice_ax)  # twinx
        assert "Dice" in dice_ax.get_ylabel() and "score" in score_ax.get_ylabel()
        threshold = [line for line in score_ax.get_lines() if line.get_label() == "null threshold"]
        assert len(threshold) == 1 and list(threshold[0].get_ydata()) == [THRESHOLD, THRESHOLD]
    pruning = pairs[1][0].get_lines()
    by_label = {line.get_label(): line for line in pruning}
    assert list(by_label["prune"].get_ydata()) == [0.85, 0.5, 0.05]
    assert by_label["prune"].get_linestyle() == "-"
    assert by_label["fine-prune"].get_linestyle() == "None"  # a single strength: a marker, no line
    by_gid = {line.get_gid(): line for line in pruning if line.get_gid()}
    assert list(by_gid["verified:prune"].get_xdata()) == [0.1, 0.5]
    assert list(by_gid["unverified:prune"].get_xdata()) == [0.9]
    assert by_gid["unverified:prune"].get_markerfacecolor() == "white"  # hollow: not verified
    assert by_gid["verified:prune"].get_markerfacecolor() != "white"
    dice_lines = [line for line in pairs[1][1].get_lines() if len(line.get_xdata()) == 3]
    assert [list(line.get_ydata()) for line in dice_lines] == [[0.76, 0.60, 0.05]]
    fig.clf()


def load_table_rows():
    """Leaderboard rows as the report reads them, from a fresh fake results dir."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        _write_records(Path(tmp))
        return load_table(tmp, log=lambda msg: None)


def test_missing_leaderboard_is_rebuilt(tmp_path):
    _write_records(tmp_path)
    messages = []
    write_report(tmp_path, gallery=False, log=messages.append)
    assert (tmp_path / LEADERBOARD_FILE).is_file()
    assert any("rebuilt" in m for m in messages)


@pytest.mark.parametrize("make", ["missing", "empty", "no-records"])
def test_no_records_is_a_one_line_error(tmp_path, make):
    results = tmp_path / "results"
    if make != "missing":
        results.mkdir()
    if make == "no-records":
        (results / "runs").mkdir()
    with pytest.raises(HarnessError, match="no run records under .*runs; run `harness run` first") as info:
        write_report(results, log=lambda msg: None)
    assert "\n" not in str(info.value)
    assert not (results / "report").exists()


def _browser():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import check_report
    finally:
        sys.path.pop(0)
    return check_report, check_report.find_browser()


def _browser_or_skip():
    """The check script and a browser. CI installs Chromium (.ci/run), so there a missing browser is a
    failure, not a skip; elsewhere the two browser tests are skipped with the reason."""
    check_report, browser = _browser()
    if browser is None:
        message = "no chromium/chromium-browser/google-chrome binary on PATH (apt-get install -y chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser tests: {message}")
        pytest.skip(message)
    return check_report, browser


def test_page_renders_in_headless_chromium(report, tmp_path):
    check_report, browser = _browser_or_skip()
    shot = tmp_path / "shot.png"
    assert check_report.main([str(report.html), "--screenshot", str(shot)]) == 0
    assert _png_ok(shot.read_bytes())
    # The check does catch a picture that does not decode.
    broken = tmp_path / "broken.html"
    broken.write_text(report.html.read_text().replace("<h2>Summary</h2>", '<img src="missing.png"><h2>Summary</h2>'))
    assert check_report.broken_images(browser, broken)[0] == 1


# Clicks the "strength" header twice (descending) after load and records the column's order.
_CLICK = """<script>window.addEventListener('load', function () {
  var heads = Array.prototype.slice.call(document.querySelectorAll('#leaderboard th'));
  var col = heads.findIndex(function (h) { return h.textContent === 'strength'; });
  heads[col].click(); heads[col].click();
  var rows = Array.prototype.slice.call(document.querySelectorAll('#leaderboard tbody tr'));
  document.body.setAttribute('data-sorted', rows.map(function (r) { return r.cells[col].textContent; }).join(';'));
  document.body.setAttribute('data-sort-state', heads[col].getAttribute('aria-sort'));
});</script></body>"""


def test_header_click_sorts_numerically_in_chromium(report, tmp_path):
    check_report, browser = _browser_or_skip()
    page = tmp_path / "click.html"
    page.write_text(report.html.read_text().replace("</body>", _CLICK))
    dom = check_report.dump_dom(browser, page)
    assert check_report.body_attribute(dom, "data-sort-state") == "descending"
    order = [float(v) for v in check_report.body_attribute(dom, "data-sorted").split(";")]
    assert order == sorted((c[5] for c in CELLS), reverse=True)  # 20 before 5: numbers, not strings


def test_check_script_without_report_fails_cleanly(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_report.py"), str(tmp_path / "none.html")],
                          check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no report" in done.stderr
