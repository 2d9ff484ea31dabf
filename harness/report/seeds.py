"""Each mark's before-attack figures over seeds: the mean, a 95% interval, and the bars judged on the mean.

One seed's Dice cost moves by several hundredths between runs that differ only in float rounding, so
a bar (harm <= 0.01, ...) judged on one seed is an anecdote. The leaderboard keeps one row per seed;
this table is what the report and the README quote. A seed is one independently trained set of
models (clean, watermarked, nulls), so seeds are the independent units.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from harness.calibration import wilson_interval

# (metric, bar): the bars for the method under test; None: shown without a bar.
METRICS = (
    ("harm_dice_drop", ("<=", 0.01)),
    ("flip_rate", ("<=", 0.002)),
    ("asr_before", (">=", 0.95)),
    ("fpr_before", ("<=", 0.05)),
    ("score_before", None),
    ("verified_before", None),
    ("null_verified", None),
    # With innocents trained on the owner's own images (--same-data-innocents): the hard negative.
    ("verified_before_with_same_data", None),
    ("same_data_verified", None),
    ("innocents_verified_with_same_data", None),
)
BINARY = {"verified_before", "verified_before_with_same_data"}  # a share of seeds: Wilson, not a t interval
# A mark judged against another population (e.g. with same-data innocents) is another row.
MARK = ("watermark", "role", "trigger", "model", "dataset", "preset", "explainer", "nulls")


def mean_interval(values: list[float], binary: bool = False) -> tuple[float, float, float]:
    """(mean, low, high): a Student-t 95% interval of the mean over seeds, or Wilson for a 0/1 share.

    >>> [round(v, 3) for v in mean_interval([0.028, -0.043, -0.027])]
    [-0.014, -0.107, 0.079]
    >>> [round(v, 3) for v in mean_interval([1.0, 1.0, 1.0], binary=True)]
    [1.0, 0.439, 1.0]
    """
    values = [float(v) for v in values]
    mean = float(np.mean(values))
    if binary:
        low, high = wilson_interval(int(round(sum(values))), len(values))
        return mean, low, high
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / math.sqrt(len(values)))
    return mean, mean - half, mean + half


def over_seeds(table: list[dict]) -> list[dict]:
    """One row per (mark, metric) for marks with at least two seeds: n, mean, interval, bar on the mean."""
    marks: dict[tuple, dict] = {}
    for row in table:
        # Every cell of a mark and seed carries the same before-attack figures: take one per seed.
        marks.setdefault(tuple(row.get(k) for k in MARK), {}).setdefault(row.get("seed"), row)
    out = []
    for mark, by_seed in marks.items():
        if len(by_seed) < 2:
            continue
        for metric, bar in METRICS:
            values = [r[metric] for r in by_seed.values() if isinstance(r.get(metric), (int, float))]
            if len(values) < 2:
                continue
            mean, low, high = mean_interval(values, binary=metric in BINARY)
            met = None
            if bar is not None and dict(zip(MARK, mark))["role"] == "watermark":
                met = mean <= bar[1] if bar[0] == "<=" else mean >= bar[1]
            out.append({**dict(zip(MARK, mark)), "metric": metric, "seeds": len(values), "mean": mean,
                        "low": low, "high": high, "values": values,
                        "bar": "" if bar is None else f"{bar[0]} {bar[1]:g}",
                        "bar_met": "" if met is None else ("yes" if met else "no")})
    return out
