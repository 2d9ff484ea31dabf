"""Colonoscopy polyp folders: Kvasir-SEG and PraNet's TrainDataset/TestDataset layouts.

Layout (``--data-dir`` points at the folder holding these)::

    images/ or image/     cju0qkwl35piu0993l0dewei2.jpg ...
    masks/  or mask/      cju0qkwl35piu0993l0dewei2.jpg ...   (same stem, any image extension)
    train.txt, val.txt    optional split lists: one stem per line (``split=train`` reads train.txt)

Kvasir-SEG stores its masks as JPEG, which blurs every edge with compression
noise; .jpg masks are therefore thresholded at 128 (see ``_folder.binarise``).
Lossless masks must hold {0, 255} or {0, 1}.
"""

from __future__ import annotations

from pathlib import Path

from harness.datasets._folder import (IMAGE_EXTS, FolderDataset, binarise, header_size, list_files, pair_up,
                                      parse_int, pick_subdir, read_pixels, stem_of, to_gray_labels, to_rgb)
from harness.errors import HarnessError
from harness.registry import DATASETS


@DATASETS.register("kvasir")
class KvasirFolder(FolderDataset):
    """Colonoscopy polyp images + masks from a Kvasir-SEG or PraNet folder (--data-dir)."""

    modality = "colonoscopy"
    OPTIONS = {"split": "all", "mask_threshold": None}

    def _scan(self) -> None:
        name, opts = self.name(), self.options
        self.threshold = None if opts["mask_threshold"] in (None, "", "none") else parse_int(
            name, "mask_threshold", opts["mask_threshold"], 1, 255)
        image_dir = pick_subdir(name, self.root, ("images", "image"), "image")
        mask_dir = pick_subdir(name, self.root, ("masks", "mask"), "mask")
        images = list_files(name, image_dir, IMAGE_EXTS, "image")
        masks = list_files(name, mask_dir, IMAGE_EXTS, "mask")
        stems = pair_up(name, images, masks, mask_dir, image_dir)

        split = str(opts["split"]).strip()
        if split.lower() != "all":
            stems = self._split_stems(split, stems)
        self.samples = [(images[s], masks[s]) for s in stems]
        self.files = [p for pair in self.samples for p in pair]
        if split.lower() != "all":
            self.files.append(self.root / f"{split}.txt")
        for image, mask in self.samples:
            image_wh, mask_wh = header_size(name, image), header_size(name, mask)
            if image_wh != mask_wh:
                raise HarnessError(f"dataset {name!r}: image {image} is {image_wh[0]}x{image_wh[1]} but its mask "
                                   f"{mask} is {mask_wh[0]}x{mask_wh[1]} (width x height)")

    def _split_stems(self, split: str, stems: list[str]) -> list[str]:
        name = self.name()
        listing = self.root / f"{split}.txt"
        if not listing.is_file():
            found = sorted(p.stem for p in self.root.glob("*.txt"))
            raise HarnessError(f"dataset {name!r}: split {split!r} needs {listing}, which does not exist "
                               f"(split lists found: {', '.join(found) or 'none'}; split=all uses every image)")
        known, chosen = set(stems), []
        for line_no, line in enumerate(listing.read_text().splitlines(), 1):
            entry = line.strip()
            if not entry or entry.startswith("#"):
                continue
            stem = stem_of(Path(entry).name, IMAGE_EXTS)
            if stem not in known:
                raise HarnessError(f"dataset {name!r}: {listing} line {line_no} lists {entry!r}, which has no "
                                   f"image/mask pair in {self.root}")
            chosen.append(stem)
        return sorted(set(chosen))

    def _load(self, index: int):
        image_path, mask_path = self.samples[index]
        image = to_rgb(self.name(), read_pixels(self.name(), image_path), image_path)
        labels = to_gray_labels(self.name(), read_pixels(self.name(), mask_path), mask_path)
        return image, binarise(self.name(), labels, mask_path, self.threshold)
