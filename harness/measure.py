"""What a cell measures, before and after the attack, with every metric declared where it is computed.

``scores_before`` runs once per mark (and explainer): utility of the clean
reference and the watermarked model, the harm of embedding, output and input
stealth, verification of the watermarked model, and how the key treats the
null population. ``scores_after`` runs once per cell: utility of the attacked
model, and its verification against the null population under the same
attack (``harness.calibration`` states the rule). Each metric's column (name,
direction, one-line definition) is declared beside the code that computes it,
in ``BEFORE_COLUMNS`` and ``AFTER_COLUMNS``; plugins add theirs in their own
``columns``. Verdicts that depend on a budget (``removed``) are not measured:
``harness.verdicts`` derives them when they are shown.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from harness import calibration as null_stats, scoring
from harness.data import Split
from harness.metrics import Column, check_declared
from harness.presets import Preset
from harness.segmenter import predict_proba
from harness.training import seed_everything
from harness.verifiers import DEFAULT_VERIFIER
from harness.watermark import Key, Verification, judge, stored_calibration

RANK = "paired-rank"


def utility(model, split: Split, batch_size: int) -> tuple[dict, torch.Tensor]:
    """Mean per-image Dice, IoU, HD95 and pixel AUC on ``split``, and the probability maps."""
    probs = predict_proba(model, split.images, batch_size)
    scores = {"dice": scoring.dice(probs, split.masks), "iou": scoring.iou(probs, split.masks),
              "hd95": scoring.hd95(probs, split.masks), "auc": scoring.pixel_auc(probs, split.masks)}
    return {name: scoring.summarize(values) for name, values in scores.items()}, probs


# -- verification of one model with the owner's key ----------------------------------------------------

def _verification_columns(suffix: str, what: str) -> list[Column]:
    """The columns of one verification; the calibrated p-values of the row's final model (after the
    attack) carry the bare names (``p_value_null_empirical``, ``tpr_at_1fpr``)."""
    after = suffix == "after"
    bare = "" if after else "_before"
    nulls = "the attacked null population (the same attack on each null)" if after else "the null population"
    return [
        Column(f"asr_{suffix}", True, f"Share of the M triggered queries the verifier flags, on {what}."),
        Column(f"fpr_{suffix}", False, f"Share of the M benign queries flagged, on {what}."),
        Column(f"p_value_{suffix}", False, f"The paired test, on {what}: exact one-sided sign test that "
                                           "each query image's triggered answer scores above its benign answer "
                                           "(StealthMark-QR: binomial test of the payload bits)."),
        Column(f"verified_{suffix}", True, f"1 if both tests pass on {what} (harness.calibration.decide): "
                                           f"paired_verified_{suffix} and calibrated_verified_{suffix}."),
        Column(f"paired_verified_{suffix}", True, f"1 if the paired test alone passes on {what}."),
        Column(f"calibrated_verified_{suffix}", True, f"1 if the calibrated test alone passes on {what}: "
                                                      f"p_value_null_empirical{bare} <= the level when nulls_{suffix} "
                                                      ">= 19 (distribution-free); with fewer nulls, the parametric "
                                                      "bound and beyond every null. Where it differs from "
                                                      f"paired_verified_{suffix} the tests disagree."),
        Column(f"qr_decoded_{suffix}", None, f"StealthMark only: the QR certificate decoded to the owner's payload, "
                                             f"on {what}. Gated by the detector: not independent evidence."),
        Column(f"score_{suffix}", True, f"Separation score on {what}: the scheme's mean per-answer score on the M "
                                        "triggered queries minus that on the M benign queries (destructive "
                                        "backdoors: share of target pixels followed, so 1 = complete; "
                                        "StealthMark: detector logit)."),
        Column(f"null_threshold{'_after' if after else ''}", None,
               f"The parametric bound over {nulls}: the separation score a new innocent model exceeds with "
               "probability equal to the null level under a Student-t prediction model of the null scores; its "
               "spread is never below the null models' own sampling error."),
        Column(f"p_value_null_empirical{bare}", False,
               f"(1 + #{{null scores >= score_{suffix}}}) / (K + 1) over the K members of {nulls}: what the nulls "
               "alone support; never below 1/(K+1)."),
        Column(f"p_value_null_parametric{bare}", False,
               f"Parametric: P(a new innocent model scores >= score_{suffix}) under the Student-t prediction model "
               f"of {nulls}. It can be far below 1/(K+1); its normality assumption is tested in "
               f"null_normality_p{'_after' if after else ''}."),
        Column(f"null_normality_p{'_after' if after else ''}", None,
               f"Shapiro-Wilk p-value of the K null scores of {nulls} (small: the parametric bound is doubtful)."),
        Column(f"nulls_{suffix}", None, f"K: how many members of {nulls} the verdict was calibrated against."),
        Column(f"tpr_at_1fpr{bare}", True,
               f"Share of triggered answers on {what} whose per-answer score exceeds the cut that flags 1% of "
               f"{nulls}'s triggered answers."),
        *([Column("asr_ci_low", True, "Lower end of the Wilson 95% interval of asr_after over the M triggered "
                                      "queries."),
           Column("asr_ci_high", True, "Upper end of that interval.")] if after else []),
    ]


def verification_metrics(result: Verification, suffix: str) -> dict:
    """The declared metrics of one verification (see ``_verification_columns``), plus the scheme's own
    extras (e.g. StealthMark-QR's bit accuracies) suffixed the same way."""
    after = suffix == "after"
    bare = "" if after else "_before"
    optional = lambda flag: None if flag is None else float(flag)  # noqa: E731
    out = {f"asr_{suffix}": result.asr, f"fpr_{suffix}": result.fpr, f"p_value_{suffix}": result.p_value,
           f"verified_{suffix}": float(result.verified),
           f"paired_verified_{suffix}": optional(result.paired_verified),
           f"calibrated_verified_{suffix}": optional(result.calibrated_verified),
           f"qr_decoded_{suffix}": optional(result.qr_decoded),
           f"score_{suffix}": result.score,
           f"null_threshold{'_after' if after else ''}": result.null_threshold,
           f"p_value_null_empirical{bare}": result.p_value_null_empirical,
           f"p_value_null_parametric{bare}": result.p_value_null_parametric,
           f"null_normality_p{'_after' if after else ''}": result.null_normality_p,
           f"nulls_{suffix}": None if result.null_count is None else float(result.null_count),
           f"tpr_at_1fpr{bare}": result.tpr_at_1fpr}
    if after:
        out.update(asr_ci_low=result.asr_ci_low, asr_ci_high=result.asr_ci_high)
    out.update({f"{name}_{suffix}": value for name, value in result.extra_metrics().items()})
    return out


def _rank_columns(suffix: str, what: str) -> list[Column]:
    """The paired-rank verifier's columns (``harness.verifiers``), beside the detector's."""
    after = suffix == "after"
    bare = "" if after else "_before"
    nulls = "the attacked nulls" if after else "the nulls"
    return [
        Column(f"rank_score_{suffix}", True, f"Paired-rank verifier, on {what}: mean over the M key images of the "
                                             "rank shift (AUC of the triggered answer's moved pixels over the "
                                             "benign answer's, minus 0.5). Unchanged by any monotone map of the "
                                             "logits."),
        Column(f"rank_p_value_{suffix}", False, f"Paired-rank verifier, on {what}: exact one-sided sign test of "
                                                "the M per-image rank shifts."),
        Column(f"rank_p_value_null_empirical{bare}", False,
               f"Paired-rank verifier: (1 + #{{null rank scores >= rank_score_{suffix}}}) / (K + 1) over {nulls}."),
        Column(f"rank_paired_verified_{suffix}", True, f"1 if the paired-rank sign test alone passes on {what}."),
        Column(f"rank_calibrated_verified_{suffix}", True,
               f"1 if the paired-rank calibrated test alone passes on {what} (the rule of calibrated_verified)."),
        Column(f"rank_verified_{suffix}", True, f"1 if both paired-rank tests pass on {what}: the verdict of "
                                                "`--verifier paired-rank`."),
    ]


def rank_metrics(result: Verification, suffix: str) -> dict:
    """The paired-rank verification's declared metrics (``_rank_columns``)."""
    bare = "" if suffix == "after" else "_before"
    optional = lambda flag: None if flag is None else float(flag)  # noqa: E731
    return {f"rank_score_{suffix}": result.score, f"rank_p_value_{suffix}": result.p_value,
            f"rank_p_value_null_empirical{bare}": result.p_value_null_empirical,
            f"rank_paired_verified_{suffix}": optional(result.paired_verified),
            f"rank_calibrated_verified_{suffix}": optional(result.calibrated_verified),
            f"rank_verified_{suffix}": float(result.verified)}


def innocents_verified(wm, models: dict, key: Key, level: float, calibration: dict | None = None,
                       verifier: str = DEFAULT_VERIFIER, explainer: str | None = None, seed: int = 0) -> dict:
    """How the owner's key treats a population of innocent models: their mean ASR and FPR, the share
    verified each against a calibration made of the *others* (leave one out: no model grades itself),
    and, given ``calibration``, the share verified against it. ``explainer`` and ``seed``: the cell's, for a
    watermark whose verdict is an explanation (StealthMark-QR); the others' uncertified verdicts ignore them."""
    results = [wm.verify(model, key, explainer=explainer, seed=seed, certify=False, verifier=verifier)
               for model in models.values()]
    errors = [r.sampling_error for r in results]  # None where a score has no sampling error (a QR read)
    loo = null_stats.leave_one_out_verdicts([r.score for r in results], [r.p_value for r in results],
                                            key.meta["alpha"], np.zeros(1), level,
                                            None if None in errors else errors)
    out = {"asr": float(np.mean([r.asr for r in results])),
           "fpr": None if results[0].fpr is None else float(np.mean([r.fpr for r in results])),
           "verified": float(np.mean(loo))}
    if calibration is not None:
        out["verified_against"] = _share_verified(results, key, calibration)
    return out


def _share_verified(results: list[Verification], key: Key, calibration: dict) -> float:
    return float(np.mean([judge(r, key.meta["alpha"], calibration).verified for r in results]))


# -- innocents trained on the owner's own images --------------------------------------------------------

SAME_DATA_NOTE = ("Innocents trained on the owner's own training images with seeds of their own "
                  "(`--same-data-innocents`): a second hospital on the same data.")


def _same_data_columns(suffix: str, what: str) -> list[Column]:
    """Per verifier, the verdict and the false accusations when the same-data innocents join the nulls."""
    after = suffix == "after"
    nulls = "the attacked nulls" if after else "the nulls"
    same = "the attacked same-data innocents" if after else "the same-data innocents"
    out = [Column(f"same_data_innocents{'_after' if after else ''}", None,
                  f"How many same-data innocents {'were attacked' if after else 'were trained'}. {SAME_DATA_NOTE}")]
    for prefix, verifier in (("", "the detector"), ("rank_", "the paired-rank verifier")):
        out += [
            Column(f"{prefix}verified_{suffix}_with_same_data", True,
                   f"1 if {what} verifies under {verifier} against a calibration of {nulls} and {same} together."),
            Column(f"{prefix}same_data_verified{'_after' if after else ''}", False,
                   f"Share of {same} (wrongly) verified under {verifier} against the calibration of {nulls} "
                   "alone: how often a verifier that ignores them would accuse a second hospital on the same data."),
            Column(f"{prefix}innocents_verified{'_after' if after else ''}_with_same_data", False,
                   f"Share of {nulls} and {same} together verified under {verifier}, each against a calibration "
                   "made of all the others (leave one out)."),
        ]
    return out


def same_data_metrics(wm, suspect, nulls: dict, same_data: dict, key: Key, explainer: str, seed: int,
                      suffix: str, calibrations: dict) -> dict:
    """``_same_data_columns``' metrics: ``nulls`` and ``same_data`` are the populations the verdict is
    judged against (attacked ones after an attack), ``calibrations`` each verifier's calibration of
    ``nulls`` alone."""
    level, after = key_level(key), suffix == "after"
    everyone = {**nulls, **same_data}
    out = {f"same_data_innocents{'_after' if after else ''}": float(len(same_data))}
    for prefix, verifier in (("", DEFAULT_VERIFIER), ("rank_", RANK)):
        if verifier not in wm.verifiers:
            continue
        seed_everything(seed)
        joint = wm.null_calibration(key, everyone, level, explainer=explainer, seed=seed, verifier=verifier)
        seed_everything(seed)
        result = wm.verify(suspect, key, explainer=explainer, seed=seed, calibration=joint, certify=False,
                           verifier=verifier)
        out[f"{prefix}verified_{suffix}_with_same_data"] = float(result.verified)
        out[f"{prefix}same_data_verified{'_after' if after else ''}"] = _share_verified(
            [wm.verify(m, key, explainer=explainer, seed=seed, certify=False, verifier=verifier)
             for m in same_data.values()], key, calibrations[verifier])
        out[f"{prefix}innocents_verified{'_after' if after else ''}_with_same_data"] = innocents_verified(
            wm, everyone, key, level, verifier=verifier, explainer=explainer, seed=seed)["verified"]
    return out


# -- before the attack: once per mark and explainer ----------------------------------------------------

BEFORE_COLUMNS = [
    Column("dice_clean", True, "Mean per-image Dice on the test split of the clean reference model (same data, "
                               "seed and recipe, no watermark)."),
    Column("dice_watermarked", True, "Mean per-image Dice of the watermarked model on the test split."),
    Column("harm_dice_drop", False, "dice_clean - dice_watermarked: the utility cost of embedding."),
    Column("iou_clean", True, "Mean per-image IoU of the clean reference model."),
    Column("iou_watermarked", True, "Mean per-image IoU of the watermarked model."),
    Column("auc_clean", True, "Mean per-image pixel AUROC of the clean reference model (images without both "
                              "classes are skipped)."),
    Column("auc_watermarked", True, "Mean per-image pixel AUROC of the watermarked model."),
    Column("harm_auc_drop", False, "auc_clean - auc_watermarked: the AUC cost of embedding."),
    Column("hd95_clean", False, "Mean per-image 95th-percentile Hausdorff distance (pixels) of the clean "
                                "reference model; an empty prediction scores the image diagonal."),
    Column("hd95_watermarked", False, "The same for the watermarked model."),
    Column("flip_rate", False, "Output stealth, averaged per test image. Triggers with a footprint (patch, text, "
                               "border, noise): share of pixels outside the footprint whose thresholded mask "
                               "(p > 0.5) changes when the trigger is added, for the watermarked model. Full-image "
                               "triggers (warp, blend) have no footprint and a warp moves the lesion, so there it "
                               "is the share of pixels where the watermarked model's mask on the triggered image "
                               "differs from the clean reference model's mask on the same triggered image."),
    Column("flip_rate_clean", None, "The reference level for flip_rate. Footprint triggers: the same measurement "
                                    "for the clean reference model (what the trigger alone does to a model without "
                                    "the mark). Full-image triggers: the share of pixels where the watermarked and "
                                    "the clean reference model disagree on benign images."),
    Column("trigger_psnr", True, "Input stealth: mean PSNR (dB) between triggered and benign test images."),
    Column("trigger_ssim", True, "Input stealth: mean SSIM between triggered and benign test images."),
    *_verification_columns("before", "the watermarked model before the attack"),
    Column("null_asr", False, "Mean asr of the null population (the suspect's architecture) queried with the "
                              "owner's key."),
    Column("null_fpr", False, "Mean fpr of the null population."),
    Column("null_verified", False, "Share of the null models (wrongly) verified, each judged against a calibration "
                                   "made of the other K-1 (leave one out). A sanity check: `harness certify` "
                                   "bounds the false-accusation rate on held-out models that set no threshold."),
    *_rank_columns("before", "the watermarked model before the attack"),
    Column("rank_null_verified", False, "null_verified under the paired-rank verifier."),
    *_same_data_columns("before", "the watermarked model"),
]


def scores_before(wm, marked, clean, nulls: dict, key: Key, splits, preset: Preset, explainer: str,
                  seed: int, same_data: dict | None = None) -> dict:
    """Everything measured once per watermark and explainer, before any attack; with ``same_data``
    (innocents trained on the owner's images) also the verdicts with them in the population."""
    batch = preset.eval_batch_size
    clean_util, clean_probs = utility(clean, splits.test, batch)
    marked_util, marked_probs = utility(marked, splits.test, batch)
    triggered_images = wm.trigger.apply(splits.test.images)
    footprint = wm.trigger.footprint(preset.image_size, preset.image_size)
    marked_triggered = predict_proba(marked, triggered_images, batch)
    clean_triggered = predict_proba(clean, triggered_images, batch)
    if not wm.modifies_model:  # a fingerprint: no trigger, no mark, nothing whose stealth could be measured
        flip = flip_clean = None
    elif footprint is None:
        # Full-image triggers (warp, blend) leave no pixel untouched, and a warp moves the lesion:
        # compare with the clean reference model on the same triggered input instead, and report
        # as flip_rate_clean how much the two models already disagree without any trigger.
        flip = scoring.flip_rate(marked_triggered, clean_triggered)
        flip_clean = scoring.flip_rate(marked_probs, clean_probs)
    else:
        flip = scoring.flip_rate(marked_probs, marked_triggered, exclude=footprint)
        flip_clean = scoring.flip_rate(clean_probs, clean_triggered, exclude=footprint)
    metrics = {
        "dice_clean": clean_util["dice"], "dice_watermarked": marked_util["dice"],
        "harm_dice_drop": clean_util["dice"] - marked_util["dice"],
        "iou_clean": clean_util["iou"], "iou_watermarked": marked_util["iou"],
        "auc_clean": clean_util["auc"], "auc_watermarked": marked_util["auc"],
        "harm_auc_drop": clean_util["auc"] - marked_util["auc"],
        "hd95_clean": clean_util["hd95"], "hd95_watermarked": marked_util["hd95"],
        "flip_rate": None if flip is None else scoring.summarize(flip),
        "flip_rate_clean": None if flip_clean is None else scoring.summarize(flip_clean),
        "trigger_psnr": scoring.summarize(scoring.psnr(triggered_images, splits.test.images))
        if wm.modifies_model else None,
        "trigger_ssim": scoring.summarize(scoring.ssim(triggered_images, splits.test.images))
        if wm.modifies_model else None,
    }
    metrics.update(verification_metrics(wm.verify(marked, key, explainer=explainer, seed=seed), "before"))
    innocent = innocents_verified(wm, nulls, key, key_level(key), explainer=explainer, seed=seed)
    metrics.update({"null_asr": innocent["asr"], "null_fpr": innocent["fpr"], "null_verified": innocent["verified"]})
    if RANK in wm.verifiers:
        metrics.update(rank_metrics(wm.verify(marked, key, certify=False, verifier=RANK), "before"))
        metrics["rank_null_verified"] = innocents_verified(wm, nulls, key, key_level(key), verifier=RANK)["verified"]
    if same_data:
        metrics.update(same_data_metrics(wm, marked, nulls, same_data, key, explainer, seed, "before",
                                         {v: stored_calibration(key, v) for v in wm.verifiers}))
    check_declared(metrics, BEFORE_COLUMNS + list(wm.columns), f"watermark {wm.registered_name!r}")
    return metrics


# -- after the attack: once per cell -------------------------------------------------------------------

AFTER_COLUMNS = [
    Column("dice_attacked", True, "Mean per-image Dice of the attacked model on the test split."),
    Column("attack_dice_drop", None, "dice_watermarked - dice_attacked: the utility cost the thief paid (judged "
                                     "against the Dice budget)."),
    Column("auc_attacked", True, "Mean per-image pixel AUROC of the attacked model."),
    Column("iou_attacked", True, "Mean per-image IoU of the attacked model."),
    *_verification_columns("after", "the attacked model"),
    Column("null_asr_after", False, "Mean asr of the attacked null population."),
    Column("null_verified_after", False, "Share of the attacked nulls verified, each against a calibration made of "
                                         "the other attacked nulls (leave one out): the rule verified_after uses."),
    Column("null_verified_after_clean_calibration", False,
           "Share of the attacked nulls verified against the key's calibration on the unattacked nulls: the "
           "false accusations a verifier who ignores the attack would make."),
    Column("verified_after_clean_calibration", None,
           "1 if the attacked model verifies against the unattacked nulls' calibration (the rule before attacked "
           "nulls existed); where it differs from verified_after, the attacked nulls changed the verdict."),
    *_rank_columns("after", "the attacked model"),
    Column("rank_null_verified_after", False, "null_verified_after under the paired-rank verifier."),
    Column("rank_verified_after_clean_calibration", None,
           "verified_after_clean_calibration under the paired-rank verifier."),
    Column("attack_seconds", False, "Wall-clock seconds the attack took on the suspect (the thief's compute)."),
    Column("thief_images", False, "The thief's own images the attack uses (its declared budget)."),
    Column("thief_labels", False, "1 if the attack needs the thief's masks as well as their images."),
    Column("suspect_queries", False, "Queries the attack sends to the suspect model."),
    *_same_data_columns("after", "the attacked model"),
]


def key_level(key: Key) -> float:
    return (stored_calibration(key) or {}).get("level", null_stats.DEFAULT_LEVEL)


def _verify_attacked(wm, attacked, attacked_nulls: dict, key: Key, explainer: str, seed: int, verifier: str):
    """The attacked suspect judged against the attacked nulls, and against the unattacked nulls'
    calibration (None without one); the attacked nulls' leave-one-out verdicts."""
    level = key_level(key)
    seed_everything(seed)
    attacked_calibration = wm.null_calibration(key, attacked_nulls, level, explainer=explainer, seed=seed,
                                               verifier=verifier)
    seed_everything(seed)
    result = wm.verify(attacked, key, explainer=explainer, seed=seed, calibration=attacked_calibration,
                       certify=verifier == DEFAULT_VERIFIER, verifier=verifier)
    clean_calibration = stored_calibration(key, verifier)
    against_clean = (None if clean_calibration is None
                     else float(judge(copy.copy(result), key.meta["alpha"], clean_calibration).verified))
    seed_everything(seed)
    innocent = innocents_verified(wm, attacked_nulls, key, level, clean_calibration, verifier=verifier,
                                  explainer=explainer, seed=seed)
    return result, against_clean, innocent, attacked_calibration


def scores_after(wm, attack, attacked, attacked_nulls: dict, key: Key, splits, preset: Preset, explainer: str,
                 seed: int, dice_watermarked: float, attack_seconds: float, attack_report: dict,
                 budget, attacked_same_data: dict | None = None) -> dict:
    """What one cell adds to its mark's ``scores_before``: the attacked model's utility, its verification
    by each verifier against the nulls under the same attack, how the attack alone treats innocent
    models, what the thief spent (``budget``: ``harness.attack.Budget``) and what the attack reports
    about itself; with ``attacked_same_data``, also the verdicts with those innocents (attacked the
    same way) in the population."""
    after = utility(attacked, splits.test, preset.eval_batch_size)[0]
    metrics = {"dice_attacked": after["dice"], "auc_attacked": after["auc"], "iou_attacked": after["iou"],
               "attack_dice_drop": dice_watermarked - after["dice"], "attack_seconds": attack_seconds,
               "thief_images": float(budget.images), "thief_labels": float(budget.labels),
               "suspect_queries": float(budget.queries)}
    calibrations = {}
    result, against_clean, innocent, calibrations[DEFAULT_VERIFIER] = _verify_attacked(
        wm, attacked, attacked_nulls, key, explainer, seed, DEFAULT_VERIFIER)
    metrics.update(verification_metrics(result, "after"))
    metrics.update({"verified_after_clean_calibration": against_clean, "null_asr_after": innocent["asr"],
                    "null_verified_after": innocent["verified"],
                    "null_verified_after_clean_calibration": innocent.get("verified_against")})
    if RANK in wm.verifiers:
        result, against_clean, innocent, calibrations[RANK] = _verify_attacked(wm, attacked, attacked_nulls, key,
                                                                                explainer, seed, RANK)
        metrics.update(rank_metrics(result, "after"))
        metrics.update({"rank_verified_after_clean_calibration": against_clean,
                        "rank_null_verified_after": innocent["verified"]})
    if attacked_same_data:
        metrics.update(same_data_metrics(wm, attacked, attacked_nulls, attacked_same_data, key, explainer, seed,
                                         "after", calibrations))
    metrics.update(attack_report)
    check_declared(metrics, AFTER_COLUMNS + list(wm.columns) + list(attack.columns),
                   f"cell of {wm.registered_name!r} x {attack.registered_name!r}")
    return metrics


COLUMNS = BEFORE_COLUMNS + AFTER_COLUMNS
