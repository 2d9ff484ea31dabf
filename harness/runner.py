"""``benchmark()``: the importable entry point behind ``python -m harness run``.

One cell = (watermark, model, dataset, attack, strength, seed, preset, explainer).
Its data flow, top to bottom in ``benchmark``:

  data splits (owner-train | owner-verify | attacker | test), disjoint, seeded
  -> clean reference model (same data, seed, recipe; no mark)    [cached]
  -> null model (seed+1, images nobody else saw)                  [cached]
  -> watermarked model + owner's key                               [cached]
  -> scores before any attack (utility, harm, stealth, verification, null control)
  -> for each strength: attacked model -> scores after -> RunRecord (JSON)
  -> leaderboard CSV rebuilt from every record

Every name and number is validated before anything is trained or written.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch
from tqdm.auto import tqdm

from harness import scoring
from harness.cache import ArtifactCache, spec_hash
from harness.calibration import CALIBRATION_FORMAT, DEFAULT_LEVEL
from harness.data import Split, make_splits
from harness.errors import HarnessError
from harness.leaderboard import write_leaderboard
from harness.presets import Preset, get_preset
from harness.records import HARNESS_VERSION, RunRecord, load_records
from harness.registry import ATTACKS, DATASETS, EXPLAINERS, MODELS, TRIGGERS, find_watermark
from harness.segmenter import build_model, predict_proba
from harness.attack import AttackerKit
from harness.nulls import null_population, population_spec, same_architecture, train_clean
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


def validate(watermarks, model, dataset, attack, strengths, preset, explainer, trigger):
    """Resolve every name and range up front, so bad input fails before any work or file."""
    wm_classes = [find_watermark(name) for name in watermarks]
    if trigger is not None:
        TRIGGERS.get(trigger)
    MODELS.get(model)
    DATASETS.get(dataset)
    resolve_explainers(explainer)
    attacks = resolve_attacks(attack, strengths)
    if len(set(watermarks)) != len(watermarks):
        raise HarnessError(f"watermark listed twice: {', '.join(watermarks)}")
    return wm_classes, attacks, get_preset(preset)


def embedded_model_and_key(cache: ArtifactCache, wm, model: str, dataset: str, preset: Preset, seed: int,
                           splits, nulls: dict, null_level: float = DEFAULT_LEVEL):
    """The watermarked model and the owner's key, calibrated against ``nulls`` (both cached)."""
    wm_spec = {"kind": "watermarked", "watermark": wm.spec(), "model": model, "dataset": dataset,
               "preset": preset.as_dict(), "seed": seed}
    seed_everything(seed)
    marked, _ = cache.model("watermarked", wm_spec, build_model(model, preset.name),
                            lambda m: wm.embed(m, splits, preset, seed))
    key_spec = {**wm_spec, "null_population": {"members": list(nulls), "level": null_level, "dataset": dataset},
                "calibration": CALIBRATION_FORMAT}
    key = cache.key(key_spec, lambda: wm.calibrate(wm.make_key(marked, splits, preset, seed), nulls, null_level))
    return marked, key


