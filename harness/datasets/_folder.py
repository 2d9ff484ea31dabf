"""Shared machinery for datasets read from a downloaded folder (not a plugin: leading underscore).

A folder dataset is *finite*: it has ``__len__``, and ``generate(indices, seed)``
indexes a sorted, deterministic list of samples (the seed is ignored). A
procedural dataset (``synthetic-*``) has no ``__len__``: its index range is
unbounded. ``harness.data`` tells the two apart that way.

Every problem with the folder is one :class:`HarnessError` line that names the
exact file: checks that only need names or headers run in the constructor, checks
that need pixel values (binary masks, corrupt data) run when a sample is first
loaded, which ``harness.data.make_splits`` does before any training starts.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import torch

from harness.errors import HarnessError

MIN_SIZE, MAX_SIZE = 16, 1024
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
JPEG_EXTS = (".jpg", ".jpeg")

# Bump when the way a folder is turned into arrays changes, so cached models
# trained on the old arrays are not reused.
FOLDER_FORMAT_VERSION = 1


def check_image_size(name: str, image_size: Any) -> int:
    """``image_size`` as an int within the supported range, else a one-line error."""
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)):
        raise HarnessError(f"{name} image_size must be an integer, got {image_size!r}")
    if not MIN_SIZE <= image_size <= MAX_SIZE:
        raise HarnessError(f"{name} image_size must be between {MIN_SIZE} and {MAX_SIZE}, got {image_size}")
    return int(image_size)


def one_line(text: Any) -> str:
    return " ".join(str(text).split())


def show_values(values: np.ndarray, limit: int = 8) -> str:
    """``"0, 17, 255"``: sorted distinct values, at most ``limit`` of them."""
    distinct = np.unique(values)
    shown = ", ".join(f"{v:g}" for v in distinct[:limit].tolist())
    return shown + (f", ... ({len(distinct)} distinct)" if len(distinct) > limit else "")


# -- option parsing (CLI options arrive as strings) ---------------------------
def parse_bool(dataset: str, key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise HarnessError(f"dataset {dataset!r} option {key} must be true or false, got {value!r}")


def parse_int(dataset: str, key: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    try:
        number = int(str(value).strip()) if not isinstance(value, (int, np.integer)) else int(value)
    except ValueError:
        raise HarnessError(f"dataset {dataset!r} option {key} must be an integer, got {value!r}") from None
    if isinstance(value, bool) or (minimum is not None and number < minimum) or (
            maximum is not None and number > maximum):
        bounds = f" between {minimum} and {maximum}" if maximum is not None else f" >= {minimum}"
        raise HarnessError(f"dataset {dataset!r} option {key} must be an integer{bounds}, got {value!r}")
    return number


def parse_choice(dataset: str, key: str, value: Any, choices: tuple[str, ...], case_insensitive: bool = True) -> str:
    text = str(value).strip()
    for choice in choices:
        if text == choice or (case_insensitive and text.lower() == choice.lower()):
            return choice
    raise HarnessError(f"dataset {dataset!r} option {key} must be one of {', '.join(choices)}, got {value!r}")


# -- files ----------------------------------------------------------------------
def pick_subdir(dataset: str, root: Path, names: tuple[str, ...], what: str) -> Path:
    """The first of ``root/<name>`` that is a folder, else a one-line error listing what was looked for."""
    for name in names:
        if (root / name).is_dir():
            return root / name
    wanted = " or ".join(f"{n}/" for n in names)
    raise HarnessError(f"dataset {dataset!r}: {root} has no {what} folder (looked for {wanted})")


def list_files(dataset: str, folder: Path, exts: tuple[str, ...], what: str) -> dict[str, Path]:
    """``{stem: path}`` of the visible files in ``folder`` with one of ``exts``; error if none or a stem repeats."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file() or not path.name.lower().endswith(exts):
            continue
        stem = stem_of(path.name, exts)
        if stem in found:
            raise HarnessError(f"dataset {dataset!r}: two {what} files share the name {stem!r}: "
                               f"{found[stem]} and {path}")
        found[stem] = path
    if not found:
        raise HarnessError(f"dataset {dataset!r}: {folder} contains no {what} files ({', '.join(exts)})")
    return found


