"""Seeded, disjoint data splits drawn from a registered dataset.

Two kinds of dataset, told apart by ``__len__`` (see :func:`is_finite`):

* **Procedural** (``synthetic-*``; no ``__len__``, no ``--data-dir``): image ``i``
  depends only on ``(seed, i)`` and the index range is unbounded, so disjoint
  index ranges give disjoint splits, and null models get images from a range no
  owner or attacker ever sees. This path is bit-identical to what cached models
  were trained on.
* **Finite** (folder loaders such as ``kvasir``; ``__len__``, ``needs_root = True``):
  a permutation seeded by the run seed is cut into owner_train / owner_verify /
  attacker / test in the preset's proportions (capped at the preset's sizes).
  A null model is an independent party: it must never see the owner's images.
  Its pool is every image that is not the owner's: attacker, test, and the
  images beyond the preset's split sizes. Null ``k`` trains on the k-th of
  disjoint slices of the pool (as many images as the owner trained on) while
  the pool has room for it, as independent parties would; beyond that it
  trains on a bootstrap resample of the pool, seeded by its own seed and
  ``k``. Resampled nulls share images with each other, so they are more alike
  than independent parties: their scores spread less, and a threshold set on
  them is lower than it should be -- the anti-conservative direction, which
  makes an innocent model easier to accuse. ``null_overlap`` measures the
  sharing and the key records it. Two further consequences: the nulls' test
  Dice is optimistic (they saw test images), and nulls share images with the
  attacker.

The runner and CLI call::

    open_dataset(name, image_size, root=None, options=None) -> dataset
    make_splits(name, preset, seed, root=None, options=None) -> Splits
    thief_split(splits, name, preset, seed, count, root=None, options=None) -> Split   # --attacker-images
    null_training_set(name, preset, seed, null_index, root=None, options=None, split_seed=None) -> Split
    dataset_fingerprint(name, root=None, options=None) -> str   # part of every cache key

``split_seed`` is the run seed whose splits the null must avoid; it is required
for finite datasets (a null's own ``seed`` differs from the run's).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from harness.errors import HarnessError
from harness.presets import Preset
from harness.registry import DATASETS

# Null models are innocent third parties: their training images come from far
# beyond every owner/attacker/test range.
NULL_DATA_OFFSET = 10_000_000
# A thief with more images than the preset's attacker split (``--attacker-images``) draws the rest
# from here: past every owner/attacker/test range, and below every null's.
EXTRA_ATTACKER_OFFSET = 5_000_000


@dataclass
class Split:
    images: torch.Tensor  # (N, 3, H, W) float32 in [0, 1]
    masks: torch.Tensor  # (N, 1, H, W) float32 in {0, 1}

    def __len__(self) -> int:
        return len(self.images)

    def half(self, which: int) -> "Split":
        mid = len(self) // 2
        part = slice(0, mid) if which == 0 else slice(mid, None)
        return Split(self.images[part], self.masks[part])


@dataclass
class Splits:
    owner_train: Split
    owner_verify: Split
    attacker: Split
    test: Split

    @property
    def detector_fit(self) -> Split:
        """The owner's images for fitting a detector; never used as verification queries."""
        return self.owner_verify.half(0)

    @property
    def queries(self) -> Split:
        return self.owner_verify.half(1)


def _draw(dataset, start: int, count: int, seed: int) -> Split:
    images, masks = dataset.generate(range(start, start + count), seed)
    return Split(images, masks)


# A finite dataset needs at least this many images to give every split one
# (owner_verify two: half fits the detector, half are queries).
MIN_FINITE_IMAGES = 8
_MIN_PER_SPLIT = (1, 2, 1, 1)
# Salts keep these streams apart from any other use of the run seed.
_SPLIT_SALT, _NULL_SALT = 0x5B117, 0x4E011


def is_finite(dataset) -> bool:
    """A folder dataset (has ``__len__``) rather than a procedural one (unbounded index range)."""
    return hasattr(dataset, "__len__")


