"""Null-model calibration: the statistics (fast, exact or simulated) and how verdicts use them."""

import numpy as np
import pytest
import torch

from harness import calibration
from harness.registry import BASELINES
from harness.watermark import Key


def test_separation_score_is_a_difference_of_means_and_its_error_shrinks_with_queries():
    assert calibration.separation_score(np.array([1.0, 1.0]), np.array([1.0, 0.0])) == 0.5
    rng = np.random.default_rng(0)
    few = calibration.sampling_error(rng.normal(size=10), rng.normal(size=10))
    many = calibration.sampling_error(rng.normal(size=1000), rng.normal(size=1000))
    assert many < few / 5


@pytest.mark.parametrize("hits,n", [(0, 10), (3, 10), (10, 10), (57, 60)])
def test_wilson_interval_contains_the_estimate_and_matches_the_formula(hits, n):
    low, high = calibration.wilson_interval(hits, n)
    assert 0 <= low <= hits / n <= high <= 1
    # Reference value: the Wilson interval for 3/10 at 95% is (0.108, 0.603).
    if (hits, n) == (3, 10):
        assert (round(low, 3), round(high, 3)) == (0.108, 0.603)


def test_calibrated_threshold_falsely_accuses_about_level_of_new_nulls():
    """Simulated populations of normally distributed null scores: the prediction bound set on K = 10
    calibration nulls accuses a fresh null at the stated 5% (not the ~10-15% a plain z-bound on 10
    samples would give)."""
    rng = np.random.default_rng(0)
    accused = 0
    trials = 4000
    for _ in range(trials):
        scores = rng.normal(0.0, 0.05, size=11)
        cal = calibration.calibration_from_null_scores(scores[:10].tolist(), np.zeros(10), list("abcdefghij"))
        accused += calibration.parametric_p_value(scores[10], cal) < cal["level"]
        assert (scores[10] > cal["threshold"]) == (calibration.parametric_p_value(scores[10], cal) < cal["level"])
    assert abs(accused / trials - 0.05) < 0.012


def test_the_full_rule_accuses_a_fresh_null_at_most_at_the_level():
    """decide() adds 'beyond every null' to the parametric bound, so it can only accuse less."""
    rng = np.random.default_rng(1)
    trials, accused = 4000, 0
    for _ in range(trials):
        scores = rng.normal(0.0, 0.05, size=11)
        cal = calibration.calibration_from_null_scores(scores[:10].tolist(), np.zeros(10), list("abcdefghij"))
        accused += calibration.decide(0.0, 0.01, scores[10], cal)["verified"]
    assert accused / trials <= 0.05 + 0.01


def test_with_19_nulls_the_rule_holds_its_level_on_skewed_scores_where_the_gaussian_bound_does_not():
    """Null scores with a heavy right tail (lognormal), as the tiny nulls' scores are (Shapiro-Wilk rejects
    normality for most populations): the empirical rule accuses a fresh null at most 1/20 of the time, the
    Gaussian prediction bound on the same 19 scores far more often."""
    rng = np.random.default_rng(5)
    trials, empirical, gaussian = 4000, 0, 0
    for _ in range(trials):
        scores = rng.lognormal(0.0, 1.5, size=20)
        cal = calibration.calibration_from_null_scores(scores[:19].tolist(), np.zeros(1), [str(i) for i in range(19)])
        empirical += calibration.decide(0.0, 0.01, scores[19], cal)["calibrated_verified"]
        gaussian += calibration.parametric_p_value(scores[19], cal) < 0.05
    assert empirical / trials <= 1 / 20 + 0.01
    assert gaussian / trials > 0.05 + 0.01


def test_empirical_p_value_is_never_below_one_over_k_plus_one():
    nulls = np.random.default_rng(2).normal(size=10)
    assert calibration.empirical_p_value(1e9, nulls) == 1 / 11
    assert calibration.empirical_p_value(-1e9, nulls) == 1.0
    assert calibration.empirical_p_value(nulls.max(), nulls) == 2 / 11  # a tie counts against the suspect


@pytest.mark.parametrize("accused,n,expected", [(0, 59, 0.0495), (0, 6, 0.3930), (1, 20, 0.2161), (0, 1, 0.95)])
def test_clopper_pearson_upper_bound_matches_reference_values(accused, n, expected):
    # Reference: exact one-sided 95% bounds, 1 - 0.05**(1/n) at zero and Beta(0.95; 2, 19) = 0.2161.
    assert round(calibration.clopper_pearson_upper(accused, n), 4) == expected


