"""``harness report``: the leaderboard as one self-contained HTML page and a Markdown file.

``write_report`` reads ``results/leaderboard.csv`` (rebuilding it from the run
records when it is missing) and writes ``results/report/``:

- ``report.html``: one file that works offline. CSS and the table-sorting
  script are inline, every figure is a ``data:`` URI.
- ``report.md``: the same sections, the table as a GitHub table, figures as
  relative links into ``report/figures/``.
- ``figures/*.png``: ASR and Dice against attack strength per watermark, the
  Dice cost / ASR scatter with the removal budget, and a gallery of QR
  certificates and attribution maps (watermarked model next to a null model).

The gallery needs the cached models and keys (``results/cache``). It never
trains anything: when an artifact is missing the report says so in a visible
note instead of showing a broken picture.

Output is deterministic: the only line that changes between two runs on the
same results is the generation date (``SOURCE_DATE_EPOCH`` fixes it).
"""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import html
import io
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.cache import atomic_write_bytes
from harness.errors import HarnessError
from harness.leaderboard import COLUMN_NAMES, COLUMNS, LEADERBOARD_FILE, write_leaderboard
from harness.records import RUNS_DIR

REPORT_DIR = "report"
FIGURES_DIR = "figures"
HTML_FILE = "report.html"
MARKDOWN_FILE = "report.md"
GENERATED_PREFIX = "Generated on "  # the one line that may differ between two runs
TEXT_COLUMNS = frozenset({"watermark", "role", "trigger", "model", "dataset", "preset", "attack", "attack_family",
                          "explainer", "nulls", "run_id"})
MARK_FIELDS = ("watermark", "trigger", "model", "dataset", "preset", "seed", "explainer")
NO_ATTACK = "none"


@dataclass(frozen=True)
class ReportPaths:
    html: Path
    markdown: Path
    figures: list[Path] = field(default_factory=list)


@dataclass
class Figure:
    """One picture of the report: its file under report/figures, a title and a caption."""

    name: str  # file name, e.g. "strength-stealthmark.png"
    title: str
    caption: str
    png: bytes
    section: str  # "strength" | "cost" | "gallery"


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
    """The leaderboard rows (numbers as floats, empty cells as None); rebuilt from the records if the CSV is missing."""
    results = Path(results_dir)
    runs = results / RUNS_DIR
    if not results.is_dir() or not runs.is_dir() or not any(runs.glob("*.json")):
        raise HarnessError(f"no run records under {runs}; run `harness run` first")
    path = results / LEADERBOARD_FILE
    if not path.is_file():
        path, count = write_leaderboard(results)
        log(f"leaderboard rebuilt from the records: {path} ({count} rows)")
    with open(path, newline="") as handle:
        table = [{name: _parse(name, row.get(name) or "") for name in COLUMN_NAMES} for row in csv.DictReader(handle)]
    if not table:
        raise HarnessError(f"no finished cells in {path} (records under {runs} all failed?); run `harness run` first")
    return table


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if value == int(value) and abs(value) < 1e9:
            return str(int(value))
        return f"{value:.4g}"
    return str(value)


# ----------------------------------------------------------------------------- figures


def _pyplot():
    import matplotlib  # here, not at the top: only the figures need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    """PNG bytes of ``fig`` without the version-stamped metadata, so equal figures give equal bytes."""
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def _mark(row: dict) -> tuple:
    return tuple(row[f] for f in MARK_FIELDS)


def _family(row: dict) -> str:
    return row.get("attack_family") or row["attack"]


def _mark_label(mark: tuple, marks: list[tuple]) -> str:
    """The watermark's name, plus whichever mark fields tell it apart from the other marks of that watermark."""
    same = [m for m in marks if m[0] == mark[0]]
    extra = [f"{name} {_fmt(value)}" for i, (name, value) in enumerate(zip(MARK_FIELDS, mark))
             if i > 0 and len({m[i] for m in same}) > 1]
    return mark[0] + (f" ({', '.join(extra)})" if extra else "")


