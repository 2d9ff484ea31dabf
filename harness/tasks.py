"""How a grid's work is done: one function per task kind, and the artifacts they share.

Every task function takes plain, picklable arguments (a Dask worker runs it in
another process), rebuilds what it needs from the content-addressed cache, and
seeds itself from the cell, never from what ran before it. ``deps`` maps each
dependency's task key to its ``Done``/``Failed``; a cells task records every
cell it owns, failed ones with ``status=error`` and the reason.

The tasks of one setting (model x dataset x preset x seed):

  null member k (one task each)  clean reference model
          \\                        |
           +--> mark (watermark x trigger): embed, key, calibrate on the nulls
                    |
                    +--> before (mark x explainer): ``measure.scores_before``
                                 |
  cells (attack x strength): every mark and explainer of the setting; ``measure.scores_after``
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from harness import measure, progress
from harness.cache import ArtifactCache
from harness.calibration import CALIBRATION_FORMAT, DEFAULT_LEVEL
from harness.cell import CellSpec, Setting
from harness.checkpoints import export_checkpoint
from harness.device import to_device
from harness.executors import failure_reason, upstream_failure
from harness.io import spec_hash, weights_hash
from harness.presets import get_preset
from harness.records import RUNS_DIR, RunRecord, now
from harness.registry import DATASETS, EXPLAINERS, MODELS, find_watermark, make_attack, plugin_version
from harness.segmenter import build_model
from harness.training import recipe_key, seed_everything
from harness.watermark import Key

# Per process: a worker that runs several tasks of one setting loads its data and
# models once. Keys are the plain settings, so nothing leaks between settings.
_MEMO: dict = {}


@dataclass(frozen=True)
class Context:
    """Plain, picklable options every task needs; rebuilt in each worker process."""

    results: str
    device: str = "cpu"
    threads: int | None = None  # torch threads per task (executors apply it)
    null_seeds: int | None = None  # K, the calibrating nulls; None: the preset's
    null_level: float = DEFAULT_LEVEL
    attacker_images: int | None = None  # the thief's image count (None: the preset's attacker split)
    same_data_innocents: int = 0  # innocents trained on the owner's own images (validated by the grid)
    explainers: tuple = ()  # the run's; a key calibrated per explainer (StealthMark-QR's) is calibrated for these
    command: str = ""


@dataclass(frozen=True)
class Mark:
    """One embedded model: a watermark (with a trigger) in one setting."""

    setting: Setting
    watermark: str
    trigger: str | None  # None: the watermark's own default

    def build(self):
        cls = find_watermark(self.watermark)
        return cls() if self.trigger is None else cls(trigger=self.trigger)

    @property
    def trigger_name(self) -> str:
        return self.build().trigger.registered_name

    @property
    def stem(self) -> str:
        s = self.setting
        data = dataset_label(s).replace(":", "-").replace("[", "-").replace("]", "").replace("=", "-")
        return f"{self.watermark}-{self.trigger_name}-{s.model}-{data}-{s.preset}-seed{s.seed}"


def nulls_label(ctx: Context, setting: Setting) -> str:
    spec, _ = _population(ctx, setting)
    same = f" + {int(ctx.same_data_innocents)} same-data" if ctx.same_data_innocents else ""  # 5.0 in YAML is 5
    return f"{spec.label} @ {ctx.null_level:g}{same}"


def cells_of(mark: Mark, attacks, explainers, ctx: Context) -> list[CellSpec]:
    """The mark's CellSpecs in leaderboard order: attack, strength, explainer."""
    wm = mark.build()
    s = mark.setting
    label, mark_id = nulls_label(ctx, s), spec_hash(wm.spec())
    common = (("model", plugin_version(MODELS.get(s.model))), ("dataset", plugin_version(DATASETS.get(s.dataset))),
              ("trigger", plugin_version(wm.trigger)))
    return [CellSpec(mark.watermark, s.model, dataset_label(s), attack.label, strength, s.seed, s.preset,
                     explainer, wm.trigger.registered_name, label, mark_id, spec_hash(attack.spec()),
                     (*common, ("explainer", plugin_version(EXPLAINERS.get(explainer)))), ctx.attacker_images)
            for attack, sweep in attacks for strength in sweep for explainer in explainers]


# -- loading what other tasks made -------------------------------------------------


def _cache(ctx: Context) -> ArtifactCache:
    return ArtifactCache(Path(ctx.results) / "cache")


def splits_of(setting: Setting):
    from harness.data import make_splits

    key = ("splits", setting)
    if key not in _MEMO:
        _MEMO[key] = make_splits(setting.dataset, get_preset(setting.preset), setting.seed, root=setting.data_dir,
                                 options=dict(setting.dataset_options))
    return _MEMO[key]