def open_dataset(name: str, image_size: int, root: str | None = None, options: dict | None = None):
    """The registered dataset ``name`` built at ``image_size``; a one-line error for a bad option or --data-dir.

    >>> open_dataset("synthetic-polyp", 32).image_size
    32
    >>> open_dataset("synthetic-polyp", 32, options={"colour": "red"})
    Traceback (most recent call last):
    ...
    harness.errors.HarnessError: dataset 'synthetic-polyp' has no option 'colour'; valid options: (none)
    """
    cls = DATASETS.get(name)
    options = dict(options or {})
    valid = list(getattr(cls, "OPTIONS", {}))
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise HarnessError(f"dataset {name!r} has no option {unknown[0]!r}; valid options: "
                           f"{', '.join(valid) or '(none)'}")
    if getattr(cls, "needs_root", False):
        return cls(image_size=image_size, root=root, **options)
    if root is not None:
        raise HarnessError(f"dataset {name!r} is generated procedurally and takes no --data-dir")
    return cls(image_size=image_size, **options)


def dataset_fingerprint(name: str, root: str | None = None, options: dict | None = None) -> str:
    """Identifies the data a model was trained on: for a folder, a hash of its files and the options.

    Procedural datasets without ``fingerprint()`` (``synthetic-polyp``) are identified by
    their name alone, as cache keys always did.
    """
    dataset = open_dataset(name, 48, root=root, options=options)
    fingerprint = getattr(dataset, "fingerprint", None)
    return f"{name}:{fingerprint()}" if fingerprint is not None else name


def split_indices(n: int, preset: Preset, seed: int) -> list[list[int]]:
    """Indices of owner_train, owner_verify, attacker and test for a finite dataset of ``n`` images.

    A seeded permutation, cut in the preset's proportions; each part is capped at
    the preset's size, so a large folder gives exactly the preset's split sizes.

    >>> from harness.presets import PRESETS
    >>> [len(p) for p in split_indices(20, PRESETS["smoke"], seed=0)]
    [9, 7, 2, 2]
    """
    targets = [preset.owner_train, preset.owner_verify, preset.attacker, preset.test]
    total = sum(targets)
    if n >= total:
        sizes = targets
    else:
        ideal = [n * t / total for t in targets]
        sizes = [max(m, int(i)) for m, i in zip(_MIN_PER_SPLIT, ideal, strict=True)]
        while sum(sizes) > n:  # minimums pushed us over: take from the largest part above its minimum
            k = max(range(4), key=lambda j: (sizes[j] - _MIN_PER_SPLIT[j], -j))
            sizes[k] -= 1
        while sum(sizes) < n:  # largest remainder first
            k = max(range(4), key=lambda j: (ideal[j] - sizes[j], -j))
            sizes[k] += 1
    order = np.random.default_rng([int(seed), _SPLIT_SALT]).permutation(n).tolist()
    starts = [sum(sizes[:i]) for i in range(4)]
    return [order[s:s + k] for s, k in zip(starts, sizes, strict=True)]


def _finite_parts(dataset, name: str, preset: Preset, seed: int) -> list[list[int]]:
    n = len(dataset)
    if n < MIN_FINITE_IMAGES:
        raise HarnessError(f"dataset {name!r} at {getattr(dataset, 'root', '?')} has {n} images; at least "
                           f"{MIN_FINITE_IMAGES} are needed to split them into owner, attacker and test sets")
    return split_indices(n, preset, seed)


def _load(dataset, indices: list[int]) -> Split:
    images, masks = dataset.generate(indices, 0)
    return Split(images, masks)


def make_splits(dataset_name: str, preset: Preset, seed: int, root: str | None = None,
                options: dict | None = None) -> Splits:
    dataset = open_dataset(dataset_name, preset.image_size, root=root, options=options)
    if is_finite(dataset):
        return Splits(*(_load(dataset, part) for part in _finite_parts(dataset, dataset_name, preset, seed)))
    sizes = [preset.owner_train, preset.owner_verify, preset.attacker, preset.test]
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    return Splits(*(_draw(dataset, s, n, seed) for s, n in zip(starts, sizes, strict=True)))


