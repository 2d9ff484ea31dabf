"""What a cell measures, before and after the attack, with every metric declared where it is computed.

``scores_before`` runs once per mark (and explainer): utility of the clean
reference and the watermarked model, the harm of embedding, output and input
stealth, verification of the watermarked model and of one clean null model.
``scores_after`` runs once per cell: utility and verification of the attacked
model and of a null model under the same attack. Each metric's column (name,
direction, one-line definition) is declared beside the code that computes it,
in ``BEFORE_COLUMNS`` and ``AFTER_COLUMNS``; plugins add theirs in their own
``columns``. Verdicts that depend on a budget (``removed``) are not measured:
``harness.verdicts`` derives them when they are shown.
"""

from __future__ import annotations

import torch

from harness import scoring
from harness.data import Split
from harness.metrics import Column, check_declared
from harness.presets import Preset
from harness.segmenter import predict_proba
from harness.training import seed_everything
from harness.watermark import Key, Verification


def utility(model, split: Split, batch_size: int) -> tuple[dict, torch.Tensor]:
    """Mean per-image Dice, IoU, HD95 and pixel AUC on ``split``, and the probability maps."""
    probs = predict_proba(model, split.images, batch_size)
    scores = {"dice": scoring.dice(probs, split.masks), "iou": scoring.iou(probs, split.masks),
              "hd95": scoring.hd95(probs, split.masks), "auc": scoring.pixel_auc(probs, split.masks)}
    return {name: scoring.summarize(values) for name, values in scores.items()}, probs


# -- verification of one model with the owner's key ----------------------------------------------------

def _verification_columns(suffix: str, what: str) -> list[Column]:
    """The columns of one verification; the calibrated ones of the row's final model (after the attack)
    carry the bare names (``p_value_null``, ``tpr_at_1fpr``)."""
    after = suffix == "after"
    cols = [
        Column(f"asr_{suffix}", True, f"Share of the M triggered queries the verifier flags, on {what}."),
        Column(f"fpr_{suffix}", False, f"Share of the M benign queries flagged, on {what}."),
        Column(f"p_value_{suffix}", False, f"One-sided Fisher exact test that triggered queries are flagged more "
                                           f"often than benign ones, on {what}."),
        Column(f"verified_{suffix}", True, f"1 if both tests pass on {what}: p_value_{suffix} < alpha (the key's "
                                           "level, default 0.01) and the calibrated p-value < the null level "
                                           "(default 0.05)."),
        Column(f"qr_decoded_{suffix}", None, f"StealthMark only: the QR certificate decoded to the owner's payload, "
                                             f"on {what}. Gated by the detector: not independent evidence."),
        Column(f"score_{suffix}", True, f"Separation score on {what}: the scheme's mean per-answer score on the M "
                                        "triggered queries minus that on the M benign queries (destructive "
                                        "backdoors: share of target pixels followed, so 1 = complete; "
                                        "StealthMark: detector logit)."),
        Column("p_value_null" if after else "p_value_null_before", False,
               f"Probability that a clean model from the null population scores at least score_{suffix} "
               f"(Student-t prediction model of the null scores), on {what}."),
        Column("tpr_at_1fpr" if after else "tpr_at_1fpr_before", True,
               f"Share of triggered answers on {what} whose per-answer score exceeds the cut that flags 1% of the "
               "null models' triggered answers."),
    ]
    if after:
        cols += [Column("asr_ci_low", True, "Lower end of the Wilson 95% interval of asr_after over the M "
                                            "triggered queries."),
                 Column("asr_ci_high", True, "Upper end of that interval.")]
    else:
        cols += [Column("null_threshold", None, "The separation score a clean model exceeds with probability equal "
                                                "to the null level: a one-sided Student-t prediction bound over the "
                                                "null population's scores with the owner's key (`nulls` column); "
                                                "its spread is never below the null models' own sampling error.")]
    return cols