def data_fingerprint(setting: Setting) -> str:
    """What cache keys name: the dataset with its generator version, options, or files on disk."""
    from harness.data import dataset_fingerprint

    return dataset_fingerprint(setting.dataset, setting.data_dir, dict(setting.dataset_options))


def dataset_label(setting: Setting) -> str:
    """What records and the leaderboard name: ``kvasir:<hash of the files>`` for a folder, so two
    copies never share a row; ``synthetic-fundus[target=cup]`` for a procedural set with options."""
    if setting.data_dir is not None:
        return data_fingerprint(setting)
    options = ",".join(f"{k}={v}" for k, v in setting.dataset_options)
    return setting.dataset + (f"[{options}]" if options else "")


def _population(ctx: Context, setting: Setting):
    from harness.nulls import members, population_spec

    spec = population_spec(setting.preset, setting.model, ctx.null_seeds)
    return spec, members(spec, setting.seed)


def null_models(ctx: Context, setting: Setting) -> dict:
    """Every calibration member (the suspect's architecture), name -> model on the run's device."""
    from harness.nulls import train_null

    _, chosen = _population(ctx, setting)
    out = {}
    for member in chosen:
        key = ("null", ctx.results, ctx.device, setting, member)
        if key not in _MEMO:
            _MEMO[key] = to_device(train_null(_cache(ctx), member, setting.dataset, get_preset(setting.preset),
                                              device=ctx.device, root=setting.data_dir,
                                              options=dict(setting.dataset_options), split_seed=setting.seed),
                                   ctx.device)
        out[member.name] = _MEMO[key]
    return out


def same_data_population(ctx: Context, setting: Setting) -> list:
    from harness.nulls import same_data_members

    return same_data_members(setting.model, setting.seed, int(ctx.same_data_innocents))


def same_data_models(ctx: Context, setting: Setting) -> dict | None:
    """The innocents trained on the owner's own images, name -> model; None when the run asks for none."""
    from harness.nulls import train_same_data

    if not ctx.same_data_innocents:
        return None
    out = {}
    for member in same_data_population(ctx, setting):
        key = ("same-data", ctx.results, ctx.device, setting, member)
        if key not in _MEMO:
            _MEMO[key] = to_device(train_same_data(_cache(ctx), member, data_fingerprint(setting),
                                                   get_preset(setting.preset), splits_of(setting).owner_train,
                                                   setting.seed, device=ctx.device), ctx.device)
        out[member.name] = _MEMO[key]
    return out


def clean_model(ctx: Context, setting: Setting):
    from harness.nulls import train_clean

    key = ("clean", ctx.results, ctx.device, setting)
    if key not in _MEMO:
        preset = get_preset(setting.preset)
        _MEMO[key] = to_device(train_clean(_cache(ctx), setting.model, data_fingerprint(setting), preset, setting.seed,
                                           splits_of(setting).owner_train, "clean", log=None, device=ctx.device),
                               ctx.device)
    return _MEMO[key]


def embedded_model_and_key(cache: ArtifactCache, wm, model: str, dataset: str, preset, seed: int, splits,
                           nulls: dict, null_level: float = DEFAULT_LEVEL, device: str = "cpu",
                           null_overlap: float | None = None, explainers: tuple = ()):
    """The watermarked model (on ``device``) and the owner's key, calibrated against ``nulls`` (both cached).
    ``null_overlap``: on a folder dataset, the share of the nulls' training images shared between them
    (``harness.data.null_overlap``); the key records it. ``explainers``: for a watermark whose verdict is an
    explanation (``calibrates_per_explainer``), the explainers its key is calibrated for (default every
    registered one: 19 nulls x 7 explainers is minutes, so a run calibrates only the ones it reads with)."""
    per_explainer = bool(explainers) and getattr(wm, "calibrates_per_explainer", False)
    wm_spec = {"kind": "watermarked", "watermark": wm.spec(), "model": model,
               "model_version": plugin_version(MODELS.get(model)), "dataset": dataset,
               "preset": preset.as_dict(), "seed": seed, **recipe_key()}
    if wm.modifies_model:
        seed_everything(seed)
        marked, _ = cache.model("watermarked", wm_spec, build_model(model, preset.name),
                                lambda m: wm.embed(to_device(m, device), splits, preset, seed))
    else:  # a fingerprint: the owner's model is the clean reference itself (the same cache entry)
        from harness.nulls import train_clean

        marked = wm.embed(train_clean(cache, model, dataset, preset, seed, splits.owner_train, "clean",
                                      device=device), splits, preset, seed)
    marked = to_device(marked, device)
    key_spec = {**wm_spec, "null_population": {"members": list(nulls), "level": null_level, "dataset": dataset},
                "calibration": CALIBRATION_FORMAT}
    if null_overlap is not None:
        key_spec["null_data_overlap"] = null_overlap
    scope = {"explainers": sorted(explainers)} if per_explainer else {}
    key_spec.update(scope)

    def calibrated_key():
        key = wm.calibrate(wm.make_key(marked, splits, preset, seed), nulls, null_level, **scope)
        if null_overlap is not None:
            key.meta["null_data_overlap"] = null_overlap
        return key

    return marked, cache.file("keys", key_spec, calibrated_key, Key.load)


