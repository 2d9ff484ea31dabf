"""Cardiac MR volumes in NIfTI (Medical Segmentation Decathlon / ACDC-like layout), sliced to 2-D.

Layout (``--data-dir`` points at the folder holding these)::

    imagesTr/la_003.nii.gz   (nnU-Net's la_003_0000.nii.gz is accepted too)
    labelsTr/la_003.nii.gz   integer label map, same shape

Volumes are cut along their last axis. ``label=N`` (default 1) is the foreground
value, e.g. 1 = left atrium in the Decathlon heart task, 3 = LV cavity in ACDC.
``skip_empty=true`` (default) keeps only slices that contain the label. Each
volume's intensities are mapped from its 1st..99th percentile to [0, 1] and
replicated to three channels. Samples are sorted by case name, then slice.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from harness.datasets._folder import (FolderDataset, list_files, one_line, pair_up, parse_bool, parse_int,
                                      pick_subdir, show_values)
from harness.errors import HarnessError
from harness.registry import DATASETS

NIFTI_EXTS = (".nii.gz", ".nii")
_CHANNEL_SUFFIX = re.compile(r"_0000$")  # nnU-Net names the first modality case_0000


def normalise(volume: np.ndarray) -> np.ndarray:
    """float32 volume mapped from its 1st..99th percentile to [0, 1] (clipped); a flat volume gives zeros.

    >>> normalise(np.arange(101.0)).round(2)[[0, 50, 100]].tolist()
    [0.0, 0.5, 1.0]
    """
    volume = volume.astype(np.float32)
    low, high = np.percentile(volume, [1.0, 99.0])
    if not high > low:
        return np.zeros_like(volume)
    return np.clip((volume - low) / (high - low), 0.0, 1.0)


def _load_nifti(dataset: str, path: Path, header_only: bool = False):
    import nibabel as nib

    try:
        img = nib.load(str(path))
        return img if header_only else np.asarray(img.dataobj)
    except Exception as exc:  # nibabel raises several unrelated types for bad files  # noqa: BLE001
        raise HarnessError(f"dataset {dataset!r}: cannot read {path}: {one_line(exc)}") from None


def _squeeze_3d(dataset: str, shape: tuple, path: Path) -> tuple:
    """Shape as 3-D: trailing singleton axes dropped; 2-D counts as one slice."""
    shape = tuple(shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) == 2:
        shape = shape + (1,)
    if len(shape) != 3:
        raise HarnessError(f"dataset {dataset!r}: {path} has shape {shape}; expected a 3-D volume")
    return shape


@DATASETS.register("cardiac-mr")
class CardiacMRNifti(FolderDataset):
    """Cardiac MR NIfTI volumes (imagesTr/ + labelsTr/) sliced to 2-D with one label as foreground (--data-dir)."""

    modality = "cardiac-mr"
    OPTIONS = {"label": 1, "skip_empty": True}

    def _scan(self) -> None:
        name = self.name()
        self.label = parse_int(name, "label", self.options["label"], 1, 255)
        self.skip_empty = parse_bool(name, "skip_empty", self.options["skip_empty"])
        image_dir = pick_subdir(name, self.root, ("imagesTr", "images"), "image volume")
        label_dir = pick_subdir(name, self.root, ("labelsTr", "labels"), "label volume")
        raw_images = list_files(name, image_dir, NIFTI_EXTS, "NIfTI image")
        images = {_CHANNEL_SUFFIX.sub("", s): p for s, p in raw_images.items()}
        labels = list_files(name, label_dir, NIFTI_EXTS, "NIfTI label")
        cases = pair_up(name, images, labels, label_dir, image_dir, mask_word="label volume")

        self.cases = [(images[c], labels[c]) for c in cases]
        self.files = [p for pair in self.cases for p in pair]
        self.samples = []
        found_label = False
        for case, (image_path, label_path) in enumerate(self.cases):
            image_shape = _squeeze_3d(name, _load_nifti(name, image_path, header_only=True).shape, image_path)
            label = _load_nifti(name, label_path)
            label = label.reshape(_squeeze_3d(name, label.shape, label_path))
            if image_shape != label.shape:
                raise HarnessError(f"dataset {name!r}: image {image_path} has shape {image_shape} but its label "
                                   f"volume {label_path} has shape {label.shape}")
            if not np.all(np.isfinite(label)) or np.any(label < 0) or np.any(label != np.round(label)):
                bad = label[~np.isfinite(label) | (label < 0) | (label != np.round(label))]
                raise HarnessError(f"dataset {name!r}: label volume {label_path} has values {show_values(bad)}; "
                                   f"labels must be non-negative integers")
            present = (label == self.label).any(axis=(0, 1))
            found_label |= bool(present.any())
            self.samples += [(case, z) for z in range(label.shape[2]) if present[z] or not self.skip_empty]
        if not found_label:
            raise HarnessError(f"dataset {name!r}: label {self.label} occurs in none of the {len(self.cases)} "
                               f"volumes in {label_dir} (option label=N picks the foreground value)")
        self._cached: tuple[int, np.ndarray, np.ndarray] | None = None

    def _volume(self, case: int) -> tuple[np.ndarray, np.ndarray]:
        """Normalised image and label volume of one case (the last case read is kept)."""
        if self._cached is None or self._cached[0] != case:
            name = self.name()
            image_path, label_path = self.cases[case]
            image = _load_nifti(name, image_path)
            image = image.reshape(_squeeze_3d(name, image.shape, image_path))
            if not np.issubdtype(image.dtype, np.number) or not np.all(np.isfinite(image)):
                raise HarnessError(f"dataset {name!r}: image {image_path} has non-finite or non-numeric voxels")
            label = _load_nifti(name, label_path)
            self._cached = (case, normalise(image), label.reshape(_squeeze_3d(name, label.shape, label_path)))
        return self._cached[1], self._cached[2]

    def _load(self, index: int):
        case, z = self.samples[index]
        image, label = self._volume(case)
        # NIfTI's first axis is x: transpose so rows run along y, as a viewer shows the slice.
        plane = np.ascontiguousarray(image[:, :, z].T)
        return np.repeat(plane[..., None], 3, axis=2), np.ascontiguousarray(label[:, :, z].T == self.label)
