"""How often does an owner's key accuse an innocent model? A bound over models that set no threshold.

A verdict's own p-value says how unusual a suspect is among the K nulls that
calibrated it; it cannot say how often the *rule* accuses innocent models,
because those K nulls set the threshold. ``certify`` measures that rate on
models that played no part in any threshold, and bounds it:

* **held-out nulls** of each architecture (members K, K+1, ... of the
  population: own seeds, own images);
* **other owners' marked models**: owner B embeds the same scheme (with the
  paper's default trigger, and with a trigger of their own) into their own
  model, with their own seed, payload and images. B copied nothing from A.

Each innocent model is queried with owner A's key of its architecture as it
is, and after each of a few removal attacks, every attacked verdict judged
against A's nulls under the same attack (``tasks.attack_population``). A model
counts as accused if any of its versions verifies. The rate is bounded by a
one-sided Clopper-Pearson 95% upper bound over distinct models, never over
answers or (key, model) pairs: answers of one model are not independent.

The same models answer the two-owner question (``owners_table``): does A's key
verify B's model, and B's key A's, with the default trigger, with B's own
trigger, and with a trigger keyed by each owner's secret
(``harness/triggers/owner_keyed.py``)?
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness import tasks
from harness.attack import AttackerKit
from harness.cache import ArtifactCache
from harness.calibration import DEFAULT_LEVEL, clopper_pearson_upper, format_null_p
from harness.cell import HARNESS_VERSION, Setting
from harness.data import make_splits
from harness.errors import HarnessError
from harness.executors import Failed, Task, run_local
from harness.io import atomic_write_bytes, check_writable
from harness.nulls import members, null_population, population_spec, train_null
from harness.presets import get_preset
from harness.records import now, versions
from harness.registry import ATTACKS, MODELS, TRIGGERS, find_watermark
from harness.training import DEFAULT_THREADS, planned_steps, seed_everything, torch_threads
from harness.verifiers import DEFAULT_VERIFIER
from harness.watermark import stored_calibration

DEFAULT_MODELS = ("basic-unet", "unet", "attention-unet")
DEFAULT_WATERMARKS = ("stealthmark", "badnets")
# A cheap weight-space attack, a serving-side input transform, and the last-layer retraining
# that once made a null's ASR 1.0: each is applied to every innocent model and to A's nulls.
DEFAULT_ATTACKS = (("prune", 0.3), ("jpeg", 50.0), ("rtll", 5.0))
OWNER_B_SEED_OFFSET = 1000  # B's seed: far from A's run seed and from every null member's seed
OWN_TRIGGER = "noise"  # the trigger B picks when not the paper's default
PAYLOADS = {"A": "HOSPITAL-A:2026", "B": "HOSPITAL-B:2026"}
SECRETS = {"A": "owner-a-secret", "B": "owner-b-secret"}
CERTIFICATION_DIR = "certification"


def certification_dir(verifier: str = DEFAULT_VERIFIER) -> str:
    """Where a verifier's tables go: ``certification/`` for the detector, ``certification-<verifier>/`` else."""
    return CERTIFICATION_DIR if verifier == DEFAULT_VERIFIER else f"{CERTIFICATION_DIR}-{verifier}"


@dataclass(frozen=True)
class Owner:
    """One owner's mark: who, which scheme, which trigger (``owner-keyed`` takes the owner's secret)."""

    owner: str  # "A" (the owner whose keys are certified) or "B" (another hospital)
    watermark: str
    trigger: str
    seed: int

    @property
    def label(self) -> str:
        return f"{self.owner}:{self.watermark}/{self.trigger}"

    def build(self):
        cls = find_watermark(self.watermark)
        params = {"payload": PAYLOADS[self.owner]} if self.watermark == "stealthmark" else {}
        wm = cls(trigger="patch", **params)
        wm.trigger = (TRIGGERS.get(self.trigger)(secret=SECRETS[self.owner]) if self.trigger == "owner-keyed"
                      else TRIGGERS.get(self.trigger)())
        return wm


@dataclass
class Certification:
    rows: list[dict]  # one per (key, innocent model)
    summary: list[dict]  # one per scheme: models, accused, bound
    owners: list[dict]  # the two-owner table
    seconds: dict = field(default_factory=dict)  # wall time of training and of verifying


# -- training: one task per model, on the local executor's worker processes -------------------------


@dataclass(frozen=True)
class _Context:
    results: str
    threads: int | None = DEFAULT_THREADS
    null_seeds: int | None = None
    null_level: float = DEFAULT_LEVEL
    device: str = "cpu"
    command: str = "harness certify"