def stem_of(name: str, exts: tuple[str, ...]) -> str:
    """File name without the longest matching extension (``a.nii.gz`` -> ``a``)."""
    lower = name.lower()
    for ext in sorted(exts, key=len, reverse=True):
        if lower.endswith(ext):
            return name[: -len(ext)]
    return Path(name).stem


def pair_up(dataset: str, images: dict[str, Path], masks: dict[str, Path], mask_dir: Path,
            image_dir: Path, mask_word: str = "mask") -> list[str]:
    """Sorted stems present in both; an orphan on either side is an error naming the orphan file."""
    for stem, path in images.items():
        if stem not in masks:
            raise HarnessError(f"dataset {dataset!r}: image {path} has no {mask_word} in {mask_dir} "
                               f"(expected a file named {stem}.*)")
    for stem, path in masks.items():
        if stem not in images:
            raise HarnessError(f"dataset {dataset!r}: {mask_word} {path} has no image in {image_dir}")
    return sorted(images)


def header_size(dataset: str, path: Path) -> tuple[int, int]:
    """``(width, height)`` from the file header (Pillow opens lazily), or a one-line error."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise HarnessError(f"dataset {dataset!r}: cannot read {path}: {one_line(exc)}") from None


def read_pixels(dataset: str, path: Path) -> np.ndarray:
    """Decoded pixels as a numpy array (``(H, W)`` or ``(H, W, C)``), or a one-line error naming the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif im.mode == "1":
                im = im.convert("L")
            elif im.mode in ("I;16", "I;16B", "I;16L"):
                im = im.convert("I")
            return np.asarray(im)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise HarnessError(f"dataset {dataset!r}: cannot read {path}: {one_line(exc)}") from None


def to_rgb(dataset: str, pixels: np.ndarray, path: Path) -> np.ndarray:
    """float32 ``(H, W, 3)`` in [0, 1] from 8-bit grey, RGB or RGBA pixels."""
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    elif pixels.ndim == 3 and pixels.shape[2] in (3, 4):
        pixels = pixels[..., :3]
    else:
        raise HarnessError(f"dataset {dataset!r}: image {path} has unsupported shape {pixels.shape}")
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) / 255.0
    top = 65535.0 if pixels.max(initial=0) > 255 else 255.0
    return np.clip(pixels.astype(np.float32) / top, 0.0, 1.0)


def to_gray_labels(dataset: str, pixels: np.ndarray, path: Path, what: str = "mask") -> np.ndarray:
    """One label value per pixel: grey as is; RGB(A) only if its colour channels agree (a grey image saved as RGB).

    A JPEG mask saved as RGB has chroma noise, so its channels are averaged instead.
    """
    if pixels.ndim == 3 and str(path).lower().endswith(JPEG_EXTS):
        return pixels[..., :3].mean(axis=2)
    if pixels.ndim == 3:
        colour = pixels[..., :3]
        if not (np.array_equal(colour[..., 0], colour[..., 1]) and np.array_equal(colour[..., 0], colour[..., 2])):
            raise HarnessError(f"dataset {dataset!r}: {what} {path} is a colour image; expected one grey label "
                               f"value per pixel")
        pixels = colour[..., 0]
    return pixels


def binarise(dataset: str, labels: np.ndarray, path: Path, threshold: float | None) -> np.ndarray:
    """Bool mask from grey values ``{0, 255}`` or ``{0, 1}``; anything else is an error naming the values.

    Lossy JPEG masks (Kvasir-SEG ships its masks as .jpg) carry compression noise
    around every edge, so a .jpg/.jpeg mask -- and only such a mask -- is thresholded
    at 128 instead. ``threshold`` (the ``mask_threshold`` option) forces thresholding
    for every mask, for copies whose lossless masks were resampled.
    """
    if threshold is None and str(path).lower().endswith(JPEG_EXTS):
        threshold = 128
    if threshold is not None:
        return labels >= threshold
    values = np.unique(labels)
    if set(values.tolist()) <= {0, 255}:
        return labels == 255
    if set(values.tolist()) <= {0, 1}:
        return labels == 1
    raise HarnessError(f"dataset {dataset!r}: mask {path} is not binary: values {show_values(values)} "
                       f"(expected {{0, 255}} or {{0, 1}}; option mask_threshold=128 thresholds instead)")


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Area-averaged when shrinking, bilinear when enlarging; float32 ``(size, size, C)``."""
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image.astype(np.float32, copy=False)
    method = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_LINEAR
    out = cv2.resize(image.astype(np.float32, copy=False), (size, size), interpolation=method)
    return out.reshape(size, size, -1) if out.ndim == 2 else out


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour, so a mask stays binary; bool ``(size, size)``."""
    if mask.shape == (size, size):
        return mask.astype(bool, copy=False)
    return cv2.resize(mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST).astype(bool)


