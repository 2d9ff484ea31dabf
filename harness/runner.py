"""``benchmark()``: the importable entry point behind ``python -m harness run``.

One cell = (watermark, model, dataset, attack, strength, seed, preset, explainer).
Its data flow, top to bottom:

  data splits (owner-train | owner-verify | attacker | test), disjoint, seeded
  -> clean reference model (same data, seed, recipe; no mark)    [cached]
  -> null population (seed+1+k, images nobody else saw)           [cached]
  -> watermarked model + owner's key, calibrated on the nulls     [cached]
  -> scores before any attack (utility, harm, stealth, verification, null control)
  -> for each strength: attacked model -> scores after -> RunRecord (JSON)
  -> leaderboard CSV rebuilt from every record

``benchmark`` states a grid of one setting (or a few, from comma-separated
values) and hands it to ``harness.grid``, which runs the steps above as cached
tasks; the scoring itself lives here. Every name and number is validated
before anything is trained or written.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from harness import scoring
from harness.cache import ArtifactCache, atomic_write_bytes, spec_hash
from harness.calibration import CALIBRATION_FORMAT, DEFAULT_LEVEL
from harness.data import Split
from harness.errors import HarnessError
from harness.presets import Preset
from harness.records import HARNESS_VERSION, RunRecord
from harness.registry import ATTACKS, EXPLAINERS
from harness.device import to_device
from harness.segmenter import build_model, predict_proba
from harness.training import seed_everything
from harness.watermark import Key, Verification

DEFAULT_WATERMARKS = ("stealthmark", "badnets")
DEFAULT_DICE_BUDGET = 0.05


@dataclass(frozen=True)
class CellSpec:
    watermark: str
    model: str
    dataset: str
    attack: str
    strength: float
    seed: int
    preset: str
    explainer: str
    trigger: str  # the trigger family the watermark was embedded with
    nulls: str  # the null population the verdict is calibrated against, e.g. "5x basic-unet,unet @ 0.05"
    mark_id: str  # hash of the watermark's full spec (trigger parameters, target, floor, ...)

    @property
    def run_id(self) -> str:
        return spec_hash({**asdict(self), "harness": HARNESS_VERSION})


@dataclass
class Outcome:
    """What ``benchmark`` returns: the records of this call and where the owner's files went."""

    records: list[RunRecord]
    keys: dict[str, Path]
    checkpoints: dict[str, Path]
    leaderboard: Path
    failed: list[RunRecord] = field(default_factory=list)  # cells recorded with status "error"


def utility(model, split: Split, batch_size: int) -> tuple[dict, torch.Tensor]:
    probs = predict_proba(model, split.images, batch_size)
    scores = {"dice": scoring.dice(probs, split.masks), "iou": scoring.iou(probs, split.masks),
              "hd95": scoring.hd95(probs, split.masks), "auc": scoring.pixel_auc(probs, split.masks)}
    return {name: scoring.summarize(values) for name, values in scores.items()}, probs


def verification_metrics(result: Verification, suffix: str) -> dict:
    """Leaderboard metrics of one verification. The calibrated ones of the row's final model
    (after the attack) carry the bare names the leaderboard documents (``p_value_null``, ...)."""
    after = suffix == "after"
    return {f"asr_{suffix}": result.asr, f"fpr_{suffix}": result.fpr, f"p_value_{suffix}": result.p_value,
            f"verified_{suffix}": float(result.verified),
            f"qr_decoded_{suffix}": None if result.qr_decoded is None else float(result.qr_decoded),
            f"score_{suffix}": result.score,
            "p_value_null" if after else "p_value_null_before": result.p_value_null,
            "tpr_at_1fpr" if after else "tpr_at_1fpr_before": result.tpr_at_1fpr,
            **({"asr_ci_low": result.asr_ci_low, "asr_ci_high": result.asr_ci_high} if after else
               {"null_threshold": result.null_threshold})}


def resolve_attacks(attack: str, strengths) -> list[tuple[object, tuple[float, ...]]]:
    """``attack`` is a name, ``name.preset``, a comma-separated list of those, or ``all``.

    Returns (configured attack, strengths) pairs. Explicit ``strengths`` apply to
    plain names only: presets and ``all`` carry their own.
    """
    names = ATTACKS.names() if attack == "all" else [a.strip() for a in attack.split(",") if a.strip()]
    if not names:
        raise HarnessError("no attack given")
    if strengths and (attack == "all" or any("." in n for n in names)):
        raise HarnessError("--strength cannot be combined with --attack all or a named preset: "
                           "each attack has its own unit and sweep")
    resolved = []
    for name in names:
        base, _, preset = name.partition(".")
        attack_obj = ATTACKS.get(base)()
        if preset:
            if preset not in attack_obj.presets:
                valid = ", ".join(f"{base}.{p}" for p in attack_obj.presets) or "(none)"
                raise HarnessError(f"unknown preset {name!r}; presets of {base!r}: {valid}")
            chosen = (attack_obj.presets[preset],)
        else:
            chosen = tuple(strengths or attack_obj.default_strengths)
        if not chosen:
            raise HarnessError(f"attack {base!r} has no default strengths; pass --strength")
        resolved.append((attack_obj, tuple(attack_obj.check_strength(x) for x in chosen)))
    return resolved