def marked_model_and_key(ctx: Context, mark: Mark):
    key = ("mark", ctx.results, ctx.device, mark, ctx.null_seeds, ctx.null_level)
    if key not in _MEMO:
        s = mark.setting
        overlap = None
        if s.data_dir is not None:  # a folder: its nulls may share images (harness.data)
            from harness.data import null_overlap

            _, chosen = _population(ctx, s)
            overlap = null_overlap(s.dataset, get_preset(s.preset), [(m.seed, m.index) for m in chosen],
                                   root=s.data_dir, options=dict(s.dataset_options), split_seed=s.seed)
        _MEMO[key] = embedded_model_and_key(_cache(ctx), mark.build(), s.model, data_fingerprint(s),
                                            get_preset(s.preset), s.seed, splits_of(s), null_models(ctx, s),
                                            ctx.null_level, device=ctx.device, null_overlap=overlap,
                                            explainers=ctx.explainers)
    return _MEMO[key]


def first_null(ctx: Context, setting: Setting) -> str:
    """The null checkpoint a run exports: the population's first member."""
    _, chosen = _population(ctx, setting)
    return chosen[0].name


# -- the tasks ----------------------------------------------------------------------


def _model_line(what: str, model, setting: Setting, since: float) -> None:
    """The progress line of a finished model: its Dice on the test split, and the time it took (or loaded in)."""
    from harness import scoring
    from harness.segmenter import predict_proba

    seconds = time.perf_counter() - since
    test = splits_of(setting).test
    dice = scoring.summarize(scoring.dice(predict_proba(model, test.images, get_preset(setting.preset).eval_batch_size),
                                          test.masks))
    progress.model_finished(f"{what}: Dice {dice:.3f} on {len(test)} test images, {seconds:.0f} s")


def train_null_member(ctx: Context, setting: Setting, member, deps: dict) -> str:
    """Train (or load) one null model; the first is also exported, as the null checkpoint ``run`` reports."""
    from harness.nulls import train_null

    tic = time.perf_counter()
    model = train_null(_cache(ctx), member, setting.dataset, get_preset(setting.preset), log=None,
                       device=ctx.device, root=setting.data_dir, options=dict(setting.dataset_options),
                       split_seed=setting.seed)
    _, chosen = _population(ctx, setting)
    _model_line(f"null {chosen.index(member) + 1}/{len(chosen)} {member.name}", model, setting, tic)
    if chosen[0] == member:
        export_checkpoint(model, Path(ctx.results) / "checkpoints" / f"null-{setting.preset}-{member.name}.pt")
    return member.name


def train_same_data_member(ctx: Context, setting: Setting, member, deps: dict) -> str:
    """Train (or load) one innocent model on the owner's own training images."""
    tic = time.perf_counter()
    model = same_data_models(ctx, setting)[member.name]
    _model_line(f"same-data innocent {member.name}", model, setting, tic)
    return member.name


def train_clean_reference(ctx: Context, setting: Setting, deps: dict) -> str:
    tic = time.perf_counter()
    _model_line(f"clean {setting.model}", clean_model(ctx, setting), setting, tic)
    return setting.label


def embed_mark(ctx: Context, mark: Mark, null_keys: tuple, deps: dict) -> str:
    """Embed, key and calibrate; export the owner's key and the watermarked checkpoint."""
    tic = time.perf_counter()
    marked, owner_key = marked_model_and_key(ctx, mark)
    _model_line(f"{mark.watermark} {mark.setting.model} (embedded, keyed, calibrated)", marked, mark.setting, tic)
    results = Path(ctx.results)
    owner_key.save(results / "keys" / f"{mark.stem}.npz")
    export_checkpoint(marked, results / "checkpoints" / f"{mark.stem}.pt")
    return mark.stem


def scores_before(ctx: Context, mark: Mark, explainer: str, deps: dict) -> dict:
    """Everything measured once per mark and explainer, before any attack."""
    s = mark.setting
    marked, owner_key = marked_model_and_key(ctx, mark)
    seed_everything(s.seed)
    return measure.scores_before(mark.build(), marked, clean_model(ctx, s), null_models(ctx, s), owner_key, splits_of(s),
                                 get_preset(s.preset), explainer, s.seed, same_data=same_data_models(ctx, s))