def train_member(ctx, setting: Setting, member, deps: dict) -> str:
    train_null(ArtifactCache(Path(ctx.results) / "cache"), member, setting.dataset, get_preset(setting.preset))
    return member.name


def embed_owner_mark(ctx, setting: Setting, owner: Owner, deps: dict) -> str:
    marked_and_key(ctx, setting, owner)
    return owner.label


def _calibrating(ctx, setting: Setting) -> dict:
    spec = population_spec(setting.preset, setting.model, ctx.null_seeds)
    return null_population(ArtifactCache(Path(ctx.results) / "cache"), setting.dataset, get_preset(setting.preset),
                           setting.seed, spec, log=lambda m: None)


def marked_and_key(ctx, setting: Setting, owner: Owner):
    """Owner's model (own seed, own images) and key, calibrated on the architecture's public nulls."""
    preset = get_preset(setting.preset)
    splits = make_splits(setting.dataset, preset, owner.seed)
    return tasks.embedded_model_and_key(ArtifactCache(Path(ctx.results) / "cache"), owner.build(), setting.model,
                                        setting.dataset, preset, owner.seed, splits, _calibrating(ctx, setting),
                                        ctx.null_level)


def owners_of(model: str, two_owner_model: str, watermarks, seed: int) -> list[Owner]:
    """A's default marks in every architecture; in the two-owner architecture also A's owner-keyed
    marks and B's three (default trigger, own trigger, owner-keyed)."""
    out = [Owner("A", w, find_watermark(w)().trigger.registered_name, seed) for w in watermarks]
    if model == two_owner_model:
        b = seed + OWNER_B_SEED_OFFSET
        for w in watermarks:
            default = find_watermark(w)().trigger.registered_name
            out += [Owner("A", w, "owner-keyed", seed), Owner("B", w, default, b), Owner("B", w, OWN_TRIGGER, b),
                    Owner("B", w, "owner-keyed", b)]
    return out


def plan(ctx, settings: list[Setting], held_out: int, two_owner_model: str, watermarks) -> dict[str, Task]:
    out: dict[str, Task] = {}
    for s in settings:
        spec = population_spec(s.preset, s.model, ctx.null_seeds)
        steps = planned_steps(get_preset(s.preset))
        calibrating = []
        for member in members(spec, s.seed):
            key = f"null:{s.label}:{member.name}"
            calibrating.append(key)
            out[key] = Task(key, "null", (), train_member, (s, member), label=f"null {member.name}", steps=steps)
        for member in members(spec, s.seed, held_out):
            key = f"held-out:{s.label}:{member.name}"
            out[key] = Task(key, "null", (), train_member, (s, member), label=f"held-out {member.name}",
                            steps=steps)
        for owner in owners_of(s.model, two_owner_model, watermarks, s.seed):
            key = f"mark:{s.label}:{owner.label}"
            out[key] = Task(key, "mark", tuple(calibrating), embed_owner_mark, (s, owner),
                            label=f"embed {owner.label} {s.model}", steps=steps)
    return out


# -- verifying ---------------------------------------------------------------------------------------


def _verdict(wm, model, key, calibration=None, verifier: str = DEFAULT_VERIFIER) -> dict:
    r = wm.verify(model, key, certify=False, calibration=calibration, verifier=verifier)
    return {"verified": bool(r.verified), "score": r.score, "p_paired": r.p_value,
            "p_null_empirical": r.p_value_null_empirical, "p_null_parametric": r.p_value_null_parametric,
            "nulls": r.null_count}