def _null_pool(dataset, name: str, preset: Preset, split_seed: int) -> tuple[list[int], int]:
    """The non-owner images of the run seeded ``split_seed``, in a fixed shuffled order, and how many
    images a null trains on (as many as the owner)."""
    owner_train, owner_verify, _, _ = _finite_parts(dataset, name, preset, split_seed)
    owners = set(owner_train) | set(owner_verify)
    pool = [i for i in range(len(dataset)) if i not in owners]
    order = np.random.default_rng([int(split_seed), _NULL_SALT]).permutation(len(pool))
    return [pool[i] for i in order], len(owner_train)


def _null_indices(dataset, name: str, preset: Preset, seed: int, null_index: int, split_seed: int) -> list[int]:
    pool, size = _null_pool(dataset, name, preset, split_seed)
    if (null_index + 1) * size <= len(pool):  # room for one more disjoint slice
        return pool[null_index * size:(null_index + 1) * size]
    rng = np.random.default_rng([int(seed), int(null_index), _NULL_SALT])
    return rng.choice(np.array(pool), size=size, replace=True).tolist()


def null_overlap(dataset_name: str, preset: Preset, members, root: str | None = None, options: dict | None = None,
                 split_seed: int | None = None) -> float:
    """Share of the nulls' training images that another null also trained on (0: fully disjoint).

    ``members``: (seed, null_index) of each null. Procedural datasets draw every null from fresh
    images, so 0.0 without reading anything.
    """
    dataset = open_dataset(dataset_name, preset.image_size, root=root, options=options)
    if not is_finite(dataset):
        return 0.0
    drawn = [set(_null_indices(dataset, dataset_name, preset, seed, k, split_seed)) for seed, k in members]
    shared = sum(len(mine & set().union(*(d for j, d in enumerate(drawn) if j != i))) for i, mine in enumerate(drawn))
    return shared / max(1, sum(len(d) for d in drawn))


def null_training_set(dataset_name: str, preset: Preset, seed: int, null_index: int, root: str | None = None,
                      options: dict | None = None, split_seed: int | None = None) -> Split:
    """Training images for the ``null_index``-th null model: same distribution, no image of the owner's.

    Procedural: a block of fresh images far beyond every split. Finite: see the module docstring
    (a disjoint slice of the non-owner pool of the run seeded ``split_seed`` while it has room,
    else a bootstrap resample of it), as many images as the owner trained on.
    """
    dataset = open_dataset(dataset_name, preset.image_size, root=root, options=options)
    if is_finite(dataset):
        if split_seed is None:
            raise ValueError("null_training_set on a finite dataset needs split_seed (the run seed)")
        return _load(dataset, _null_indices(dataset, dataset_name, preset, seed, null_index, split_seed))
    start = NULL_DATA_OFFSET + null_index * preset.owner_train
    return _draw(dataset, start, preset.owner_train, seed)


def thief_split(splits: Splits, dataset_name: str, preset: Preset, seed: int, count: int | None,
                root: str | None = None, options: dict | None = None) -> Split:
    """The thief's images when they have ``count`` of them (``--attacker-images``; None: the preset's split).

    Fewer than the split: its first ``count``. More: the split, then fresh images of a procedural
    dataset from a range no owner, test set or null ever sees, so the owner's data and the utility
    measurement stay exactly as they were. A folder dataset has only the images on disk.
    """
    if count is None:
        return splits.attacker
    if count < 1:
        raise HarnessError(f"--attacker-images must be at least 1, got {count}")
    have = len(splits.attacker)
    if count <= have:
        return Split(splits.attacker.images[:count], splits.attacker.masks[:count])
    dataset = open_dataset(dataset_name, preset.image_size, root=root, options=options)
    if is_finite(dataset):
        raise HarnessError(f"--attacker-images {count}: dataset {dataset_name!r} gives the thief {have} images "
                           f"at preset {preset.name!r}; a folder dataset has no more to draw")
    if count - have > NULL_DATA_OFFSET - EXTRA_ATTACKER_OFFSET:
        raise HarnessError(f"--attacker-images {count} is more than the procedural range holds")
    extra = _draw(dataset, EXTRA_ATTACKER_OFFSET, count - have, seed)
    return Split(torch.cat([splits.attacker.images, extra.images]), torch.cat([splits.attacker.masks, extra.masks]))