def fingerprint_of(kind: str, files: list[Path], root: Path, options: dict) -> str:
    """Short hash of the sorted relative file names and byte sizes, the options and the format version."""
    digest = hashlib.sha256()
    digest.update(json.dumps([kind, FOLDER_FORMAT_VERSION, sorted((k, str(v)) for k, v in options.items())]).encode())
    for path in sorted(files):
        digest.update(f"{path.relative_to(root).as_posix()}\0{os.path.getsize(path)}\n".encode())
    return digest.hexdigest()[:16]


class FolderDataset:
    """Base for datasets read from ``--data-dir``: finite, indexed, validated, fingerprinted.

    Subclasses set ``OPTIONS`` (name -> default) and implement ``_scan()`` (list the
    samples, cheap checks, set ``self.files``) and ``_load(i)`` (one sample at its
    native size: float32 ``(H, W, 3)`` in [0, 1] and a bool ``(H, W)`` mask).
    """

    needs_root = True  # harness.data: a folder dataset cannot be built without --data-dir
    OPTIONS: dict[str, Any] = {}
    modality = "unknown"

    def __init__(self, image_size: int = 48, root: str | os.PathLike | None = None, **options):
        name = self.name()
        self.image_size = check_image_size(name, image_size)
        if root is None:
            raise HarnessError(f"dataset {name!r} needs --data-dir pointing at the downloaded folder")
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise HarnessError(f"dataset {name!r}: data dir {self.root} does not exist or is not a folder")
        unknown = sorted(set(options) - set(self.OPTIONS))
        if unknown:
            raise HarnessError(f"dataset {name!r} has no option {unknown[0]!r}; valid options: "
                               f"{', '.join(self.OPTIONS) or '(none)'}")
        self.options = {**self.OPTIONS, **options}
        self.files: list[Path] = []
        self.samples: list = []
        self._scan()
        if not self.samples:
            raise HarnessError(f"dataset {name!r}: {self.root} has no samples{self._empty_hint()}")
        self._fingerprint = fingerprint_of(name, self.files, self.root, self.options)

    @classmethod
    def name(cls) -> str:
        return getattr(cls, "registered_name", cls.__name__)

    def _empty_hint(self) -> str:
        return ""

    def _scan(self) -> None:
        raise NotImplementedError

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.samples)

    def fingerprint(self) -> str:
        """Changes with the copy (file names, sizes) and the options, never with the machine."""
        return self._fingerprint

    def sample(self, index: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Sample ``index`` of the sorted list, resized: uint8 ``(S, S, 3)`` and bool ``(S, S)``."""
        image, mask = self._sample_float(index)
        return (image * 255.0 + 0.5).astype(np.uint8), mask

    def _sample_float(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= index < len(self.samples):
            raise HarnessError(f"dataset {self.name()!r} has {len(self.samples)} samples; index {index} is out of range")
        image, mask = self._load(int(index))
        size = self.image_size
        return np.clip(resize_image(image, size), 0.0, 1.0), resize_mask(mask, size)

    def generate(self, indices, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """float32 images ``(N, 3, S, S)`` in [0, 1] and float32 masks ``(N, 1, S, S)`` in {0, 1}; ``seed`` is unused."""
        indices = list(indices)
        size = self.image_size
        images = np.empty((len(indices), size, size, 3), dtype=np.float32)
        masks = np.empty((len(indices), size, size), dtype=bool)
        for row, index in enumerate(indices):
            images[row], masks[row] = self._sample_float(index)
        return (torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
                torch.from_numpy(masks).unsqueeze(1).float())

    def validate_all(self, progress: Callable[[int], None] | None = None) -> None:
        """Load every sample once, so a bad file anywhere fails now rather than mid-run."""
        for index in range(len(self)):
            self._load(index)
            if progress:
                progress(index)
