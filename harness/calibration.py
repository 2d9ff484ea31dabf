"""Calibrating a verification against a population of clean ("null") models.

A suspect that treats triggered queries differently from benign ones is not
yet proven a copy: a trigger may move any model's output a little (a yellow
patch raises every model's background uncertainty nearby). The owner therefore
scores the same key on K independently trained clean models and asks how
unusual the suspect is among them. These functions are the pure core; the
owner's key stores the calibration so ``harness verify`` needs no nulls.

Scores, one per suspect and key:

* the per-answer score of a scheme (StealthMark: the detector's logit; a
  destructive backdoor: the share of target pixels the answer follows);
* the model's **separation score**: the mean per-answer score on the M
  triggered queries minus the mean on the M benign ones, in the scheme's own
  units. It measures how much the trigger moves the answers, not merely
  whether it moves them at all: a clean model that paints a visible patch into
  its mask moves a few pixels on every triggered query, which a rank statistic
  such as the AUROC would score as a perfect separation.

The decision threshold is a one-sided Gaussian prediction bound over the K null
separation scores (Student t with K-1 degrees of freedom): a new clean model
exceeds it with probability ``level`` if null scores are roughly normal. With
K = 10 an empirical quantile could not resolve 5% at all, which is why the
bound is parametric; the held-out-null test checks it empirically. The spread
used is never below the null models' own sampling error (the standard error of
a difference of two means of M answers): K nearly identical null scores do not
make a new null's score predictable to better than that.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

DEFAULT_LEVEL = 0.05  # false-accusation level of the calibrated decision
ANSWER_FPR = 0.01  # per-answer false-positive rate for tpr_at_1fpr
MIN_NULL_SD = 1e-9  # last-resort floor: K identical, noiseless null scores would give a zero-width bound
CALIBRATION_FORMAT = "null-calibration/2"


def separation_score(triggered: np.ndarray, benign: np.ndarray) -> float:
    """Mean per-answer score on triggered queries minus the mean on benign ones.

    >>> separation_score(np.array([1.0, 1.0]), np.array([0.0, 0.5]))
    0.75
    """
    return float(np.mean(np.asarray(triggered, float)) - np.mean(np.asarray(benign, float)))


def sampling_error(triggered: np.ndarray, benign: np.ndarray) -> float:
    """Standard error of ``separation_score`` from the spread of the answers themselves.

    >>> round(sampling_error(np.array([0.0, 1.0]), np.array([0.0, 1.0])), 3)
    0.707
    """
    triggered, benign = np.asarray(triggered, float), np.asarray(benign, float)
    return float(np.sqrt(triggered.var(ddof=1) / len(triggered) + benign.var(ddof=1) / len(benign)))


def wilson_interval(hits: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion ``hits / n``: honest at 0 and 1, unlike the normal one.

    >>> low, high = wilson_interval(60, 60)
    >>> round(low, 3), high
    (0.94, 1.0)
    >>> wilson_interval(0, 60)[0]
    0.0
    """
    if n <= 0:
        return (0.0, 1.0)
    z = stats.norm.ppf(0.5 + confidence / 2)
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # At 0 or n hits the bound is exactly 0 or 1; rounding would leave 1e-16 of it.
    low = 0.0 if hits == 0 else max(0.0, centre - half)
    high = 1.0 if hits == n else min(1.0, centre + half)
    return (float(low), float(high))


def calibration_from_null_scores(scores: list[float], triggered_answers: np.ndarray, members: list[str],
                                 level: float = DEFAULT_LEVEL, sampling_errors: list[float] | None = None) -> dict:
    """The plain-JSON calibration stored in a key, from each null model's separation score (and
    its sampling error), and the pooled per-answer scores of every null model on the triggered queries.

    >>> cal = calibration_from_null_scores([0.0, 0.02, -0.02, 0.05, -0.05], np.linspace(0, 1, 101),
    ...                                    ["a", "b", "c", "d", "e"])
    >>> round(cal["threshold"], 3), cal["answer_cut"]
    (0.089, 0.99)
    """
    if len(scores) < 2:
        raise ValueError("a null population needs at least 2 models to estimate its spread")
    if not 0 < level < 0.5:
        raise ValueError(f"calibration level must be in (0, 0.5), got {level}")
    values = np.asarray(scores, float)
    k = len(values)
    noise = float(np.mean(sampling_errors)) if sampling_errors else 0.0
    mean, sd = float(values.mean()), max(float(values.std(ddof=1)), noise, MIN_NULL_SD)
    spread = sd * math.sqrt(1 + 1 / k)
    return {
        "format": CALIBRATION_FORMAT, "members": list(members), "null_scores": values.tolist(),
        "null_sampling_error": noise, "level": level, "mean": mean, "sd": sd,
        "threshold": mean + float(stats.t.ppf(1 - level, k - 1)) * spread,
        # "higher" keeps the cut on an observed null answer, so at most 1% of null answers lie above it.
        "answer_cut": float(np.quantile(np.asarray(triggered_answers, float), 1 - ANSWER_FPR, method="higher")),
    }


def null_p_value(score: float, calibration: dict) -> float:
    """P(a new clean model scores >= ``score``) under the Gaussian prediction model of the nulls.

    >>> cal = calibration_from_null_scores([0.0, 0.02, -0.02, 0.05, -0.05], np.zeros(10), list("abcde"))
    >>> null_p_value(0.0, cal) > 0.4, null_p_value(0.5, cal) < 1e-3
    (True, True)
    """
    k = len(calibration["null_scores"])
    spread = calibration["sd"] * math.sqrt(1 + 1 / k)
    return float(stats.t.sf((score - calibration["mean"]) / spread, k - 1))


def tpr_at_answer_cut(triggered_answers: np.ndarray, calibration: dict) -> float:
    """Share of the suspect's triggered answers above the cut that flags 1% of null models' answers."""
    return float((np.asarray(triggered_answers, float) > calibration["answer_cut"]).mean())
