"""The leaderboard CSV, derived from run records alone (delete it and nothing is lost).

``COLUMNS`` is the single definition of every column: its direction and
meaning. ``results/README.md`` is generated from it (``columns_markdown``) and
a test keeps the two in step.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from harness.cache import atomic_write_bytes
from harness.records import load_records

UP, DOWN, NEUTRAL = "higher", "lower", "-"

# (name, better direction, definition). Spec columns first, then metrics.
COLUMNS: list[tuple[str, str, str]] = [
    ("watermark", NEUTRAL, "Watermark or baseline under test (`harness list`)."),
    ("role", NEUTRAL, "`watermark` (method under test) or `baseline` (backdoor-watermark baseline)."),
    ("trigger", NEUTRAL, "Trigger family the mark was embedded with (`harness list triggers`): `patch` yellow square bottom-right; `text` the paper's white \"TEST\" top-left; `border` black frame; `noise` seeded noise square top-right; `warp` WaNet-style smooth warp of the whole image; `blend` full-image pattern blended at alpha 0.1."),
    ("model", NEUTRAL, "Registered segmentation architecture."),
    ("dataset", NEUTRAL, "Registered dataset (`harness list datasets`); with its options as `name[key=value]`, and for a folder dataset `name:<hash>`, a fingerprint of the files on disk and the options."),
    ("preset", NEUTRAL, "Run size (`tiny` on CPU, `paper` on GPU)."),
    ("attack", NEUTRAL, "Removal attack applied to the watermarked model (`harness list attacks`)."),
    ("attack_family", NEUTRAL, "The attack's family: pruning, fine-tuning, distillation, quantization, noise, input-transform, overwriting."),
    ("strength", NEUTRAL, "Attack strength, in the attack's own unit (e.g. fraction of weights pruned)."),
    ("seed", NEUTRAL, "Seed of data, initialisation, poisoning and explainer; the null model uses seed+1."),
    ("explainer", NEUTRAL, "Attribution method used for the QR certificate."),
    ("dice_clean", UP, "Mean per-image Dice on the test split of the clean reference model (same data, seed and recipe, no watermark)."),
    ("dice_watermarked", UP, "Mean per-image Dice of the watermarked model on the test split."),
    ("dice_attacked", UP, "Mean per-image Dice of the attacked model on the test split."),
    ("harm_dice_drop", DOWN, "dice_clean - dice_watermarked: the utility cost of embedding."),
    ("attack_dice_drop", NEUTRAL, "dice_watermarked - dice_attacked: the utility cost the thief paid (judged against the budget)."),
    ("iou_clean", UP, "Mean per-image IoU of the clean reference model."),
    ("iou_watermarked", UP, "Mean per-image IoU of the watermarked model."),
    ("auc_clean", UP, "Mean per-image pixel AUROC of the clean reference model (images without both classes are skipped)."),
    ("auc_watermarked", UP, "Mean per-image pixel AUROC of the watermarked model."),
    ("harm_auc_drop", DOWN, "auc_clean - auc_watermarked: the AUC cost of embedding."),
    ("auc_attacked", UP, "Mean per-image pixel AUROC of the attacked model."),
    ("hd95_clean", DOWN, "Mean per-image 95th-percentile Hausdorff distance (pixels) of the clean reference model; an empty prediction scores the image diagonal."),
    ("hd95_watermarked", DOWN, "The same for the watermarked model."),
    ("flip_rate", DOWN, "Output stealth, averaged per test image. Triggers with a footprint (patch, text, border, noise): share of pixels outside the footprint whose thresholded mask (p > 0.5) changes when the trigger is added, for the watermarked model. Full-image triggers (warp, blend) have no footprint and a warp moves the lesion, so there it is the share of pixels where the watermarked model's mask on the triggered image differs from the clean reference model's mask on the same triggered image."),
    ("flip_rate_clean", NEUTRAL, "The reference level for flip_rate. Footprint triggers: the same measurement for the clean reference model (what the trigger alone does to a model without the mark). Full-image triggers: the share of pixels where the watermarked and the clean reference model disagree on benign images (how much two such models differ without any trigger)."),
    ("trigger_psnr", UP, "Input stealth: mean PSNR (dB) between triggered and benign test images."),
    ("trigger_ssim", UP, "Input stealth: mean SSIM between triggered and benign test images."),
    ("asr_before", UP, "Share of the M triggered queries the verifier flags, on the watermarked model before the attack."),
    ("fpr_before", DOWN, "Share of the M benign queries flagged, before the attack."),
    ("p_value_before", DOWN, "One-sided Fisher exact test that triggered queries are flagged more often than benign ones, before the attack."),
    ("verified_before", UP, "1 if both tests pass before the attack: p_value_before < alpha (the key's level, default 0.01) and p_value_null_before < the null level (default 0.05)."),
    ("score_before", UP, "Separation score before the attack: the scheme's mean per-answer score on the M triggered queries minus that on the M benign queries (destructive backdoors: share of target pixels followed, so 1 = complete; StealthMark: detector logit)."),
    ("null_threshold", NEUTRAL, "The separation score a clean model exceeds with probability equal to the null level: a one-sided Student-t prediction bound over the null population's scores with the owner's key (`nulls` column); its spread is never below the null models' own sampling error."),
    ("p_value_null_before", DOWN, "Probability that a clean model from the null population scores at least score_before (Student-t prediction model of the null scores)."),
    ("tpr_at_1fpr_before", UP, "Share of triggered answers before the attack whose per-answer score exceeds the cut that flags 1% of the null models' triggered answers."),
    ("qr_decoded_before", NEUTRAL, "StealthMark only: the QR certificate decoded to the owner's payload. Gated by the detector: not independent evidence."),
    ("asr_after", UP, "asr on the attacked model (owner's view: higher means the mark survived)."),
    ("fpr_after", DOWN, "fpr on the attacked model."),
    ("p_value_after", DOWN, "Fisher exact p-value on the attacked model."),
    ("verified_after", UP, "1 if both tests pass on the attacked model: p_value_after < alpha and p_value_null < the null level."),
    ("score_after", UP, "Separation score on the attacked model."),
    ("p_value_null", DOWN, "p_value_null_before for the attacked model: how unusual its separation score is among clean models. The row's calibrated verdict."),
    ("asr_ci_low", UP, "Lower end of the Wilson 95% interval of asr_after over the M triggered queries."),
    ("asr_ci_high", UP, "Upper end of that interval."),
    ("tpr_at_1fpr", UP, "tpr_at_1fpr_before for the attacked model."),
    ("qr_decoded_after", NEUTRAL, "qr_decoded on the attacked model (gated, see qr_decoded_before)."),
    ("nulls", NEUTRAL, "The null population the verdicts are calibrated against: seeds per architecture x architectures @ false-accusation level. Each member has its own seed and its own images (`harness nulls`)."),
    ("null_asr", DOWN, "asr of one member of the null population (the first with the suspect's architecture) queried with the owner's key."),
    ("null_fpr", DOWN, "fpr of that null model."),
    ("null_p_value", UP, "Fisher p-value on the null model; below alpha would be a false accusation."),
    ("null_verified", DOWN, "1 if that null model was (wrongly) verified. It is a calibration member, so this is a sanity check; the held-out test in tests/ checks nulls outside the calibration."),
    ("null_asr_after", DOWN, "asr of the null model after the same attack: does the attack alone create false accusations?"),
    ("removed", NEUTRAL, "1 if the attack removed the mark: verified_after is 0 while attack_dice_drop <= the Dice budget (default 0.05)."),
    ("attack_seconds", DOWN, "Wall-clock seconds the attack took (the thief's cost)."),
    ("thief_asr", NEUTRAL, "Overwriting only: ASR of the thief's own mark (their trigger, detector and queries) on the model they ship."),
    ("thief_verified", NEUTRAL, "Overwriting only: 1 if the thief's own mark verifies (p < alpha); with the owner's mark also verified, both can claim the model."),
    ("run_id", NEUTRAL, "Hash of the cell spec; the record is results/runs/<run_id>.json."),
]
COLUMN_NAMES = [name for name, _, _ in COLUMNS]
LEADERBOARD_FILE = "leaderboard.csv"
WORST_CASE_FILE = "worst_case.csv"
# One worst case per mark: everything that identifies the watermarked model.
MARK_FIELDS = ("watermark", "role", "trigger", "model", "dataset", "preset", "seed", "explainer")
WORST_CASE_COLUMNS = [*MARK_FIELDS, "attacks_tried", "worst_attack", "worst_strength", "attack_dice_drop",
                      "asr_after", "p_value_after"]


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def rows(results_dir: str | Path) -> list[dict]:
    out = []
    for record in load_records(results_dir):
        if record.status != "ok":
            continue
        row = {**record.spec, **record.metrics, "run_id": record.run_id}
        out.append({name: row.get(name) for name in COLUMN_NAMES})
    order = ("role", "watermark", "trigger", "model", "dataset", "preset", "attack", "strength", "seed", "explainer")
    return sorted(out, key=lambda r: tuple(str(r[k]) if k != "strength" else float(r[k]) for k in order))


def worst_cases(table: list[dict]) -> list[dict]:
    """Per mark, the attack that removes it at the smallest Dice cost (WRT's payoff rule), or "none".

    Only removals count, i.e. cells where verification failed within the Dice budget.
    """
    marks: dict[tuple, list[dict]] = {}
    for row in table:
        marks.setdefault(tuple(row[f] for f in MARK_FIELDS), []).append(row)
    out = []
    for mark, cells in marks.items():
        removals = [c for c in cells if c["removed"] == 1.0]
        best = min(removals, key=lambda c: (c["attack_dice_drop"], c["attack"], c["strength"])) if removals else None
        out.append({**dict(zip(MARK_FIELDS, mark)), "attacks_tried": len(cells),
                    "worst_attack": best["attack"] if best else "none",
                    "worst_strength": best["strength"] if best else None,
                    "attack_dice_drop": best["attack_dice_drop"] if best else None,
                    "asr_after": best["asr_after"] if best else None,
                    "p_value_after": best["p_value_after"] if best else None})
    return out


def _write_csv(path: Path, columns: list[str], table: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _cell(row.get(k)) for k in columns} for row in table)
    atomic_write_bytes(path, lambda h: h.write(buffer.getvalue().encode()))


def write_leaderboard(results_dir: str | Path) -> tuple[Path, int]:
    """Rebuild ``leaderboard.csv`` and ``worst_case.csv`` from the records; returns (path, number of rows)."""
    table = rows(results_dir)
    path = Path(results_dir) / LEADERBOARD_FILE
    _write_csv(path, COLUMN_NAMES, table)
    _write_csv(Path(results_dir) / WORST_CASE_FILE, WORST_CASE_COLUMNS, worst_cases(table))
    return path, len(table)


def columns_markdown() -> str:
    """The column reference table of results/README.md."""
    lines = ["| column | better | definition |", "|---|---|---|"]
    lines += [f"| `{name}` | {direction} | {text} |" for name, direction, text in COLUMNS]
    return "\n".join(lines) + "\n"