def _record_spec(cell: CellSpec, role: str, family: str) -> dict:
    return {**asdict(cell), "role": role, "attack_family": family}


def record_failures(ctx: Context, cells, message: str, skip_existing: bool = False) -> None:
    for cell in cells:
        if skip_existing and (Path(ctx.results) / RUNS_DIR / f"{cell.run_id}.json").is_file():
            continue
        role = find_watermark(cell.watermark).role
        family = make_attack(cell.attack).family
        RunRecord(cell.run_id, _record_spec(cell, role, family), {}, status="error", error=message,
                  started=now(), command=ctx.command).write(ctx.results)


def attack_cells(ctx: Context, setting: Setting, marks: tuple, attack_name: str, strength: float, cells: tuple,
                 deps: dict) -> dict:
    """One attack at one strength on every mark of a setting: one record per (mark, explainer) cell.

    The attacked nulls (every null for a cheap attack, the first ``TRAINING_ATTACK_NULLS`` for one
    that trains, each attacked with the suspect's seed) are shared by the marks; each attacked model
    by the explainers.
    """
    from harness.attack import AttackerKit
    from harness.data import thief_split

    written = {"ok": 0, "error": 0}
    shared = upstream_failure("cells", [r for k, r in deps.items() if not k.startswith(("mark:", "before:"))])
    if shared is not None:
        record_failures(ctx, cells, shared.message)
        written["error"] += len(cells)
        return written

    preset = get_preset(setting.preset)
    splits = splits_of(setting)
    nulls = null_models(ctx, setting)
    kit = AttackerKit(thief_split(splits, setting.dataset, preset, setting.seed, ctx.attacker_images,
                                  root=setting.data_dir, options=dict(setting.dataset_options)),
                      setting.model, preset, null_models=nulls)
    attack = make_attack(attack_name)
    same_data = same_data_models(ctx, setting)
    attacked_nulls = attacked_same_data = None
    attacked_by_weights: dict = {}  # marks that share a model (every fingerprint's is the clean one) share its attack
    for mark in marks:
        mine = [c for c in cells if c.watermark == mark.watermark and c.trigger == mark.trigger_name]
        failed = upstream_failure("cells", [r for k, r in deps.items() if k.split(":")[1] == mark.stem])
        if failed is not None:
            record_failures(ctx, mine, failed.message)
            written["error"] += len(mine)
            continue
        started = time.time()
        try:
            wm = mark.build()
            marked, owner_key = marked_model_and_key(ctx, mark)
            weights = weights_hash(marked)
            if weights not in attacked_by_weights:
                seed_everything(setting.seed)
                tic = time.perf_counter()
                attacked = attack.apply(marked, kit, strength, setting.seed)
                seconds = time.perf_counter() - tic
                seed_everything(setting.seed)
                attacked_by_weights[weights] = (attacked, seconds, attack.report(attacked, kit, setting.seed))
            attacked, seconds, report = attacked_by_weights[weights]
            if attacked_nulls is None:
                attacked_nulls = attack_population(attack, nulls, kit, strength, setting.seed)
                if same_data is not None:
                    attacked_same_data = attack_population(attack, same_data, kit, strength, setting.seed)
        except Exception as exc:
            record_failures(ctx, mine, failure_reason(exc))
            written["error"] += len(mine)
            continue
        for cell in mine:
            try:
                before = deps[f"before:{mark.stem}:{cell.explainer}"].value
                metrics = {**before, **measure.scores_after(wm, attack, attacked, attacked_nulls, owner_key, splits,
                                                            preset, cell.explainer, setting.seed,
                                                            before["dice_watermarked"], seconds, report,
                                                            attack.budget(kit, strength), attacked_same_data)}
                RunRecord(cell.run_id, _record_spec(cell, wm.role, attack.family), metrics, started=now(),
                          duration_s=time.time() - started, device=ctx.device, command=ctx.command).write(ctx.results)
                written["ok"] += 1
            except Exception as exc:
                record_failures(ctx, [cell], failure_reason(exc))
                written["error"] += 1
            started = time.time()
    return written


def attack_population(attack, nulls: dict, kit, strength: float, seed: int) -> dict:
    """The nulls under the same attack, strength and seed as the suspect: all of them for a cheap
    attack, the first ``TRAINING_ATTACK_NULLS`` for one that trains."""
    from harness.nulls import TRAINING_ATTACK_NULLS

    chosen = list(nulls)[:TRAINING_ATTACK_NULLS] if attack.trains else list(nulls)
    out = {}
    for name in chosen:
        seed_everything(seed)
        out[name] = attack.apply(nulls[name], kit, strength, seed)
    return out
