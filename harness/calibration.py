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

The verdict rule (``decide``), for a suspect of architecture A with score s,
judged against K null models of architecture A (after an attack: K nulls under
the same attack, strength and seed rule):

1. **Paired test.** The M triggered and the M benign queries are the same M
   images, so the unit is the image: an exact one-sided sign test on the
   per-image differences (triggered score minus benign score) asks whether
   the trigger moves this model's answers up more often than down
   (``paired_p_value`` < alpha). It assumes nothing about the differences'
   distribution (a Wilcoxon test would assume symmetry, and its ties force a
   normal approximation). It replaces an unpaired Fisher test on flagged answers, which
   treated the 2M answers as independent and depended on a per-answer cut
   fixed on the unattacked model.
2. **Calibrated test.** Is s unusual among the K null scores? The empirical
   p-value ``(1 + #{null >= s}) / (K + 1)`` is valid whatever the null
   scores' distribution: an innocent model exchangeable with the K nulls
   gets p <= level with probability at most level. With K >= 19 it can reach
   0.05, and the test is ``p_empirical <= level``: a suspect beyond every one
   of 19 nulls. With fewer nulls (the five attacked nulls of a training
   attack, small test populations) the empirical p-value cannot reach the
   level, and the test falls back on a one-sided Gaussian prediction bound
   (Student t with K-1 degrees of freedom; its spread never below the
   nulls' own sampling error) *and* beyond every null. That fallback is
   parametric: its p-value is labelled so wherever it is shown, and the key
   records a Shapiro-Wilk test of the null scores' normality. Measured at
   `tiny` (0.5, seed 0-2): normality was rejected (p < 0.05) for 5 of 6 null
   populations, and with K = 10 the parametric rule accused 1 of the 10
   nulls when each was judged against the other nine; that is why the
   default population is 19 models and the decision empirical. Either way,
   ``harness certify`` measures the rule's false-accusation rate on held-out
   innocent models (a Clopper-Pearson upper bound over distinct models,
   never over answers).

Verified means both tests pass. Where they disagree the record says which
one passed (``paired_verified_*``, ``calibrated_verified_*``), so no
disagreement is hidden inside a single verdict.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

DEFAULT_LEVEL = 0.05  # false-accusation level of the calibrated decision
ANSWER_FPR = 0.01  # per-answer false-positive rate for tpr_at_1fpr
MIN_NULL_SD = 1e-9  # last-resort floor: K identical, noiseless null scores would give a zero-width bound
CALIBRATION_FORMAT = "null-calibration/4"  # 4: a calibration per verifier; 3: empirical p-values, paired test


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
        "normality_p": normality_p_value(values),
        "null_sampling_error": noise, "level": level, "mean": mean, "sd": sd,
        "threshold": mean + float(stats.t.ppf(1 - level, k - 1)) * spread,
        # "higher" keeps the cut on an observed null answer, so at most 1% of null answers lie above it.
        "answer_cut": float(np.quantile(np.asarray(triggered_answers, float), 1 - ANSWER_FPR, method="higher")),
    }


def parametric_p_value(score: float, calibration: dict) -> float:
    """P(a new clean model scores >= ``score``) under the Gaussian prediction model of the nulls.

    Parametric: it can be far smaller than 1/(K+1), which K nulls alone could never show.

    >>> cal = calibration_from_null_scores([0.0, 0.02, -0.02, 0.05, -0.05], np.zeros(10), list("abcde"))
    >>> parametric_p_value(0.0, cal) > 0.4, parametric_p_value(0.5, cal) < 1e-3
    (True, True)
    """
    k = len(calibration["null_scores"])
    spread = calibration["sd"] * math.sqrt(1 + 1 / k)
    return float(stats.t.sf((score - calibration["mean"]) / spread, k - 1))


def tpr_at_answer_cut(triggered_answers: np.ndarray, calibration: dict) -> float:
    """Share of the suspect's triggered answers above the cut that flags 1% of null models' answers."""
    return float((np.asarray(triggered_answers, float) > calibration["answer_cut"]).mean())


def empirical_p_value(score: float, null_scores) -> float:
    """``(1 + #{null scores >= score}) / (K + 1)``: what K nulls alone support, never below 1/(K+1).

    >>> empirical_p_value(5.0, [0.0, 1.0, 2.0, 3.0])
    0.2
    >>> empirical_p_value(1.5, [0.0, 1.0, 2.0, 3.0])
    0.6
    """
    values = np.asarray(null_scores, float)
    return float((1 + np.sum(values >= score)) / (len(values) + 1))


def normality_p_value(null_scores) -> float | None:
    """Shapiro-Wilk p-value of the null scores (None below 3 scores, or when they are all equal):
    a small value says the parametric bound's Gaussian assumption is doubtful for this population.

    >>> normality_p_value([1.0, 2.0]) is None
    True
    >>> normality_p_value(np.random.default_rng(0).normal(size=30)) > 0.05
    True
    """
    values = np.asarray(null_scores, float)
    if len(values) < 3 or np.ptp(values) == 0:
        return None
    return float(stats.shapiro(values).pvalue)


def paired_p_value(triggered: np.ndarray, benign: np.ndarray) -> float:
    """Exact one-sided sign test that an image's triggered score exceeds its benign score.

    The i-th triggered and benign queries are the same image, so the per-image differences are the
    independent units. Zero differences carry no evidence and are dropped; with none left, 1.0.

    >>> paired_p_value(np.array([1.0, 1.0, 1.0]), np.array([1.0, 1.0, 1.0]))
    1.0
    >>> paired_p_value(np.ones(20), np.zeros(20)) == 0.5 ** 20
    True
    """
    differences = np.asarray(triggered, float) - np.asarray(benign, float)
    moved = int(np.sum(differences != 0))
    if moved == 0:
        return 1.0
    return float(stats.binomtest(int(np.sum(differences > 0)), moved, 0.5, alternative="greater").pvalue)


def empirical_suffices(k: int, level: float) -> bool:
    """Can K nulls alone carry a decision at ``level``, i.e. is 1/(K+1) <= level?

    >>> empirical_suffices(19, 0.05), empirical_suffices(18, 0.05), empirical_suffices(5, 0.05)
    (True, False, False)
    """
    return 1 / (k + 1) <= level + 1e-12


def decide(paired_p: float, alpha: float, score: float, calibration: dict) -> dict:
    """The verdict rule of the module docstring: both tests, and each one's outcome.

    With 5 nulls the calibrated test is the parametric fallback (1/6 > 0.05):

    >>> cal = calibration_from_null_scores([0.0, 0.02, -0.02, 0.05, -0.05], np.zeros(10), list("abcde"))
    >>> d = decide(1e-6, 0.01, 0.5, cal)
    >>> d["verified"], d["p_value_empirical"], d["basis"]
    (True, 0.16666666666666666, 'parametric')
    >>> decide(0.2, 0.01, 0.5, cal)["calibrated_verified"], decide(0.2, 0.01, 0.5, cal)["verified"]
    (True, False)

    With 19 the empirical p-value decides, whatever the shape of the null scores:

    >>> cal = calibration_from_null_scores(list(np.linspace(0, 1, 19)), np.zeros(10), [str(i) for i in range(19)])
    >>> decide(1e-6, 0.01, 1.01, cal)["basis"], decide(1e-6, 0.01, 1.01, cal)["verified"]
    ('empirical', True)
    >>> decide(1e-6, 0.01, 0.99, cal)["verified"]  # beyond 18 of the 19: p = 2/20
    False
    """
    p_param = parametric_p_value(score, calibration)
    p_emp = empirical_p_value(score, calibration["null_scores"])
    beyond = bool(score > max(calibration["null_scores"]))
    level = calibration["level"]
    if empirical_suffices(len(calibration["null_scores"]), level):
        basis, calibrated = "empirical", bool(p_emp <= level)
    else:
        basis, calibrated = "parametric", bool(beyond and p_param < level)
    paired = bool(paired_p < alpha)
    return {"p_value_parametric": p_param, "p_value_empirical": p_emp, "beyond_all_nulls": beyond, "basis": basis,
            "calibrated_verified": calibrated, "paired_verified": paired, "verified": calibrated and paired}


def leave_one_out_verdicts(scores: list[float], paired_ps: list[float], alpha: float, pooled: np.ndarray,
                           level: float = DEFAULT_LEVEL, sampling_errors: list[float] | None = None) -> list[bool]:
    """Would each null model be verified against a calibration made of the *other* nulls? The share
    that would is a false-accusation check that no model grades itself in.

    >>> leave_one_out_verdicts([0.0, 0.1, -0.1, 0.05, 9.0], [0.5, 0.5, 0.5, 0.5, 1e-9], 0.01, np.zeros(5))
    [False, False, False, False, True]
    """
    out = []
    for i in range(len(scores)):
        others = [s for j, s in enumerate(scores) if j != i]
        errors = None if sampling_errors is None else [e for j, e in enumerate(sampling_errors) if j != i]
        cal = calibration_from_null_scores(others, pooled, [str(j) for j in range(len(others))], level, errors)
        out.append(decide(paired_ps[i], alpha, scores[i], cal)["verified"])
    return out


def clopper_pearson_upper(accused: int, n: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper bound on a rate seen as ``accused`` of ``n`` independent units.

    With none of n accused it is 1 - (1 - confidence)^(1/n): 59 models are the fewest that bound a
    false-accusation rate below 5%.

    >>> round(clopper_pearson_upper(0, 59), 4), round(clopper_pearson_upper(0, 6), 3)
    (0.0495, 0.393)
    >>> clopper_pearson_upper(3, 3)
    1.0
    """
    if n <= 0:
        return 1.0
    if accused >= n:
        return 1.0
    return float(stats.beta.ppf(confidence, accused + 1, n - accused))


def format_null_p(p_empirical: float | None, p_parametric: float | None, k: int) -> str:
    """A calibrated p-value for people: never a number below 1/(K+1), which K nulls cannot show.

    >>> format_null_p(1 / 11, 6.2e-13, 10)
    'beyond all 10 nulls (parametric 6.2e-13)'
    >>> format_null_p(0.4545, 0.31, 10)
    '0.45'
    >>> format_null_p(None, None, 0)
    '-'
    """
    if p_empirical is None or k <= 0:
        return "-"
    if p_empirical <= 1 / (k + 1) + 1e-12:
        return f"beyond all {k} nulls (parametric {p_parametric:.2g})"
    return f"{p_empirical:.2g}"