def resolve_explainers(explainer: str) -> list[str]:
    """``explainer`` is a name, a comma-separated list of names, or ``all``."""
    names = EXPLAINERS.names() if explainer == "all" else [e.strip() for e in explainer.split(",") if e.strip()]
    if not names:
        raise HarnessError("no explainer given")
    for name in names:
        EXPLAINERS.get(name)
    if len(set(names)) != len(names):
        raise HarnessError(f"explainer listed twice: {explainer}")
    return names


def embedded_model_and_key(cache: ArtifactCache, wm, model: str, dataset: str, preset: Preset, seed: int,
                           splits, nulls: dict, null_level: float = DEFAULT_LEVEL, device: str = "cpu"):
    """The watermarked model (on ``device``) and the owner's key, calibrated against ``nulls`` (both cached)."""
    wm_spec = {"kind": "watermarked", "watermark": wm.spec(), "model": model, "dataset": dataset,
               "preset": preset.as_dict(), "seed": seed}
    seed_everything(seed)
    marked, _ = cache.model("watermarked", wm_spec, build_model(model, preset.name),
                            lambda m: wm.embed(to_device(m, device), splits, preset, seed))
    marked = to_device(marked, device)
    key_spec = {**wm_spec, "null_population": {"members": list(nulls), "level": null_level, "dataset": dataset},
                "calibration": CALIBRATION_FORMAT}
    key = cache.key(key_spec, lambda: wm.calibrate(wm.make_key(marked, splits, preset, seed), nulls, null_level))
    return marked, key


def export_checkpoint(model: torch.nn.Module, path: Path) -> Path:
    """The network's plain state dict, the format ``harness verify --checkpoint`` takes (written atomically,
    through a temporary file of its own, so concurrent writers never share one)."""
    state = {k: v.detach().cpu() for k, v in model.net.state_dict().items()}
    atomic_write_bytes(path, lambda handle: torch.save(state, handle))
    return path


def benchmark(
    watermarks=DEFAULT_WATERMARKS,
    model: str = "basic-unet",
    dataset: str = "synthetic-polyp",
    attack: str = "prune",
    strengths=None,
    seed: int = 0,
    preset: str = "tiny",
    explainer: str = "lime",
    trigger: str | None = None,
    results: str | Path = "results",
    dice_budget: float = DEFAULT_DICE_BUDGET,
    force: bool = False,
    null_seeds: int | None = None,
    null_models=None,
    null_level: float = DEFAULT_LEVEL,
    data_dir: str | None = None,
    dataset_options: dict | None = None,
    device: str = "cpu",
    threads: int | None = None,
    executor: str = "local",
    workers: int | None = None,
    scheduler: str | None = None,
    log=print,
) -> Outcome:
    """Embed each watermark, attack it at each strength, verify before/after against null models.

    ``model``, ``dataset``, ``seed``, ``preset`` and ``trigger`` take one value
    or a comma-separated list (a grid: every combination); ``attack`` and
    ``explainer`` a name, a comma-separated list or ``all``. ``trigger``
    overrides every watermark's default trigger family (e.g. "text").
    ``data_dir`` is the downloaded folder of a folder dataset (``kvasir``, ...)
    and ``dataset_options`` its options (e.g. ``{"target": "cup"}``). Each
    explainer gets its own cells (the attacked models are shared between them).
    Every verdict is calibrated against a population of clean models
    (``harness.nulls``: per preset, or ``null_seeds`` seeds of each of
    ``null_models``) at false-accusation level ``null_level``.
    Cells whose record already exists (same spec, same harness version) are not
    recomputed unless ``force``; cells that failed are retried. Returns the
    records of every requested cell; failed cells carry ``status="error"``.
    """
    from harness.grid import Grid, run_grid

    def axis(value):
        if value is None:
            return [None]
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()] or [value]
        return list(value) if isinstance(value, (list, tuple)) else [value]

    grid = Grid(watermarks=list(watermarks), models=axis(model), datasets=axis(dataset), attacks=[attack],
                strengths=None if strengths is None else list(strengths), seeds=[int(s) for s in axis(seed)],
                presets=axis(preset), explainers=[explainer], triggers=axis(trigger), results=str(results),
                dice_budget=dice_budget, null_seeds=null_seeds,
                null_models=None if null_models is None else list(null_models), null_level=null_level,
                data_dir=data_dir, dataset_options=dict(dataset_options or {}), device=device, threads=threads,
                force=force)
    out = run_grid(grid, executor=executor, workers=workers, scheduler=scheduler, log=log)
    return Outcome(out.records, out.keys, out.checkpoints, out.leaderboard, out.failed)


def _scores_before(wm, marked, clean, null, key: Key, splits, preset: Preset, explainer: str, seed: int) -> dict:
    """Everything measured once per watermark, before any attack."""
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
    return metrics