def certify(models=DEFAULT_MODELS, watermarks=DEFAULT_WATERMARKS, attacks=DEFAULT_ATTACKS, held_out: int = 18,
            dataset: str = "synthetic-polyp", preset: str = "tiny", seed: int = 0, results="results",
            null_seeds: int | None = None, workers: int | None = None, verifier: str = DEFAULT_VERIFIER,
            log=print) -> Certification:
    """Train (or load) every model, query each innocent one with A's keys under ``verifier``, write and
    return the tables."""
    models, watermarks = list(models), list(watermarks)
    for name in models:
        MODELS.get(name)
    for name in watermarks:
        find_watermark(name)().check_verifier(verifier)
    configured = []
    for name, strength in attacks:
        attack = ATTACKS.get(name)()
        configured.append((attack, attack.check_strength(float(strength))))
    get_preset(preset)
    if held_out < 1:
        raise HarnessError(f"held-out models must be at least 1, got {held_out}")
    check_writable(results)
    ctx = _Context(results=str(results), null_seeds=null_seeds)
    settings = [Setting(m, dataset, preset, seed) for m in models]
    two_owner_model = models[0]

    tic = time.perf_counter()
    done = run_local(plan(ctx, settings, held_out, two_owner_model, watermarks), ctx, workers=workers, log=log)
    failed = [r for r in done.values() if isinstance(r, Failed)]
    if failed:
        raise HarnessError(f"certification: {len(failed)} models failed to train; first: {failed[0].message}")
    trained_s = time.perf_counter() - tic

    tic = time.perf_counter()
    rows, marks = [], {}
    with torch_threads(DEFAULT_THREADS):
        for s in settings:
            rows += _verify_setting(ctx, s, held_out, two_owner_model, watermarks, configured, marks, verifier, log)
    owners = owners_table(ctx, settings[0], watermarks, marks, verifier)
    verified_s = time.perf_counter() - tic
    summary = summarize(rows, watermarks, [f"{a.registered_name} {x:g}" for a, x in configured])
    out = Certification(rows, summary, owners, {"train": trained_s, "verify": verified_s})
    write(out, Path(results) / certification_dir(verifier), dict(models=models, watermarks=watermarks, held_out=held_out,
                                                         attacks=[[a.registered_name, x] for a, x in configured],
                                                         dataset=dataset, preset=preset, seed=seed,
                                                         null_seeds=null_seeds, verifier=verifier))
    return out


def _verify_setting(ctx, s: Setting, held_out: int, two_owner_model: str, watermarks, configured, marks: dict,
                    verifier: str, log) -> list[dict]:
    cache = ArtifactCache(Path(ctx.results) / "cache")
    preset = get_preset(s.preset)
    spec = population_spec(s.preset, s.model, ctx.null_seeds)
    nulls = _calibrating(ctx, s)
    innocents = {f"held-out {name}": (model, "held-out null")
                 for name, model in null_population(cache, s.dataset, preset, s.seed, spec, held_out=held_out,
                                                    log=lambda m: None).items()}
    for owner in owners_of(s.model, two_owner_model, watermarks, s.seed):
        marks[(s.model, owner)] = marked_and_key(ctx, s, owner)
        if owner.owner == "B":
            innocents[owner.label] = (marks[(s.model, owner)][0], "other owner's mark")
    kit = AttackerKit(make_splits(s.dataset, preset, s.seed).attacker, s.model, preset, null_models=nulls)
    attacked_nulls = {f"{a.registered_name} {x:g}": tasks.attack_population(a, nulls, kit, x, s.seed)
                      for a, x in configured}
    attacked_innocents = {}
    for name, (model, _) in innocents.items():
        for attack, strength in configured:
            seed_everything(s.seed)
            attacked_innocents[(name, f"{attack.registered_name} {strength:g}")] = attack.apply(model, kit, strength,
                                                                                              s.seed)
    rows = []
    for watermark in watermarks:
        owner = Owner("A", watermark, find_watermark(watermark)().trigger.registered_name, s.seed)
        wm = owner.build()
        marked, key = marks[(s.model, owner)]
        calibrations = {label: wm.null_calibration(key, population, stored_calibration(key, verifier)["level"],
                                                   verifier=verifier)
                        for label, population in attacked_nulls.items()}
        for name, (model, kind) in innocents.items():
            row = {"scheme": watermark, "key": owner.label, "model": s.model, "innocent": name, "kind": kind,
                   **{f"clean_{k}": v for k, v in _verdict(wm, model, key, verifier=verifier).items()}}
            for label, calibration in calibrations.items():
                row[f"{label}_verified"] = _verdict(wm, attacked_innocents[(name, label)], key,
                                                    calibration, verifier)["verified"]
            row["accused"] = row["clean_verified"] or any(row[f"{label}_verified"] for label in calibrations)
            rows.append(row)
        accused = sum(r["accused"] for r in rows if r["key"] == owner.label)
        log(f"certify: {owner.label} key on {s.model}: {accused} of {len(innocents)} innocent models accused")
    return rows