def test_paired_test_uses_the_pairing():
    """Each image's triggered answer is one step above its benign one, while the images themselves vary
    far more: the paired test sees it, a comparison of the two samples' locations would not."""
    benign = np.random.default_rng(3).normal(0, 10, size=30)
    assert calibration.paired_p_value(benign + 1.0, benign) < 1e-6
    assert calibration.paired_p_value(benign, benign) == 1.0
    assert calibration.paired_p_value(benign - 1.0, benign) > 0.99


def test_leave_one_out_grades_no_model_against_itself():
    scores = [0.0, 0.01, -0.01, 0.02, 5.0]
    verdicts = calibration.leave_one_out_verdicts(scores, [1e-9] * 5, 0.01, np.zeros(1))
    # The outlier exceeds the other four; each ordinary one is judged with the outlier in its population.
    assert verdicts == [False, False, False, False, True]


def test_human_format_never_prints_below_one_over_k_plus_one():
    for k in (2, 5, 10, 59):
        text = calibration.format_null_p(1 / (k + 1), 1e-30, k)
        assert text.startswith(f"beyond all {k} nulls") and "parametric" in text
    assert calibration.format_null_p(3 / 11, 0.2, 10) == "0.27"


def test_normality_check_flags_a_skewed_population():
    assert calibration.normality_p_value(np.random.default_rng(4).exponential(size=40) ** 3) < 0.01


def test_identical_null_scores_cannot_make_the_bound_narrower_than_their_sampling_error():
    cal = calibration.calibration_from_null_scores([0.01] * 5, np.zeros(5), list("abcde"),
                                                   sampling_errors=[0.004] * 5)
    # sd is a computed mean of the errors: equal to 0.004 up to rounding, not necessarily bit for bit.
    assert cal["sd"] == pytest.approx(0.004, rel=1e-12) and cal["threshold"] > 0.01 + 2 * 0.004


def test_answer_cut_flags_at_most_one_percent_of_null_answers():
    answers = np.random.default_rng(1).normal(size=600)
    cal = calibration.calibration_from_null_scores([0.5, 0.6], answers, ["a", "b"])
    assert calibration.tpr_at_answer_cut(answers, cal) <= 0.01


def test_population_of_one_is_refused():
    with pytest.raises(ValueError, match="at least 2"):
        calibration.calibration_from_null_scores([0.5], np.zeros(3), ["a"])


class _Answers(torch.nn.Module):
    """A 'model' that answers every image with a fixed map: flip=True inverts masks of triggered images."""

    def __init__(self, masks_by_sum, invert_when_triggered):
        super().__init__()
        self.invert = invert_when_triggered

    def forward(self, images):
        triggered = images[:, 1, -4:, -4:].mean(dim=(1, 2)) > 0.99  # the yellow patch's green channel
        mask = (images[:, :1] > 0.5).float()
        out = torch.where(triggered[:, None, None, None] & self.invert, 1 - mask, mask)
        return (out * 20 - 10)


def _key_and_models():
    badnets = BASELINES.get("badnets")()
    images = torch.zeros(30, 3, 32, 32)
    images[:, 0, 8:20, 8:20] = 1.0  # the "lesion" lives in the red channel
    masks = images[:, :1].clone()
    key = Key({"watermark": badnets.spec(), "alpha": 0.01},
              {"query_images": (images * 255).to(torch.uint8).numpy(), "query_masks": masks.to(torch.uint8).numpy()})
    return badnets, key, _Answers(None, True), {f"null{i}": _Answers(None, False) for i in range(4)}


def test_a_key_without_null_calibration_never_verifies():
    badnets, key, marked, _ = _key_and_models()
    result = badnets.verify(marked, key)
    assert result.asr == 1.0 and result.p_value < 1e-6
    assert result.verified is False and result.p_value_null_empirical is None


def test_calibrated_key_verifies_the_marked_model_and_not_a_null():
    badnets, key, marked, nulls = _key_and_models()
    badnets.calibrate(key, nulls)
    cal = key.meta["null_calibration"]
    assert cal["members"] == list(nulls) and len(cal["null_scores"]) == 4
    result = badnets.verify(marked, key)
    assert result.verified and result.score > 0.9 and result.p_value_null_empirical == 1 / 5 and result.p_value_null_parametric < 0.05 and result.tpr_at_1fpr == 1.0
    assert result.asr_ci_low > 0.85 and result.asr_ci_high == 1.0
    innocent = badnets.verify(nulls["null0"], key)
    assert not innocent.verified and innocent.p_value_null_empirical > 0.05


def test_calibration_survives_saving_the_key(tmp_path):
    badnets, key, marked, nulls = _key_and_models()
    badnets.calibrate(key, nulls)
    loaded = Key.load(key.save(tmp_path / "k.npz"))
    assert loaded.meta["null_calibration"] == key.meta["null_calibration"]
    assert badnets.verify(marked, loaded).verified