def verification_metrics(result: Verification, suffix: str) -> dict:
    """The declared metrics of one verification (see ``_verification_columns``), plus the scheme's own
    extras (e.g. StealthMark-QR's bit accuracies) suffixed the same way."""
    after = suffix == "after"
    out = {f"asr_{suffix}": result.asr, f"fpr_{suffix}": result.fpr, f"p_value_{suffix}": result.p_value,
           f"verified_{suffix}": float(result.verified),
           f"qr_decoded_{suffix}": None if result.qr_decoded is None else float(result.qr_decoded),
           f"score_{suffix}": result.score,
           "p_value_null" if after else "p_value_null_before": result.p_value_null,
           "tpr_at_1fpr" if after else "tpr_at_1fpr_before": result.tpr_at_1fpr}
    if after:
        out.update(asr_ci_low=result.asr_ci_low, asr_ci_high=result.asr_ci_high)
    else:
        out["null_threshold"] = result.null_threshold
    out.update({f"{name}_{suffix}": value for name, value in result.extra_metrics().items()})
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
    Column("null_asr", False, "asr of one member of the null population (the first with the suspect's "
                              "architecture) queried with the owner's key."),
    Column("null_fpr", False, "fpr of that null model."),
    Column("null_p_value", True, "Fisher p-value on the null model; below alpha would be a false accusation."),
    Column("null_verified", False, "1 if that null model was (wrongly) verified. It is a calibration member, so "
                                   "this is a sanity check; the held-out test in tests/ checks nulls outside the "
                                   "calibration."),
]


def scores_before(wm, marked, clean, null, key: Key, splits, preset: Preset, explainer: str, seed: int) -> dict:
    """Everything measured once per watermark and explainer, before any attack."""
    batch = preset.eval_batch_size
    clean_util, clean_probs = utility(clean, splits.test, batch)
    marked_util, marked_probs = utility(marked, splits.test, batch)
    triggered_images = wm.trigger.apply(splits.test.images)
    footprint = wm.trigger.footprint(preset.image_size, preset.image_size)
    marked_triggered = predict_proba(marked, triggered_images, batch)
    clean_triggered = predict_proba(clean, triggered_images, batch)
    if footprint is None:
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
        "flip_rate": scoring.summarize(flip),
        "flip_rate_clean": scoring.summarize(flip_clean),
        "trigger_psnr": scoring.summarize(scoring.psnr(triggered_images, splits.test.images)),
        "trigger_ssim": scoring.summarize(scoring.ssim(triggered_images, splits.test.images)),
    }
    metrics.update(verification_metrics(wm.verify(marked, key, explainer=explainer, seed=seed), "before"))
    null_result = wm.verify(null, key, explainer=explainer, seed=seed)
    metrics.update({"null_asr": null_result.asr, "null_fpr": null_result.fpr,
                    "null_p_value": null_result.p_value, "null_verified": float(null_result.verified)})
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
    Column("null_asr_after", False, "asr of the null model after the same attack: does the attack alone create "
                                    "false accusations?"),
    Column("attack_seconds", False, "Wall-clock seconds the attack took (the thief's cost)."),
]


def scores_after(wm, attack, attacked, attacked_null, key: Key, splits, preset: Preset, explainer: str, seed: int,
                 dice_watermarked: float, attack_seconds: float, attack_report: dict) -> dict:
    """What one cell adds to its mark's ``scores_before``: the attacked model's utility and verification,
    the same attack's effect on a null model, and what the attack reports about itself."""
    after = utility(attacked, splits.test, preset.eval_batch_size)[0]
    metrics = {"dice_attacked": after["dice"], "auc_attacked": after["auc"], "iou_attacked": after["iou"],
               "attack_dice_drop": dice_watermarked - after["dice"], "attack_seconds": attack_seconds}
    seed_everything(seed)
    metrics.update(verification_metrics(wm.verify(attacked, key, explainer=explainer, seed=seed), "after"))
    seed_everything(seed)
    metrics["null_asr_after"] = wm.verify(attacked_null, key, certify=False).asr
    metrics.update(attack_report)
    check_declared(metrics, AFTER_COLUMNS + list(wm.columns) + list(attack.columns),
                   f"cell of {wm.registered_name!r} x {attack.registered_name!r}")
    return metrics


COLUMNS = BEFORE_COLUMNS + AFTER_COLUMNS