def export_checkpoint(model: torch.nn.Module, path: Path) -> Path:
    """The network's plain state dict, the format ``harness verify --checkpoint`` takes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(model.net.state_dict(), tmp)
    tmp.replace(path)
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
    log=print,
) -> Outcome:
    """Embed each watermark, attack it at each strength, verify before/after against a null model.

    ``trigger`` overrides every watermark's default trigger family (e.g. "text").
    ``explainer`` is a name, a comma-separated list or ``all``: each explainer
    gets its own cells (the attacked models are shared between them).
    Every verdict is calibrated against a population of clean models
    (``harness.nulls``: per preset, or ``null_seeds`` seeds of each of
    ``null_models``) at false-accusation level ``null_level``.
    Cells whose record already exists (same spec, same harness version) are not
    recomputed unless ``force``. Returns the records of every requested cell.
    """
    watermarks = tuple(watermarks)
    explainers = resolve_explainers(explainer)
    wm_classes, attacks, preset_obj = validate(watermarks, model, dataset, attack, strengths,
                                               preset, explainer, trigger)
    if not 0 <= dice_budget <= 1:
        raise HarnessError(f"dice budget must be in [0, 1], got {dice_budget}")
    if not 0 < null_level < 0.5:
        raise HarnessError(f"null level (false-accusation rate) must be in (0, 0.5), got {null_level}")
    nulls_spec = population_spec(preset, null_seeds, null_models)
    nulls_label = f"{nulls_spec.seeds}x {','.join(nulls_spec.models)} @ {null_level:g}"
    results = Path(results)
    cache = ArtifactCache(results / "cache")

    records: list[RunRecord] = []
    keys: dict[str, Path] = {}
    checkpoints: dict[str, Path] = {}
    shared = {}  # data and clean/null models, built only if some cell needs them
    attacked_nulls = {}  # (attack, strength) -> the attacked null model, shared by every watermark

    def shared_artifacts():
        if not shared:
            log(f"data: {dataset} at {preset_obj.image_size}px, seed {seed}")
            shared["splits"] = make_splits(dataset, preset_obj, seed)
            shared["clean"] = train_clean(cache, model, dataset, preset_obj, seed, shared["splits"].owner_train, "clean",
                                          log=log)
            log(f"null population: {nulls_label}")
            shared["nulls"] = null_population(cache, dataset, preset_obj, seed, nulls_spec, log=log)
            # The single null of the null_* columns: the first member with the suspect's architecture.
            first = same_architecture(shared["nulls"], model)
            shared["null"] = shared["nulls"][first]
            checkpoints["null"] = export_checkpoint(
                shared["null"], results / "checkpoints" / f"null-{preset}-{first}.pt")
        return shared

    for name, wm_class in zip(watermarks, wm_classes, strict=True):
        wm = wm_class() if trigger is None else wm_class(trigger=trigger)
        trigger_name = wm.trigger.registered_name
        mark_id = spec_hash(wm.spec())
        plan = [(attack_obj, CellSpec(name, model, dataset, attack_obj.registered_name, s, seed, preset, expl,
                                      trigger_name, nulls_label, mark_id))
                for attack_obj, sweep in attacks for s in sweep for expl in explainers]
        cells = [cell for _, cell in plan]
        stem = f"{name}-{trigger_name}-{model}-{dataset}-{preset}-seed{seed}"
        key_path = results / "keys" / f"{stem}.npz"
        done = {} if force else _finished(results, cells)
        if len(done) == len(cells) and key_path.is_file():
            records += [done[c.run_id] for c in cells]
            keys[name] = key_path
            log(f"{name}: all {len(cells)} cells already recorded (use --force to recompute)")
            continue

        started = time.time()
        art = shared_artifacts()
        splits, clean, null = art["splits"], art["clean"], art["null"]
        marked, key = embedded_model_and_key(cache, wm, model, dataset, preset_obj, seed, splits,
                                             art["nulls"], null_level)
        keys[name] = key.save(key_path)
        checkpoints[name] = export_checkpoint(marked, results / "checkpoints" / f"{stem}.pt")

        before_by_explainer = {}  # explainer -> scores before any attack
        attacked_models = {}  # (attack, strength) -> what the attack produced, shared by the explainers
        kit = AttackerKit(splits.attacker, model, preset_obj, null_models=art["nulls"])
        for attack_obj, cell in tqdm(plan, desc=f"{name} x {attack}", unit="cell", leave=False, dynamic_ncols=True):
            if cell.run_id in done:
                records.append(done[cell.run_id])
                continue
            cell_start = datetime.now(timezone.utc).isoformat(timespec="seconds")
            if cell.explainer not in before_by_explainer:
                before_by_explainer[cell.explainer] = _scores_before(wm, marked, clean, null, key, splits, preset_obj,
                                                                     cell.explainer, seed)
            metrics = dict(before_by_explainer[cell.explainer])
            attacked_cell = (cell.attack, cell.strength)
            if attacked_cell not in attacked_models:
                tic = time.perf_counter()
                attacked = attack_obj.apply(marked, kit, cell.strength, seed)
                seconds = time.perf_counter() - tic
                attacked_models[attacked_cell] = (attacked, seconds, attack_obj.report(attacked, kit, seed),
                                                  utility(attacked, splits.test, preset_obj.eval_batch_size)[0])
            attacked, seconds, report, after = attacked_models[attacked_cell]
            metrics["attack_seconds"] = seconds
            metrics.update(report)
            metrics["dice_attacked"] = after["dice"]
            metrics["auc_attacked"] = after["auc"]
            metrics["attack_dice_drop"] = metrics["dice_watermarked"] - after["dice"]
            result = wm.verify(attacked, key, explainer=cell.explainer, seed=seed)
            metrics.update(verification_metrics(result, "after"))
            null_cell = (cell.attack, cell.strength)
            if null_cell not in attacked_nulls:
                attacked_nulls[null_cell] = attack_obj.apply(null, kit, cell.strength, seed)
            attacked_null = attacked_nulls[null_cell]
            metrics["null_asr_after"] = wm.verify(attacked_null, key, certify=False).asr
            metrics["removed"] = float(not result.verified and metrics["attack_dice_drop"] <= dice_budget)
            spec = {**asdict(cell), "role": wm.role, "attack_family": attack_obj.family}
            record = RunRecord(cell.run_id, spec, metrics, started=cell_start,
                               duration_s=time.time() - started)
            record.write(results)
            records.append(record)
            started = time.time()
    board, _ = write_leaderboard(results)
    return Outcome(records, keys, checkpoints, board)


def _finished(results: Path, cells: list[CellSpec]) -> dict[str, RunRecord]:
    wanted = {c.run_id for c in cells}
    return {r.run_id: r for r in load_records(results) if r.run_id in wanted and r.status == "ok"}


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