def summarize(rows: list[dict], watermarks, attack_labels: list[str]) -> list[dict]:
    """Per scheme: distinct innocent models, how many were accused (clean, per attack, any), the bound."""
    out = []
    for watermark in watermarks:
        mine = [r for r in rows if r["scheme"] == watermark]
        accused = sum(r["accused"] for r in mine)
        out.append({"scheme": watermark, "models": len(mine),
                    "architectures": len({r["model"] for r in mine}),
                    "held_out_nulls": sum(r["kind"] == "held-out null" for r in mine),
                    "other_owners_marks": sum(r["kind"] != "held-out null" for r in mine),
                    "accused_clean": sum(r["clean_verified"] for r in mine),
                    **{f"accused_{label}": sum(r[f"{label}_verified"] for r in mine) for label in attack_labels},
                    "accused_any": accused,
                    "false_accusation_upper_95": clopper_pearson_upper(accused, len(mine))})
    return out


def owners_table(ctx, setting: Setting, watermarks, marks: dict, verifier: str = DEFAULT_VERIFIER) -> list[dict]:
    """Each owner's key on the other owner's model: the paper's default trigger for both, B's own
    trigger, and a trigger keyed by each owner's secret."""
    out = []
    for watermark in watermarks:
        default = find_watermark(watermark)().trigger.registered_name
        for case, a_trigger, b_trigger in (("same default trigger", default, default),
                                           ("B's own trigger", default, OWN_TRIGGER),
                                           ("owner-keyed triggers", "owner-keyed", "owner-keyed")):
            a = Owner("A", watermark, a_trigger, setting.seed)
            b = Owner("B", watermark, b_trigger, setting.seed + OWNER_B_SEED_OFFSET)
            (a_model, a_key), (b_model, b_key) = marks[(setting.model, a)], marks[(setting.model, b)]
            row = {"scheme": watermark, "case": case, "model": setting.model, "A": a.label, "B": b.label}
            queries = (("A_key_on_A", a, a_model, a_key), ("A_key_on_B", a, b_model, a_key),
                       ("B_key_on_B", b, b_model, b_key), ("B_key_on_A", b, a_model, b_key))
            for who, key_owner, model, key in queries:
                v = _verdict(key_owner.build(), model, key, verifier=verifier)
                row.update({f"{who}_verified": v["verified"], f"{who}_score": v["score"],
                            f"{who}_p_null": format_null_p(v["p_null_empirical"], v["p_null_parametric"],
                                                           v["nulls"] or 0)})
            out.append(row)
    return out


# -- writing and showing -------------------------------------------------------------------------------


def _csv(table: list[dict]) -> bytes:
    buffer = io.StringIO()
    if table:
        writer = csv.DictWriter(buffer, fieldnames=list(table[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(table)
    return buffer.getvalue().encode()


def write(result: Certification, folder: Path, spec: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    record = {"spec": spec, "harness": HARNESS_VERSION, "finished": now(), "versions": versions(),
              "seconds": result.seconds, "summary": result.summary, "owners": result.owners, "rows": result.rows}
    atomic_write_bytes(folder / "certification.json",
                       lambda h: h.write(json.dumps(record, indent=1, sort_keys=True, default=float).encode()))
    for name, table in (("summary.csv", result.summary), ("owners.csv", result.owners), ("models.csv", result.rows)):
        atomic_write_bytes(folder / name, lambda h, t=table: h.write(_csv(t)))


def summary_markdown(result: Certification) -> str:
    lines = ["| scheme | innocent models | architectures | held-out nulls | other owners' marks | accused clean | "
             "accused after an attack | accused (any) | 95% upper bound |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in result.summary:
        attacked = ", ".join(f"{k[len('accused_'):]}: {v}" for k, v in s.items()
                             if k.startswith("accused_") and k not in ("accused_clean", "accused_any"))
        lines.append(f"| {s['scheme']} | {s['models']} | {s['architectures']} | {s['held_out_nulls']} | "
                     f"{s['other_owners_marks']} | {s['accused_clean']} | {attacked} | {s['accused_any']} | "
                     f"{s['false_accusation_upper_95']:.3f} |")
    return "\n".join(lines) + "\n"


def owners_markdown(result: Certification) -> str:
    def cell(row, who):
        return f"{'**yes**' if row[who + '_verified'] else 'no'} ({row[who + '_score']:.3g}; p {row[who + '_p_null']})"

    lines = ["| scheme | case | A's key on B's model | B's key on A's model | A's key on A's | B's key on B's |",
             "|---|---|---|---|---|---|"]
    for row in result.owners:
        lines.append(f"| {row['scheme']} | {row['case']} ({row['A']} vs {row['B']}) | {cell(row, 'A_key_on_B')} | "
                     f"{cell(row, 'B_key_on_A')} | {cell(row, 'A_key_on_A')} | {cell(row, 'B_key_on_B')} |")
    return "\n".join(lines) + "\n"
