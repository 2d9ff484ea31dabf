"""Retinal fundus photographs with optic disc / cup label maps (REFUGE- and ODOC-style folders).

Layout (``--data-dir`` points at the folder holding these)::

    images/ (or image/, imgs/)         g0001.jpg ...
    masks/  (or mask/, labels/, label/, gts/, gt/)   g0001.png ... (same stem; .png or .bmp)

One label map encodes both structures. Two conventions are recognised per file:

* REFUGE: 0 = cup, 128 = disc rim, 255 = background;
* class indices: 0 = background, 1 = disc rim, 2 = cup.

``labels=auto`` (default) tells them apart by the values present; a map whose
values fit neither is an error naming the file and the values. ``target=disc``
(default) segments the whole disc, cup included; ``target=cup`` the cup alone.
"""

from __future__ import annotations

import numpy as np

from harness.datasets._folder import (IMAGE_EXTS, FolderDataset, header_size, list_files, pair_up, parse_choice,
                                      pick_subdir, read_pixels, show_values, to_gray_labels, to_rgb)
from harness.errors import HarnessError
from harness.registry import DATASETS

# convention -> (values inside the disc, value of the cup, every allowed value)
CONVENTIONS = {
    "refuge": ((0, 128), 0, {0, 128, 255}),
    "index": ((1, 2), 2, {0, 1, 2}),
}


def disc_cup_masks(labels: np.ndarray, convention: str) -> tuple[np.ndarray, np.ndarray]:
    """Bool disc (cup included) and cup masks from one label map.

    >>> disc, cup = disc_cup_masks(np.array([[255, 128, 0]]), "refuge")
    >>> disc.tolist(), cup.tolist()
    ([[False, True, True]], [[False, False, True]])
    """
    disc_values, cup_value, _ = CONVENTIONS[convention]
    return np.isin(labels, disc_values), labels == cup_value


def detect_convention(values: set) -> str | None:
    """``"refuge"`` or ``"index"`` from the distinct values of a map, or None if neither fits unambiguously."""
    if values <= CONVENTIONS["index"][2] and values & {1, 2}:
        return "index"
    if values <= CONVENTIONS["refuge"][2] and values & {128, 255}:
        return "refuge"
    return None


@DATASETS.register("fundus")
class FundusFolder(FolderDataset):
    """Fundus photographs with optic disc/cup label maps, REFUGE or class-index coded (--data-dir)."""

    modality = "fundus"
    OPTIONS = {"target": "disc", "labels": "auto"}

    def _scan(self) -> None:
        name = self.name()
        self.target = parse_choice(name, "target", self.options["target"], ("disc", "cup"))
        self.convention = parse_choice(name, "labels", self.options["labels"], ("auto", "refuge", "index"))
        image_dir = pick_subdir(name, self.root, ("images", "image", "imgs"), "image")
        mask_dir = pick_subdir(name, self.root, ("masks", "mask", "labels", "label", "gts", "gt"), "label map")
        images = list_files(name, image_dir, IMAGE_EXTS, "image")
        masks = list_files(name, mask_dir, IMAGE_EXTS, "label map")
        stems = pair_up(name, images, masks, mask_dir, image_dir, mask_word="label map")
        self.samples = [(images[s], masks[s]) for s in stems]
        self.files = [p for pair in self.samples for p in pair]
        for image, mask in self.samples:
            image_wh, mask_wh = header_size(name, image), header_size(name, mask)
            if image_wh != mask_wh:
                raise HarnessError(f"dataset {name!r}: image {image} is {image_wh[0]}x{image_wh[1]} but its label "
                                   f"map {mask} is {mask_wh[0]}x{mask_wh[1]} (width x height)")

    def _load(self, index: int):
        name = self.name()
        image_path, mask_path = self.samples[index]
        image = to_rgb(name, read_pixels(name, image_path), image_path)
        labels = to_gray_labels(name, read_pixels(name, mask_path), mask_path, what="label map")
        values = set(np.unique(labels).tolist())
        convention = self.convention
        if convention == "auto":
            convention = detect_convention(values)
            if convention is None:
                raise HarnessError(
                    f"dataset {name!r}: label map {mask_path} has values {show_values(labels)}, which fit neither "
                    f"REFUGE coding (0 cup, 128 rim, 255 background) nor class indices (0 background, 1 disc, "
                    f"2 cup); option labels=refuge or labels=index forces one")
        allowed = CONVENTIONS[convention][2]
        if not values <= allowed:
            bad = np.array(sorted(values - allowed))
            raise HarnessError(f"dataset {name!r}: label map {mask_path} has values {show_values(bad)} outside "
                               f"the {convention} coding {sorted(allowed)}")
        disc, cup = disc_cup_masks(labels, convention)
        return image, (disc if self.target == "disc" else cup)
