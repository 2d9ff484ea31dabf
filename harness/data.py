"""Seeded, disjoint data splits drawn from a registered dataset.

Image ``i`` of a procedural dataset depends only on ``(seed, i)``, so disjoint
index ranges give disjoint splits, and null models get images from a range no
owner or attacker ever sees.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.presets import Preset
from harness.registry import DATASETS

# Null models are innocent third parties: their training images come from far
# beyond every owner/attacker/test range.
NULL_DATA_OFFSET = 10_000_000


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


def make_splits(dataset_name: str, preset: Preset, seed: int) -> Splits:
    dataset = DATASETS.get(dataset_name)(image_size=preset.image_size)
    sizes = [preset.owner_train, preset.owner_verify, preset.attacker, preset.test]
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    return Splits(*(_draw(dataset, s, n, seed) for s, n in zip(starts, sizes, strict=True)))


def null_training_set(dataset_name: str, preset: Preset, seed: int, null_index: int) -> Split:
    """Training images for the ``null_index``-th null model: same distribution, no shared image."""
    dataset = DATASETS.get(dataset_name)(image_size=preset.image_size)
    start = NULL_DATA_OFFSET + null_index * preset.owner_train
    return _draw(dataset, start, preset.owner_train, seed)