def attacked_marks(table: list[dict]) -> dict[tuple, list[dict]]:
    """Marks (watermark, trigger, model, dataset, preset, seed, explainer) with at least one real attack."""
    marks: dict[tuple, list[dict]] = {}
    for row in table:
        marks.setdefault(_mark(row), []).append(row)
    return {m: rows for m, rows in marks.items() if any(r["attack"] != NO_ATTACK for r in rows)}


def plot_strength_curves(rows: list[dict], title: str):
    """ASR after the attack (solid, left axis) and Dice of the attacked model (dashed, right axis)
    against attack strength: one panel per attack family, one colour per attack.

    An attack tried at a single strength is drawn as markers only. Returns (fig, [(asr_ax, dice_ax), ...]).
    """
    plt = _pyplot()
    attacked = [r for r in rows if r["attack"] != NO_ATTACK]
    families = sorted({_family(r) for r in attacked})
    if not families:
        raise HarnessError(f"{title}: no attacked cells to plot")
    ncols = min(3, len(families))
    nrows = math.ceil(len(families) / ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(5.4 * ncols, 4.6 * nrows), squeeze=False)
    before = [r["asr_before"] for r in rows if r["asr_before"] is not None]
    dice_marked = [r["dice_watermarked"] for r in rows if r["dice_watermarked"] is not None]
    colours = plt.get_cmap("tab10")
    markers = "osD^vP*Xh<>"
    pairs = []
    for index, family in enumerate(families):
        ax = grid[index // ncols][index % ncols]
        dice_ax = ax.twinx()
        pairs.append((ax, dice_ax))
        cells = [r for r in attacked if _family(r) == family]
        attacks = sorted({r["attack"] for r in cells})
        strengths = sorted({r["strength"] for r in cells})
        positive = [s for s in strengths if s > 0]
        if len(positive) == len(strengths) and len(positive) > 1 and max(positive) / min(positive) > 20:
            ax.set_xscale("log")  # attacks of one family in very different units (e.g. JPEG quality vs blur sigma)
        for k, attack in enumerate(attacks):
            points = sorted((r["strength"], r["asr_after"], r["dice_attacked"]) for r in cells if r["attack"] == attack)
            xs = [p[0] for p in points]
            asr = [np.nan if p[1] is None else p[1] for p in points]
            dice = [np.nan if p[2] is None else p[2] for p in points]
            colour, marker = colours(k % 10), markers[k % len(markers)]
            style = "-" if len(points) > 1 else "none"
            ax.plot(xs, asr, linestyle=style, marker=marker, color=colour, label=attack, markersize=6)
            dice_ax.plot(xs, dice, linestyle="--" if len(points) > 1 else "none", marker=marker, color=colour,
                         markerfacecolor="none", alpha=0.8, markersize=6)
        if before:
            ax.axhline(float(np.mean(before)), color="0.4", linestyle=":", linewidth=1, label="ASR before attack")
        if dice_marked:
            dice_ax.axhline(float(np.mean(dice_marked)), color="0.6", linestyle="-.", linewidth=1)
        ax.set_ylim(-0.05, 1.05)
        dice_ax.set_ylim(-0.05, 1.05)
        ax.set_title(family, fontsize=10)
        ax.set_xlabel("attack strength (the attack's own unit)", fontsize=8)
        ax.set_ylabel("ASR after attack (solid, filled)", fontsize=8)
        dice_ax.set_ylabel("Dice attacked (dashed, hollow)", fontsize=8)
        ax.tick_params(labelsize=8)
        dice_ax.tick_params(labelsize=8)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=min(4, len(attacks) + 1),
                  frameon=False)
    for index in range(len(families), nrows * ncols):
        grid[index // ncols][index % ncols].axis("off")
    fig.suptitle(f"{title}: ASR and Dice against attack strength "
                 f"(dotted: ASR before attack; dash-dot: Dice of the watermarked model)", fontsize=10)
    fig.tight_layout()
    return fig, pairs


def plot_cost_scatter(table: list[dict], dice_budget: float):
    """Every cell: Dice cost of the attack (x) against ASR after it (y), one colour per watermark.

    The budget is a vertical line; cells left of it share a shaded band, and the cells that count as
    removed (not verified after the attack, Dice cost <= budget) are ringed in red. Returns (fig, ax).
    """
    plt = _pyplot()
    cells = [r for r in table if r["attack_dice_drop"] is not None and r["asr_after"] is not None]
    if not cells:
        raise HarnessError("no cell has both attack_dice_drop and asr_after to plot")
    fig, ax = plt.subplots(figsize=(9, 5.5))
    xs = [r["attack_dice_drop"] for r in cells]
    low, high = min(min(xs), 0.0), max(max(xs), dice_budget)
    pad = 0.04 * (high - low or 1.0)
    ax.set_xlim(low - pad, high + pad)
    ax.axvspan(low - pad, dice_budget, color="tab:red", alpha=0.07, linewidth=0)
    ax.axvline(dice_budget, color="tab:red", linestyle="--", linewidth=1.2, label=f"Dice budget {dice_budget:g}")
    colours = plt.get_cmap("tab10")
    for k, watermark in enumerate(sorted({r["watermark"] for r in cells})):
        mine = [r for r in cells if r["watermark"] == watermark]
        ax.scatter([r["attack_dice_drop"] for r in mine], [r["asr_after"] for r in mine], s=28, alpha=0.75,
                   color=colours(k % 10), label=watermark, edgecolors="none")
    removed = [r for r in cells if _removed(r, dice_budget)]
    if removed:
        ax.scatter([r["attack_dice_drop"] for r in removed], [r["asr_after"] for r in removed], s=110,
                   facecolors="none", edgecolors="tab:red", linewidths=1.5,
                   label=f"removed ({len(removed)} cells)")
    ax.annotate(f"removed region: Dice cost <= {dice_budget:g}\nand not verified after the attack",
                xy=((low - pad + dice_budget) / 2, 0.5), xytext=(dice_budget + 0.12 * (high - low + 2 * pad), 0.55),
                fontsize=9, color="tab:red", va="center",
                arrowprops={"arrowstyle": "->", "color": "tab:red", "linewidth": 1})
    ax.set_ylim(-0.05, 1.08)
    ax.set_xlabel("Dice cost of the attack (dice_watermarked - dice_attacked)")
    ax.set_ylabel("ASR after attack")
    ax.set_title(f"Dice cost against ASR after attack, all {len(cells)} cells")
    ax.legend(fontsize=8, loc="center right", framealpha=0.9)
    fig.tight_layout()
    return fig, ax


def _removed(row: dict, dice_budget: float) -> bool:
    """Removed under ``dice_budget``: not verified after the attack and a Dice cost within the budget."""
    return row["verified_after"] == 0.0 and row["attack_dice_drop"] is not None \
        and row["attack_dice_drop"] <= dice_budget


# ----------------------------------------------------------------------------- gallery


class _NotCached(Exception):
    """An artifact the gallery needs is not in the cache (the report never trains)."""


def _read_only_cache(root: Path):
    from harness.cache import ArtifactCache
    from harness.watermark import Key

    class ReadOnlyCache(ArtifactCache):
        def model(self, kind, spec, model, train):
            data, manifest = self._paths(kind, spec)
            if not self._intact(data, manifest):
                raise _NotCached(f"no cached {kind} model")
            return super().model(kind, spec, model, train)

        def key(self, spec, build):
            data, manifest = self._paths("keys", spec)
            if not self._intact(data.with_suffix(".npz"), manifest):
                raise _NotCached("no cached key")
            return Key.load(data.with_suffix(".npz"))

    return ReadOnlyCache(root)


def _parse_nulls(label: str):
    """'5x basic-unet,unet @ 0.05' -> (5, ('basic-unet', 'unet'), 0.05)."""
    match = re.fullmatch(r"\s*(\d+)x (\S+) @ (\S+)\s*", label or "")
    if not match:
        raise _NotCached(f"null population label {label!r} not understood")
    return int(match[1]), tuple(match[2].split(",")), float(match[3])


def _gallery_panels(results: Path, row: dict, n_samples: int) -> tuple[list[tuple[str, np.ndarray, np.ndarray]], str]:
    """(title, picture on the watermarked model, picture on a null model) for one mark, from the cache only."""
    from harness.artifact_guard import DEFAULT_MASK, explain
    from harness.feature_masks import make_feature_mask
    from harness.nulls import members, population_spec, same_architecture, train_null
    from harness.presets import get_preset
    from harness.registry import find_watermark
    from harness.runner import embedded_model_and_key
    from harness.watermark import trigger_from_spec

    cache = _read_only_cache(results / "cache")
    seed = int(row["seed"])
    preset = get_preset(row["preset"])
    seeds, models, level = _parse_nulls(row["nulls"])
    spec = population_spec(row["preset"], seeds, models)
    chosen = members(spec, seed)
    names = {member.name: None for member in chosen}  # the key's spec needs the names only
    null_name = same_architecture(names, row["model"])
    wm = find_watermark(row["watermark"])(trigger=row["trigger"])
    # splits=None: only a training run would use them, and the read-only cache never trains.
    marked, key = embedded_model_and_key(cache, wm, row["model"], row["dataset"], preset, seed, None, names, level)
    null = train_null(cache, next(m for m in chosen if m.name == null_name), row["dataset"], preset)
    panels = []
    explainer = key.meta.get("explainer") or row["explainer"]
    if hasattr(wm, "reveal_certificate"):
        pictures = []
        for suspect in (marked, null):
            fired = wm.verify(suspect, key, certify=False).verified
            weights = wm.reveal_certificate(suspect, key, fired=fired, explainer=explainer, seed=seed)
            pictures.append((np.asarray(weights) != 0).astype(float))
        panels.append((f"QR certificate ({explainer}, gated)", *pictures))
    image = trigger_from_spec(key.meta["watermark"]["trigger"]).apply(key.queries().images[:1])[0]
    feature_mask = make_feature_mask(DEFAULT_MASK, image.permute(1, 2, 0).numpy())
    maps = [explain(m, image, "lime", feature_mask, n_samples=n_samples, seed=seed)[feature_mask]
            for m in (marked, null)]
    panels.append((f"lime attribution, {DEFAULT_MASK}, ungated", *maps))
    return panels, null_name


def plot_gallery(title: str, panels, null_name: str):
    """Rows of (watermarked, null) pictures, drawn as ``artifact_guard.save_figure`` draws them. Returns fig."""
    from harness.artifact_guard import draw_pairs

    _pyplot()
    fig = draw_pairs(panels, null_name)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def gallery_figures(results: Path, table: list[dict], n_samples: int, log=print) -> tuple[list[Figure], list[str]]:
    """One gallery figure per mark whose models and key are cached; notes for the marks that are not."""
    figures, notes = [], []
    seen = {}
    for row in table:
        mark = (row["watermark"], row["trigger"], row["model"], row["dataset"], row["preset"], row["seed"],
                row["nulls"])
        seen.setdefault(mark, row)
    if not seen:
        return figures, ["No marks in the leaderboard."]
    missing = []
    for mark, row in seen.items():
        label = f"{row['watermark']} ({row['trigger']} trigger, {row['model']}, {row['dataset']}, {row['preset']}, " \
                f"seed {_fmt(row['seed'])})"
        try:
            panels, null_name = _gallery_panels(results, row, n_samples)
        except _NotCached as exc:
            missing.append(f"{label}: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001 - one mark's picture must not sink the whole report
            notes.append(f"Gallery unavailable for {label}: {type(exc).__name__}: {exc}")
            continue
        slug = re.sub(r"[^a-z0-9]+", "-", f"{row['watermark']}-{row['trigger']}-{row['model']}-{row['dataset']}-"
                                           f"{row['preset']}-seed{_fmt(row['seed'])}".lower()).strip("-")
        figures.append(Figure(f"gallery-{slug}.png", f"Gallery: {label}",
                              f"{label}: certificate and attribution map on the watermarked model (left) and on "
                              f"null model {null_name} (right).",
                              _png(plot_gallery(label, panels, null_name)), "gallery"))
        log(f"gallery: {label}")
    if missing:
        notes.append(f"Gallery unavailable for {len(missing)} of {len(seen)} marks: their models or keys are not in "
                     f"{results / 'cache'} (the report never trains; `harness run` or `harness guard` fills the "
                     f"cache). " + "; ".join(missing))
    return figures, notes


# ----------------------------------------------------------------------------- pages


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5em;color:#222;max-width:1600px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
.note{background:#fff4e5;border-left:4px solid #e69500;padding:.6em 1em;margin:.8em 0}
.table-wrap{overflow:auto;max-height:70vh;border:1px solid #ccc}
table{border-collapse:collapse;font-size:12px;white-space:nowrap}
th,td{border:1px solid #ddd;padding:2px 6px;text-align:right}
td.text,th.text{text-align:left}
th{background:#f0f0f0;position:sticky;top:0;cursor:pointer;user-select:none}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
tr:nth-child(even) td{background:#fafafa}
tr.removed td{background:#fde8e8}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.9em;color:#555}
"""

# Click a header to sort by it (numbers as numbers, empty cells last); click again to reverse.
# After load, <body data-broken-images="N"> counts pictures that failed to decode (scripts/check_report.py).
_JS = """
(function(){
  function key(td){var v=td.getAttribute('data-v');if(v===null)v=td.textContent;
    if(v==='')return null;var n=Number(v);return isNaN(n)?v.toLowerCase():n;}
  function cmp(a,b){if(a===null&&b===null)return 0;if(a===null)return 1;if(b===null)return -1;
    if(typeof a===typeof b)return a<b?-1:a>b?1:0;return typeof a==='number'?-1:1;}
  document.querySelectorAll('table.sortable').forEach(function(table){
    var heads=table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads,function(th,col){
      th.addEventListener('click',function(){
        var dir=th.getAttribute('aria-sort')==='ascending'?-1:1;
        Array.prototype.forEach.call(heads,function(h){h.removeAttribute('aria-sort');});
        th.setAttribute('aria-sort',dir===1?'ascending':'descending');
        var body=table.tBodies[0],rows=Array.prototype.slice.call(body.rows);
        rows.sort(function(r,s){var c=cmp(key(r.cells[col]),key(s.cells[col]));
          return c===0?r.rowIndex-s.rowIndex:dir*c;});
        rows.forEach(function(r){body.appendChild(r);});
      });
    });
  });
  window.addEventListener('load',function(){
    var broken=0;document.querySelectorAll('img').forEach(function(img){
      if(!img.complete||img.naturalWidth===0)broken++;});
    document.body.setAttribute('data-broken-images',String(broken));
  });
})();
"""


def _generated_day() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    day = _dt.datetime.fromtimestamp(int(epoch), _dt.timezone.utc).date() if epoch else _dt.date.today()
    return day.isoformat()


def _summary(table: list[dict], dice_budget: float) -> list[str]:
    models = {_mark(r)[:-1] for r in table}  # without the explainer
    removed = [r for r in table if _removed(r, dice_budget)]
    lines = [(f"{len(table)} cells, {len({r['watermark'] for r in table})} watermarks and baselines, {len(models)} "
             f"watermarked models, {len({r['attack'] for r in table} - {NO_ATTACK})} attacks."),
             (f"Removal budget: a Dice cost of at most {dice_budget:g}. {len(removed)} cells removed the mark "
             f"(not verified after the attack within the budget).")]
    for r in removed:
        lines.append(f"removed: {r['watermark']} ({r['trigger']}) by {r['attack']} at strength {_fmt(r['strength'])}"
                     f", Dice cost {_fmt(r['attack_dice_drop'])}, ASR after {_fmt(r['asr_after'])}")
    return lines


def _md_cell(value) -> str:
    return _fmt(value).replace("|", "\\|")


def render_markdown(table, figures: list[Figure], notes: list[str], summary: list[str], existing: list[Path],
                    dice_budget: float) -> str:
    out = ["# Benchmark report", "", f"{GENERATED_PREFIX}{_generated_day()} by `harness report`.", ""]
    out += ["## Summary", ""] + [f"- {line}" for line in summary] + [""]
    out += ["## Leaderboard", "",
            (f"One row per cell ({len(table)} rows), as in `{LEADERBOARD_FILE}` (numbers rounded to 4 significant "
            f"digits here; column definitions in `README.md`). The HTML report sorts by any column."), ""]
    out.append("| " + " | ".join(COLUMN_NAMES) + " |")
    out.append("|" + "|".join("---" if n in TEXT_COLUMNS else "---:" for n in COLUMN_NAMES) + "|")
    out += ["| " + " | ".join(_md_cell(row[n]) for n in COLUMN_NAMES) + " |" for row in table]
    out.append("")
    for section, heading in _SECTIONS:
        out += [f"## {heading}", ""]
        mine = [f for f in figures if f.section == section]
        if section == "cost":
            out += [_COST_TEXT.format(budget=dice_budget), ""]
        for fig in mine:
            out += [f"### {fig.title}", "", f"![{fig.title}]({FIGURES_DIR}/{fig.name})", "", fig.caption, ""]
        if section == "gallery":
            for note in notes:
                out += [f"> **Note:** {note}", ""]
            for path in existing:
                out += [f"### {path.name}", "", f"![{path.name}](../{FIGURES_DIR}/{path.name})", "",
                        f"`{FIGURES_DIR}/{path.name}`, written by `harness guard`.", ""]
        elif not mine:
            out += ["> **Note:** nothing to plot: no attacked cells.", ""]
    return "\n".join(out).rstrip("\n") + "\n"


_SECTIONS = (("strength", "ASR and Dice against attack strength"), ("cost", "Dice cost against ASR after attack"),
             ("gallery", "Gallery: QR certificates and attribution maps, watermarked vs null models"))
_COST_TEXT = ("Every cell: the Dice the attack cost against the ASR left after it. Left of the dashed line "
              "(budget {budget:g}) the attack stayed within the removal budget; cells ringed in red are removed: "
              "the mark was not verified after the attack.")


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def render_html(table, figures: list[Figure], notes: list[str], summary: list[str], existing: list[Path],
                dice_budget: float) -> str:
    esc = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           "<title>Benchmark report</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
           "<h1>Benchmark report</h1>",
           f'<p class="generated">{GENERATED_PREFIX}{_generated_day()} by <code>harness report</code>.</p>',
           "<h2>Summary</h2>", "<ul>"] + [f"<li>{esc(line)}</li>" for line in summary] + ["</ul>"]
    out += ["<h2>Leaderboard</h2>",
            (f"<p>One row per cell ({len(table)} rows), as in <code>{LEADERBOARD_FILE}</code>. Click a column header "
            f"to sort by it, again to reverse. Hover a header for its definition; rows that removed the mark are "
            f"red.</p>"), '<div class="table-wrap"><table class="sortable" id="leaderboard">', "<thead><tr>"]
    for name, direction, text in COLUMNS:
        cls = ' class="text"' if name in TEXT_COLUMNS else ""
        out.append(f'<th{cls} title="{esc(f"better: {direction}. {text}")}">{esc(name)}</th>')
    out += ["</tr></thead>", "<tbody>"]
    for row in table:
        cls = ' class="removed"' if _removed(row, dice_budget) else ""
        cells = []
        for name in COLUMN_NAMES:
            value = row[name]
            if name in TEXT_COLUMNS or not isinstance(value, float):
                cells.append(f'<td class="text">{esc(_fmt(value))}</td>')
            else:
                cells.append(f'<td data-v="{value!r}">{esc(_fmt(value))}</td>')
        out.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    out += ["</tbody></table></div>"]
    for section, heading in _SECTIONS:
        out.append(f"<h2>{esc(heading)}</h2>")
        mine = [f for f in figures if f.section == section]
        if section == "cost":
            out.append(f"<p>{esc(_COST_TEXT.format(budget=dice_budget))}</p>")
        for fig in mine:
            out += [f"<figure><img src=\"{_data_uri(fig.png)}\" alt=\"{esc(fig.title)}\">",
                    f"<figcaption>{esc(fig.caption)}</figcaption></figure>"]
        if section == "gallery":
            out += [f'<p class="note"><strong>Note:</strong> {esc(note)}</p>' for note in notes]
            for path in existing:
                out += [f"<figure><img src=\"{_data_uri(path.read_bytes())}\" alt=\"{esc(path.name)}\">",
                        (f"<figcaption><code>{FIGURES_DIR}/{esc(path.name)}</code>, written by "
                        f"<code>harness guard</code>.</figcaption></figure>")]
        elif not mine:
            out.append('<p class="note"><strong>Note:</strong> nothing to plot: no attacked cells.</p>')
    out += [f"<script>{_JS}</script>", "</body>", "</html>"]
    return "\n".join(out) + "\n"


def _readable_png(path: Path) -> bool:
    try:
        from PIL import Image

        with Image.open(path) as image:
            image.verify()
        return True
    except Exception:  # noqa: BLE001 - any failure means "do not show it"
        return False


def write_report(results_dir: str | Path = "results", out_dir: str | Path | None = None, dice_budget: float = 0.05,
                 gallery: bool = True, log=print, gallery_samples: int = 300) -> ReportPaths:
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
    figures: list[Figure] = []
    marks = attacked_marks(table)
    labels = list(marks)
    for mark, rows in marks.items():
        label = _mark_label(mark, labels)
        slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
        fig, _ = plot_strength_curves(rows, label)
        figures.append(Figure(f"strength-{slug}.png", f"{label}",
                              f"{label}: one panel per attack family; ASR after the attack (solid lines, filled "
                              f"markers, left axis) and Dice of the attacked model (dashed, hollow markers, right "
                              f"axis) against strength. Attacks tried at one strength are markers only.",
                              _png(fig), "strength"))
    fig, _ = plot_cost_scatter(table, dice_budget)
    figures.append(Figure("cost-vs-asr.png", "Dice cost against ASR after attack",
                          f"Dice cost against ASR after attack, coloured by watermark; dashed line: budget "
                          f"{dice_budget:g}; red rings: removed cells.", _png(fig), "cost"))
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
    summary = _summary(table, dice_budget)
    md = render_markdown(table, figures, notes, summary, existing, dice_budget)
    # The Markdown links figures relative to itself; existing figures via ../figures only when out is results/report.
    if out.resolve() != (results / REPORT_DIR).resolve():
        rel = os.path.relpath(results / FIGURES_DIR, out)
        md = md.replace(f"](../{FIGURES_DIR}/", f"]({Path(rel).as_posix()}/")
    page = render_html(table, figures, notes, summary, existing, dice_budget)
    md_path, html_path = out / MARKDOWN_FILE, out / HTML_FILE
    atomic_write_bytes(md_path, lambda h: h.write(md.encode()))
    atomic_write_bytes(html_path, lambda h: h.write(page.encode()))
    log(f"report: {html_path} and {md_path} ({len(table)} rows, {len(paths)} figures)")
    return ReportPaths(html_path, md_path, paths)
