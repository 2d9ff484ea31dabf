"""``harness report``: pages and figures from a small fake results dir (no models, no training)."""

from __future__ import annotations

import base64
import io
import re
import os
import subprocess
import sys
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
NULLS = "5x basic-unet,unet @ 0.05"
# (watermark, role, attack, family, strength, asr_after, dice_attacked, verified_after)
CELLS = [
    ("stealthmark", "watermark", "none", "none", 0.0, 1.0, 0.77, 1.0),
    ("stealthmark", "watermark", "prune", "pruning", 0.1, 1.0, 0.76, 1.0),
    ("stealthmark", "watermark", "prune", "pruning", 0.5, 0.6, 0.60, 1.0),
    ("stealthmark", "watermark", "prune", "pruning", 0.9, 0.0, 0.05, 0.0),
    ("stealthmark", "watermark", "fine-prune", "pruning", 0.3, 1.0, 0.74, 1.0),
    ("stealthmark", "watermark", "ftal", "fine-tuning", 5.0, 0.5, 0.75, 0.0),
    ("stealthmark", "watermark", "ftal", "fine-tuning", 20.0, 0.0, 0.74, 0.0),
    ("badnets", "baseline", "none", "none", 0.0, 1.0, 0.58, 1.0),
    ("badnets", "baseline", "prune", "pruning", 0.3, 1.0, 0.57, 1.0),
    ("badnets", "baseline", "prune", "pruning", 0.7, 0.0, 0.10, 0.0),
    ("badnets", "baseline", "jpeg", "input-transform", 20.0, 1.0, 0.40, 1.0),
]
DICE_MARKED = {"stealthmark": 0.77, "badnets": 0.58}


def _write_records(results: Path) -> None:
    for i, (wm, role, attack, family, strength, asr, dice, verified) in enumerate(CELLS):
        trigger = "patch"
        spec = {"watermark": wm, "role": role, "trigger": trigger, "model": "basic-unet",
                "dataset": "synthetic-polyp", "preset": "tiny", "attack": attack, "attack_family": family,
                "strength": strength, "seed": 0, "explainer": "lime", "nulls": NULLS}
        drop = DICE_MARKED[wm] - dice
        metrics = {"dice_clean": 0.78, "dice_watermarked": DICE_MARKED[wm], "dice_attacked": dice,
                   "attack_dice_drop": drop, "asr_before": 1.0, "fpr_before": 0.0, "verified_before": 1.0,
                   "asr_after": asr, "fpr_after": 0.0, "verified_after": verified, "p_value_after": 0.5,
                   "qr_decoded_after": None if role == "baseline" else verified,
                   "removed": float(not verified and drop <= 0.05)}
        RunRecord(f"{i:016x}", spec, metrics, versions={}, command="test").write(results)


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


def test_html_and_markdown_written(report, fake_results):
    assert report.html == fake_results / "report" / HTML_FILE and report.html.is_file()
    assert report.markdown == fake_results / "report" / MARKDOWN_FILE and report.markdown.is_file()
    assert report.figures and all(p.is_file() and p.parent == fake_results / "report" / "figures"
                                  for p in report.figures)


def test_every_html_image_decodes_and_page_is_self_contained(report):
    page = report.html.read_text()
    sources = re.findall(r'<img\b[^>]*\bsrc="([^"]+)"', page)
    # 2 strength figures (one per watermark), the scatter, the existing artifact_guard.png
    assert len(sources) == len(re.findall(r"<img\b", page)) == 4
    for src in sources:
        assert src.startswith("data:image/png;base64,"), src[:40]
        assert _png_ok(base64.b64decode(src.split(",", 1)[1]))
    assert "http://" not in page and "https://" not in page  # no CDN, works offline
    assert "<style>" in page and "<script>" in page


def test_every_markdown_link_is_a_readable_png(report):
    text = report.markdown.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(links) == 4
    for link in links:
        assert not link.startswith(("/", "http", "data:")), link
        assert _png_ok((report.markdown.parent / link).read_bytes()), link
    assert "../figures/artifact_guard.png" in links


def test_one_table_row_per_leaderboard_row(report, fake_results):
    table = rows(fake_results)
    page = report.html.read_text()
    body = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    assert body.count("<tr") == len(table) == len(CELLS)
    assert len(re.findall(r"<th\b", page)) == len(table[0])
    md_rows = [line for line in report.markdown.read_text().splitlines() if line.startswith("| ")]
    assert len(md_rows) == 1 + len(table)  # header + one per cell
    removed = [r for r in table if r["removed"] == 1.0]
    assert body.count('<tr class="removed">') == len(removed) > 0


def test_sort_script_present(report):
    page = report.html.read_text()
    assert 'class="sortable"' in page
    assert "addEventListener('click'" in page and "aria-sort" in page and "Number(v)" in page


def test_gallery_without_cache_says_so(report):
    page, text = report.html.read_text(), report.markdown.read_text()
    assert '<p class="note"><strong>Note:</strong> Gallery unavailable' in page
    assert "> **Note:** Gallery unavailable" in text
    assert "not in" in text and "cache" in text


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


def test_scatter_draws_the_budget_line():
    table = load_table_rows()
    fig, ax = plot_cost_scatter(table, dice_budget=0.07)
    vertical = [line for line in ax.get_lines() if list(line.get_xdata()) == [0.07, 0.07]]
    assert len(vertical) == 1
    labels = ax.get_legend_handles_labels()[1]
    assert "Dice budget 0.07" in labels and "stealthmark" in labels and "badnets" in labels
    assert any(label.startswith("removed (") for label in labels)
    fig.clf()


def test_strength_curves_one_panel_per_family_with_dice_twin():
    table = [r for r in load_table_rows() if r["watermark"] == "stealthmark"]
    fig, pairs = plot_strength_curves(table, "stealthmark")
    assert [ax.get_title() for ax, _ in pairs] == ["fine-tuning", "pruning"]  # "none" is no family to plot
    for asr_ax, dice_ax in pairs:
        assert dice_ax.get_shared_x_axes().joined(asr_ax, dice_ax)  # twinx
        assert "Dice" in dice_ax.get_ylabel() and "ASR" in asr_ax.get_ylabel()
    pruning_asr = {line.get_label(): line for line in pairs[1][0].get_lines()}
    assert list(pruning_asr["prune"].get_ydata()) == [1.0, 0.6, 0.0]
    assert pruning_asr["prune"].get_linestyle() == "-"
    assert pruning_asr["fine-prune"].get_linestyle() == "None"  # a single strength: a marker, no line
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
    assert order == sorted((c[4] for c in CELLS), reverse=True)  # 20 before 5: numbers, not strings


def test_check_script_without_report_fails_cleanly(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_report.py"), str(tmp_path / "none.html")],
                          check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no report" in done.stderr
