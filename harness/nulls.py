"""Clean models: the owner's clean reference and the population of null models.

A null model is an innocent third party's model: same task, same recipe, its
own seed and its own images (drawn from a range no owner, attacker or test set
touches). Verification is calibrated against a population of them (see
``harness.calibration``), always of the suspect's own architecture: a
population is a function of (architecture, dataset, preset), so a verdict is
never calibrated against a network that is not the suspect's.

Members are numbered k = 0, 1, ...: seed ``seed + 1 + k``, training images
block k. The first K members calibrate; later members (``held_out``) are
never used for a threshold, only to check it.

Same-data innocents (``SameDataMember``) are the hard negative a fingerprint
fears most: trained on the owner's own training images, with seeds of their
own. They are a separate population: a verdict is reported with and without
them (``harness.measure``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from harness.cache import ArtifactCache
from harness.data import dataset_fingerprint, Split, null_training_set
from harness.errors import HarnessError
from harness.presets import Preset
from harness.registry import MODELS, look_up, plugin_version
from harness.segmenter import build_model
from harness.device import to_device
from harness.training import DEFAULT_THREADS, fit, recipe_key, seed_everything, torch_threads

# K per preset: 19 is the fewest whose empirical p-value, 1/20, reaches the 0.05 level, so the
# verdict needs no model of the null scores' shape (harness.calibration; about 24 s per model at
# tiny on 2 cores). smoke and paper-short only check the pipeline: they fall back on the
# parametric bound.
NULL_COUNTS = {"smoke": 4, "tiny": 19, "paper": 19, "paper-short": 3}
# After a training attack (fine-tuning, distillation, overwriting) every null must be retrained
# by the attack too: this many members are attacked; cheap attacks attack them all.
TRAINING_ATTACK_NULLS = 5
MIN_NULLS = 3
# Innocent models trained on the owner's own training images (``--same-data-innocents``): a second
# hospital on the same public dataset. Their seeds lie far from every null's (seed + 1 + k).
SAME_DATA_SEED_OFFSET = 1_000_000_000


@dataclass(frozen=True)
class NullPopulationSpec:
    model: str  # the architecture: the suspect's
    count: int  # K, the calibrating members

    @property
    def label(self) -> str:
        return f"{self.count}x {self.model}"


@dataclass(frozen=True)
class NullMember:
    model: str
    seed: int
    index: int  # which block of null training images

    @property
    def name(self) -> str:
        return f"{self.model}-seed{self.seed}"


@dataclass(frozen=True)
class SameDataMember:
    """An innocent third party trained on exactly the owner's training images, with its own seed."""

    model: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.model}-same-data-seed{self.seed}"


def same_data_members(model: str, seed: int, count: int) -> list[SameDataMember]:
    return [SameDataMember(model, seed + SAME_DATA_SEED_OFFSET + k) for k in range(count)]


def population_spec(preset: str, model: str, count: int | None = None) -> NullPopulationSpec:
    """The null population that calibrates verdicts on a suspect of architecture ``model``."""
    base = look_up(preset, NULL_COUNTS, "preset")
    spec = NullPopulationSpec(model=model, count=base if count is None else int(count))
    MODELS.get(model)
    if spec.count < MIN_NULLS:
        raise HarnessError(f"null population needs at least {MIN_NULLS} models (each null is judged against the "
                           f"others, which must estimate a spread), got {spec.count}")
    return spec


def members(spec: NullPopulationSpec, seed: int, held_out: int = 0) -> list[NullMember]:
    """The calibration members, or (``held_out`` > 0) that many further members, never used to calibrate."""
    ks = range(spec.count, spec.count + held_out) if held_out else range(spec.count)
    return [NullMember(spec.model, seed + 1 + k, k) for k in ks]


def train_clean(cache: ArtifactCache, model_name: str, dataset: str, preset: Preset, seed: int,
                split: Split, kind: str, extra: dict | None = None, log=None, device: str = "cpu") -> torch.nn.Module:
    """A model trained without any mark (cached by everything that determines it), returned on the CPU."""
    spec = {"kind": kind, "model": model_name, "model_version": plugin_version(MODELS.get(model_name)),
            "dataset": dataset, "preset": preset.as_dict(), "seed": seed, **recipe_key(), **(extra or {})}
    seed_everything(seed)
    model = build_model(model_name, preset.name)
    tic = time.perf_counter()
    trained, loaded = cache.model(kind, spec, model,
                                  lambda m: fit(to_device(m, device), split.images, split.masks, preset.train, seed,
                                                desc=f"train {kind}").cpu())
    if log is not None and not loaded:
        log(f"trained {kind} {model_name} seed {seed} in {time.perf_counter() - tic:.0f} s")
    return trained


def train_null(cache: ArtifactCache, member: NullMember, dataset: str, preset: Preset, log=None,
               device: str = "cpu", root: str | None = None, options: dict | None = None,
               split_seed: int | None = None) -> torch.nn.Module:
    """One member, trained or loaded. ``root``/``options`` locate a folder dataset, whose nulls draw from
    the non-owner images of the run seeded ``split_seed`` (``harness.data``)."""
    split = null_training_set(dataset, preset, member.seed, member.index, root=root, options=options,
                              split_seed=split_seed)
    label = dataset_fingerprint(dataset, root, options)
    extra = {"null_index": member.index}
    if label != dataset:  # not the built-in procedural data: the images depend on the copy and the run's splits
        extra["split_seed"] = split_seed
    return train_clean(cache, member.model, label, preset, member.seed, split, "null",
                       extra=extra, log=log, device=device)


def null_population(cache: ArtifactCache, dataset: str, preset: Preset, seed: int, spec: NullPopulationSpec,
                    held_out: int = 0, log=print, root: str | None = None,
                    options: dict | None = None) -> dict[str, torch.nn.Module]:
    """Train (or load from the cache) every member; name -> model, in member order."""
    chosen = members(spec, seed, held_out)
    with torch_threads(DEFAULT_THREADS):  # as a run trains them: the same cache entries
        return {member.name: train_null(cache, member, dataset, preset, log=log, root=root, options=options,
                                        split_seed=seed) for member in chosen}


def train_same_data(cache: ArtifactCache, member: SameDataMember, dataset_label: str, preset: Preset,
                    owner_train: Split, owner_seed: int, log=None, device: str = "cpu") -> torch.nn.Module:
    """One same-data innocent, trained or loaded: the owner's recipe and images, the member's seed."""
    return train_clean(cache, member.model, dataset_label, preset, member.seed, owner_train, "same-data",
                       extra={"owner_seed": owner_seed}, log=log, device=device)
