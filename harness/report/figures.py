"""The report's matplotlib figures: verification evidence against attack strength, and Dice cost against ASR.

Every figure is returned as a matplotlib figure (tests inspect its axes) and turned into PNG bytes by
``png``, without version-stamped metadata, so equal data give equal bytes.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np

from harness.errors import HarnessError
from harness.report.data import family, is_attack
from harness.verdicts import DESTROYED, NEVER_VERIFIED, REMOVED, SURVIVED, cell_verdict


@dataclass
class Figure:
    """One picture of the report: its file under report/figures, a title and a caption."""

    name: str  # file name, e.g. "strength-stealthmark.png"
    title: str
    caption: str
    png: bytes
    section: str  # "strength" | "cost" | "gallery"


def pyplot():
    import matplotlib  # here, not at the top: only the figures need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(fig) -> bytes:
    """PNG bytes of ``fig`` without the version-stamped metadata, so equal figures give equal bytes."""
    plt = pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def _num(value) -> float:
    """A value to plot: a missing metric is a gap in the line, not a zero."""
    return float(value) if isinstance(value, (int, float)) else np.nan


STRENGTH_CAPTION = (
    "{label}: one panel per attack family. Left axis: the verifier's separation score on the attacked model "
    "(score_after, solid lines), filled markers where the mark was verified after the attack, hollow where it was "
    "not; the red dashed line is the unattacked nulls' threshold (the score a clean model exceeds with probability "
    "equal to the null level), and each attack's thin dash-dotted line is the threshold of the nulls under that same "
    "attack, which the verdict after the attack is judged against; dotted: the score before the attack. Right axis: Dice of the attacked model (thin dashed). "
    "ASR alone is not evidence: a model that flags every query has ASR = 1 with FPR = 1 and is a removed mark, "
    "which is why the score against the null threshold is drawn, not ASR.")


def plot_strength_curves(rows: list[dict], title: str):
    """Separation score after the attack (solid, left axis) against attack strength, with the null threshold
    (red dashed) and Dice of the attacked model (thin dashed, right axis): one panel per attack family,
    one colour per attack. Filled markers: verified after the attack; hollow: not verified.

    Each attack's verified and unverified markers are separate lines with gid ``verified:<attack>`` and
    ``unverified:<attack>``. Returns (fig, [(score_ax, dice_ax), ...]).
    """
    plt = pyplot()
    from matplotlib.lines import Line2D

    attacked = [r for r in rows if is_attack(r)]
    families = sorted({family(r) for r in attacked})
    if not families:
        raise HarnessError(f"{title}: no attacked cells to plot")
    ncols = min(3, len(families))
    nrows = math.ceil(len(families) / ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(5.4 * ncols, 4.6 * nrows), squeeze=False)
    thresholds = sorted({r["null_threshold"] for r in rows if isinstance(r.get("null_threshold"), float)})
    before = [r["score_before"] for r in rows if isinstance(r.get("score_before"), float)]
    colours = plt.get_cmap("tab10")
    markers = "osD^vP*Xh<>"
    pairs = []
    for index, fam in enumerate(families):
        ax = grid[index // ncols][index % ncols]
        dice_ax = ax.twinx()
        pairs.append((ax, dice_ax))
        cells = [r for r in attacked if family(r) == fam]
        attacks = sorted({r["attack"] for r in cells})
        strengths = sorted({r["strength"] for r in cells})
        positive = [s for s in strengths if s > 0]
        if len(positive) == len(strengths) and len(positive) > 1 and max(positive) / min(positive) > 20:
            ax.set_xscale("log")  # attacks of one family in very different units (e.g. JPEG quality vs blur sigma)
        handles = []
        for k, attack in enumerate(attacks):
            mine = sorted((r for r in cells if r["attack"] == attack), key=lambda r: r["strength"])
            xs = [r["strength"] for r in mine]
            score = [_num(r.get("score_after")) for r in mine]
            colour, marker = colours(k % 10), markers[k % len(markers)]
            ax.plot(xs, score, linestyle="-" if len(mine) > 1 else "none", color=colour, label=attack)
            # The legend shows line and marker even for an attack tried at one strength (drawn as a marker only).
            handles.append(Line2D([], [], color=colour, marker=marker, markersize=5, label=attack))
            for verified in (True, False):
                pts = [(x, y) for x, y, r in zip(xs, score, mine) if bool(r.get("verified_after")) == verified]
                if pts:
                    ax.plot(*zip(*pts), linestyle="none", marker=marker, markersize=7, color=colour,
                            markerfacecolor=colour if verified else "white", markeredgewidth=1.5,
                            gid=f"{'verified' if verified else 'unverified'}:{attack}")
            attacked_bound = [_num(r.get("null_threshold_after")) for r in mine]
            if any(np.isfinite(attacked_bound)):
                ax.plot(xs, attacked_bound, linestyle="-." if len(mine) > 1 else "none", marker="_", color=colour,
                        linewidth=0.8, alpha=0.8, gid=f"threshold:{attack}")
            dice = [_num(r.get("dice_attacked")) for r in mine]
            dice_ax.plot(xs, dice, linestyle="--" if len(mine) > 1 else "none", marker="_", color=colour,
                         alpha=0.6, linewidth=1, markersize=8)
        for threshold in thresholds:
            ax.axhline(threshold, color="tab:red", linestyle="--", linewidth=1.2,
                       label="null threshold" if threshold == thresholds[0] else None)
        if before:
            ax.axhline(float(np.mean(before)), color="0.4", linestyle=":", linewidth=1, label="score before attack")
        dice_ax.set_ylim(-0.05, 1.05)
        ax.set_title(fam, fontsize=10)
        ax.set_xlabel("attack strength (the attack's own unit)", fontsize=8)
        ax.set_ylabel("separation score after attack (solid)", fontsize=8)
        dice_ax.set_ylabel("Dice attacked (thin dashed)", fontsize=8)
        ax.tick_params(labelsize=8)
        dice_ax.tick_params(labelsize=8)
        handles += [line for line in ax.get_lines() if line.get_label() in ("null threshold", "score before attack")]
        ax.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2),
                  ncol=min(4, len(attacks) + 2), frameon=False)
    for index in range(len(families), nrows * ncols):
        grid[index // ncols][index % ncols].axis("off")
    # Two lines: a one-panel figure is too narrow for the title and the key on one.
    fig.suptitle(f"{title}: separation score against attack strength\n"
                 f"(filled: verified, hollow: not verified; red dashed: null threshold)", fontsize=9)
    fig.tight_layout()
    return fig, pairs


# Marker per verdict on the cost scatter; removed cells also get a red ring.
VERDICT_MARKERS = {SURVIVED: "o", DESTROYED: "X", REMOVED: "X", NEVER_VERIFIED: "v"}

COST_CAPTION = (
    "Every attacked cell: the Dice the attack cost against the ASR left after it, coloured by watermark, shaped by "
    "verdict (circle survived, cross not verified after the attack, triangle never verified). Left of the dashed "
    "line (budget {budget:g}) the attack stayed within the removal budget; cells ringed in red are removed: not "
    "verified after the attack within the budget. An ASR near 1 is no proof of survival: with FPR = 1 the "
    "verifier flags everything and the mark is removed.")


def plot_cost_scatter(table: list[dict], dice_budget: float):
    """Every attacked cell: Dice cost (x) against ASR after the attack (y), one colour per watermark and one
    marker per verdict (``harness.verdicts.cell_verdict`` at ``dice_budget``).

    The budget is a vertical line; cells left of it share a shaded band, and removed cells are ringed in
    red. Returns (fig, ax).
    """
    plt = pyplot()
    cells = [r for r in table if is_attack(r) and isinstance(r.get("attack_dice_drop"), float)
             and isinstance(r.get("asr_after"), float)]
    if not cells:
        raise HarnessError("no attacked cell has both attack_dice_drop and asr_after to plot")
    fig, ax = plt.subplots(figsize=(9, 5.5))
    xs = [r["attack_dice_drop"] for r in cells]
    low, high = min(min(xs), 0.0), max(max(xs), dice_budget)
    pad = 0.04 * (high - low or 1.0)
    ax.set_xlim(low - pad, high + pad)
    ax.axvspan(low - pad, dice_budget, color="tab:red", alpha=0.07, linewidth=0)
    ax.axvline(dice_budget, color="tab:red", linestyle="--", linewidth=1.2, label=f"Dice budget {dice_budget:g}")
    colours = plt.get_cmap("tab10")
    verdicts = [cell_verdict(r, dice_budget) for r in cells]
    for k, watermark in enumerate(sorted({r["watermark"] for r in cells})):
        for v, marker in VERDICT_MARKERS.items():
            mine = [r for r, rv in zip(cells, verdicts) if r["watermark"] == watermark and rv == v]
            if mine:
                ax.scatter([r["attack_dice_drop"] for r in mine], [r["asr_after"] for r in mine], s=32, alpha=0.8,
                           color=colours(k % 10), marker=marker, edgecolors="none", gid=f"{watermark}:{v}")
        ax.scatter([], [], s=32, color=colours(k % 10), marker="s", label=watermark)  # one legend entry per colour
    removed = [r for r, v in zip(cells, verdicts) if v == REMOVED]
    if removed:
        ax.scatter([r["attack_dice_drop"] for r in removed], [r["asr_after"] for r in removed], s=120,
                   facecolors="none", edgecolors="tab:red", linewidths=1.5, gid="removed",
                   label=f"removed ({len(removed)} cells)")
    for v, marker in VERDICT_MARKERS.items():
        if v != REMOVED:  # removed shares the cross with destroyed; its ring has its own entry
            ax.scatter([], [], s=32, color="0.35", marker=marker,
                       label="not verified after" if v == DESTROYED else v)
    ax.annotate(f"removed region: Dice cost <= {dice_budget:g}\nand not verified after the attack",
                xy=((low - pad + dice_budget) / 2, 0.5), xytext=(dice_budget + 0.12 * (high - low + 2 * pad), 0.55),
                fontsize=9, color="tab:red", va="center",
                arrowprops={"arrowstyle": "->", "color": "tab:red", "linewidth": 1})
    ax.set_ylim(-0.05, 1.08)
    ax.set_xlabel("Dice cost of the attack (dice_watermarked - dice_attacked)")
    ax.set_ylabel("ASR after attack")
    ax.set_title(f"Dice cost against ASR after attack, all {len(cells)} attacked cells")
    ax.legend(fontsize=8, loc="center right", framealpha=0.9)
    fig.tight_layout()
    return fig, ax


def plot_gallery(title: str, panels, null_name: str):
    """Rows of (watermarked, null) pictures, drawn as ``artifact_guard.save_figure`` draws them. Returns fig."""
    from harness.artifact_guard import draw_pairs

    pyplot()
    fig = draw_pairs(panels, null_name)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
