"""Clean models: the owner's clean reference and the population of null models.

A null model is an innocent third party's model: same task, same recipe, its
own seed and its own images (drawn from a range no owner, attacker or test set
touches). Verification is calibrated against a population of them (see
``harness.calibration``): several seeds, and more than one architecture, so
the threshold is not a quirk of one training run or one network.

Members are numbered k = 0, 1, ...: architecture-major, seed ``seed + 1 + k``,
training images block k. The first ``seeds x len(models)`` members calibrate;
later members (``held_out``) are never used for a threshold, only to check it.
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


@dataclass(frozen=True)
class NullPopulationSpec:
    seeds: int  # seeds per architecture
    models: tuple[str, ...]  # architectures


# Chosen per preset: at tiny, 5 seeds x 2 architectures = 10 models (about 45 s each on 2 cores).
NULL_POPULATIONS = {
    "smoke": NullPopulationSpec(seeds=2, models=("basic-unet", "unet")),
    "tiny": NullPopulationSpec(seeds=5, models=("basic-unet", "unet")),
    "paper": NullPopulationSpec(seeds=5, models=("unet", "basic-unet")),
    "paper-short": NullPopulationSpec(seeds=1, models=("unet", "basic-unet")),  # the GPU path check, in minutes
}


@dataclass(frozen=True)
class NullMember:
    model: str
    seed: int
    index: int  # which block of null training images

    @property
    def name(self) -> str:
        return f"{self.model}-seed{self.seed}"


def population_spec(preset: str, seeds: int | None = None, models=None) -> NullPopulationSpec:
    base = look_up(preset, NULL_POPULATIONS, "preset")
    spec = NullPopulationSpec(seeds=base.seeds if seeds is None else int(seeds),
                              models=tuple(base.models if models is None else models))
    if spec.seeds < 1:
        raise HarnessError(f"null population needs at least 1 seed per architecture, got {spec.seeds}")
    if spec.seeds * len(spec.models) < 2:
        raise HarnessError("null population needs at least 2 models to estimate its spread")
    for name in spec.models:
        MODELS.get(name)
    if len(set(spec.models)) != len(spec.models):
        raise HarnessError(f"null architecture listed twice: {', '.join(spec.models)}")
    return spec


def members(spec: NullPopulationSpec, seed: int, held_out: int = 0) -> list[NullMember]:
    """The calibration members, or (``held_out`` > 0) that many further members, never used to calibrate."""
    calibrating = len(spec.models) * spec.seeds
    if held_out:
        ks = range(calibrating, calibrating + held_out)
        return [NullMember(spec.models[(k - calibrating) % len(spec.models)], seed + 1 + k, k) for k in ks]
    return [NullMember(model, seed + 1 + k, k)
            for k, model in ((i * spec.seeds + j, m) for i, m in enumerate(spec.models) for j in range(spec.seeds))]


def same_architecture(population: dict, model_name: str) -> str:
    """The name of the first member with the suspect's architecture (else the first member):
    the single null model the ``null_*`` columns and the guard's figure show."""
    return next((n for n in population if n.startswith(f"{model_name}-seed")), next(iter(population)))


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
