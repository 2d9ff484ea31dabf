"""Folder datasets on small fixtures written in the real on-disk formats (PNG/JPEG, AVI + CSV, NIfTI)."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from harness.data import (dataset_fingerprint, is_finite, make_splits, null_overlap, null_training_set, open_dataset,
                          split_indices)
from harness.errors import HarnessError
from harness.presets import PRESETS

SMOKE = PRESETS["smoke"]


# -- fixture writers ------------------------------------------------------------
def _square_mask(h, w, top, left, side) -> np.ndarray:
    mask = np.zeros((h, w), dtype=bool)
    mask[top:top + side, left:left + side] = True
    return mask


def write_kvasir(root: Path, n: int = 10, image_dir="images", mask_dir="masks", ext=".png", size=(40, 30)) -> Path:
    rng = np.random.default_rng(0)
    (root / image_dir).mkdir(parents=True)
    (root / mask_dir).mkdir()
    w, h = size
    for i in range(n):
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        mask = _square_mask(h, w, 5 + i % 5, 8, 12).astype(np.uint8) * 255
        Image.fromarray(image).save(root / image_dir / f"case{i:02d}{ext}")
        Image.fromarray(mask).save(root / mask_dir / f"case{i:02d}{ext}", quality=90)
    return root


def write_fundus(root: Path, n: int = 4, coding="refuge") -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        image = np.full((32, 32, 3), 100 + i, dtype=np.uint8)
        bg, rim, cup = (255, 128, 0) if coding == "refuge" else (0, 1, 2)
        labels = np.full((32, 32), bg, dtype=np.uint8)
        labels[8:24, 8:24] = rim  # disc: 16x16
        labels[12:20, 12:20] = cup  # cup: 8x8
        Image.fromarray(image).save(root / "images" / f"g{i:04d}.jpg")
        Image.fromarray(labels).save(root / "masks" / f"g{i:04d}.png")
    return root


# Square cavity: long axis first, then 21 chords from x=30 to x=70 at y = 30..70.
SQUARE_TRACING = [(50.0, 30.0, 50.0, 70.0)] + [(30.0, float(y), 70.0, float(y)) for y in range(30, 71, 2)]


def write_echonet(root: Path, videos=("0XAAA", "0XBBB"), frames=6, traced=(1, 4), split=("TRAIN", "VAL")) -> Path:
    (root / "Videos").mkdir(parents=True)
    for k, stem in enumerate(videos):
        writer = cv2.VideoWriter(str(root / "Videos" / f"{stem}.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25,
                                 (112, 112), isColor=False)
        assert writer.isOpened()
        for f in range(frames):
            writer.write(np.full((112, 112), 40 + 30 * f + k, dtype=np.uint8))
        writer.release()
    with open(root / "FileList.csv", "w", newline="") as h:
        out = csv.writer(h)
        out.writerow(["FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames", "Split"])
        for stem, sp in zip(videos, split):
            out.writerow([stem, 60, 30, 80, 112, 112, 50, frames, sp])
    with open(root / "VolumeTracings.csv", "w", newline="") as h:
        out = csv.writer(h)
        out.writerow(["FileName", "X1", "Y1", "X2", "Y2", "Frame"])
        for stem in videos:
            for frame in traced:
                for seg in SQUARE_TRACING:
                    out.writerow([f"{stem}.avi", *seg, frame])
    return root


def write_cardiac(root: Path, cases=("la_001", "la_002"), depth=5, suffix="") -> Path:
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    rng = np.random.default_rng(1)
    for c, case in enumerate(cases):
        image = rng.normal(100.0, 20.0, (24, 20, depth)).astype(np.float32)
        label = np.zeros((24, 20, depth), dtype=np.uint8)
        label[4:12, 6:10, 1] = 1  # x 4..11, y 6..9
        label[10:14, 2:5, 3] = 2
        label[5:9, 5:9, 3] = 1
        nib.save(nib.Nifti1Image(image, np.eye(4)), str(root / "imagesTr" / f"{case}{suffix}.nii.gz"))
        nib.save(nib.Nifti1Image(label, np.eye(4)), str(root / "labelsTr" / f"{case}.nii.gz"))
    return root


def _check_batch(images, masks, n, size):
    assert images.shape == (n, 3, size, size) and images.dtype == torch.float32
    assert masks.shape == (n, 1, size, size) and masks.dtype == torch.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert set(masks.unique().tolist()) <= {0.0, 1.0}


# -- loading ------------------------------------------------------------------------
@pytest.mark.parametrize("layout", [("images", "masks", ".png"), ("image", "mask", ".png"), ("images", "masks", ".jpg")])
def test_kvasir_layouts_load(tmp_path, layout):
    root = write_kvasir(tmp_path / "k", n=3, image_dir=layout[0], mask_dir=layout[1], ext=layout[2])
    data = open_dataset("kvasir", 32, root=str(root))
    assert len(data) == 3 and is_finite(data) and data.modality == "colonoscopy"
    images, masks = data.generate(range(3), seed=123)
    _check_batch(images, masks, 3, 32)
    # 12x12 square in a 40x30 image -> about (12/40)*(12/30) of 32x32 pixels
    assert abs(masks[0].mean().item() - 144 / 1200) < 0.03


def test_kvasir_split_list(tmp_path):
    root = write_kvasir(tmp_path / "k", n=4)
    (root / "train.txt").write_text("case01\ncase03.png\n\n")
    data = open_dataset("kvasir", 32, root=str(root), options={"split": "train"})
    assert len(data) == 2
    assert open_dataset("kvasir", 32, root=str(root)).fingerprint() != data.fingerprint()


@pytest.mark.parametrize("coding", ["refuge", "index"])
def test_fundus_targets(tmp_path, coding):
    root = write_fundus(tmp_path / coding, coding=coding)
    disc = open_dataset("fundus", 32, root=str(root), options={"target": "disc"})
    cup = open_dataset("fundus", 32, root=str(root), options={"target": "cup"})
    (di, dm), (_, cm) = disc.generate([0], 0), cup.generate([0], 0)
    _check_batch(di, dm, 1, 32)
    assert dm.sum().item() == 256 and cm.sum().item() == 64
    assert disc.fingerprint() != cup.fingerprint()


def test_echonet_rasterises_square_tracing(tmp_path):
    root = write_echonet(tmp_path / "e")
    data = open_dataset("echonet", 112, root=str(root))
    assert len(data) == 4  # two videos x two traced frames
    images, masks = data.generate(range(4), 0)
    _check_batch(images, masks, 4, 112)
    # square 30..70 on both axes, pixel centres inclusive: 41 x 41
    assert abs(masks[0].sum().item() - 41 * 41) <= 2 * 41
    assert masks[0, 0, 50, 50] == 1 and masks[0, 0, 10, 10] == 0 and masks[0, 0, 50, 75] == 0
    # frames 1 and 4 of the first video: grey levels 70 and 160 (MJPG is lossy)
    assert abs(images[0].mean().item() * 255 - 70) < 4 and abs(images[1].mean().item() * 255 - 160) < 4
    assert len(open_dataset("echonet", 48, root=str(root), options={"split": "VAL"})) == 2


def test_cardiac_slices_and_labels(tmp_path):
    root = write_cardiac(tmp_path / "c", suffix="_0000")
    data = open_dataset("cardiac-mr", 24, root=str(root))
    assert len(data) == 4  # slices 1 and 3 of both cases contain label 1
    images, masks = data.generate(range(4), 0)
    _check_batch(images, masks, 4, 24)
    assert torch.equal(images[:, 0], images[:, 1])  # grey replicated
    image, mask = data._load(0)
    expected = np.zeros((24, 20), dtype=bool).T.copy()
    expected[6:10, 4:12] = True  # transposed: rows are y
    assert np.array_equal(mask, expected)
    assert len(open_dataset("cardiac-mr", 24, root=str(root), options={"skip_empty": "false"})) == 10
    assert len(open_dataset("cardiac-mr", 24, root=str(root), options={"label": "2"})) == 2


# -- bad folders: one HarnessError line naming the file ----------------------------------
def _kv_orphan_image(root):
    write_kvasir(root, n=3)
    (root / "masks" / "case01.png").unlink()
    return "kvasir", {}, "images/case01.png"


def _kv_orphan_mask(root):
    write_kvasir(root, n=3)
    Image.new("L", (40, 30)).save(root / "masks" / "extra.png")
    return "kvasir", {}, "masks/extra.png"


def _kv_not_binary(root):
    write_kvasir(root, n=3)
    bad = np.zeros((30, 40), dtype=np.uint8)
    bad[0, 0], bad[1, 1] = 17, 255
    Image.fromarray(bad).save(root / "masks" / "case02.png")
    return "kvasir", {}, "masks/case02.png is not binary: values 0, 17, 255"


def _kv_size_mismatch(root):
    write_kvasir(root, n=3)
    Image.new("L", (20, 30)).save(root / "masks" / "case00.png")
    return "kvasir", {}, "images/case00.png is 40x30 but its mask"


def _kv_no_subfolder(root):
    write_kvasir(root, n=3)
    (root / "masks").rename(root / "annotations")
    return "kvasir", {}, "has no mask folder (looked for masks/ or mask/)"


def _kv_empty(root):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    return "kvasir", {}, "images contains no image files"


def _kv_corrupt(root):
    write_kvasir(root, n=3)
    (root / "images" / "case01.png").write_bytes(b"not a png at all")
    return "kvasir", {}, "cannot read"


def _kv_truncated(root):
    write_kvasir(root, n=3)
    path = root / "images" / "case01.png"
    path.write_bytes(path.read_bytes()[:200])
    return "kvasir", {}, "cannot read"


def _kv_split_unknown_stem(root):
    write_kvasir(root, n=3)
    (root / "val.txt").write_text("case00\nghost\n")
    return "kvasir", {"split": "val"}, "val.txt line 2 lists 'ghost'"


def _fundus_bad_values(root):
    write_fundus(root)
    labels = np.full((32, 32), 255, dtype=np.uint8)
    labels[0, :5] = 7
    Image.fromarray(labels).save(root / "masks" / "g0002.png")
    return "fundus", {}, "masks/g0002.png has values 7, 255, which fit neither"


def _fundus_out_of_coding(root):
    write_fundus(root)
    labels = np.full((32, 32), 255, dtype=np.uint8)
    labels[0, :5] = 3
    Image.fromarray(labels).save(root / "masks" / "g0001.png")
    return "fundus", {"labels": "refuge"}, "masks/g0001.png has values 3 outside the refuge coding"


def _fundus_orphan(root):
    write_fundus(root)
    (root / "images" / "g0003.jpg").unlink()
    return "fundus", {}, "label map " + str(root / "masks" / "g0003.png") + " has no image"


def _echo_missing_video(root):
    write_echonet(root)
    (root / "Videos" / "0XBBB.avi").unlink()
    return "echonet", {}, "video " + str(root / "Videos" / "0XBBB.avi") + " (listed in FileList.csv) does not exist"


def _echo_orphan_tracing(root):
    write_echonet(root)
    with open(root / "VolumeTracings.csv", "a", newline="") as h:
        csv.writer(h).writerow(["0XGHOST.avi", 1, 2, 3, 4, 0])
    return "echonet", {}, "traces 0XGHOST.avi, which FileList.csv does not list"


def _echo_untraced(root):
    write_echonet(root)
    with open(root / "FileList.csv", "a", newline="") as h:
        csv.writer(h).writerow(["0XCCC", 60, 30, 80, 112, 112, 50, 6, "TEST"])
    write_echonet(root / "tmp", videos=("0XCCC",))
    (root / "tmp" / "Videos" / "0XCCC.avi").rename(root / "Videos" / "0XCCC.avi")
    return "echonet", {}, "0XCCC.avi has no tracing in VolumeTracings.csv"


def _echo_frame_out_of_range(root):
    write_echonet(root, traced=(1, 9))
    return "echonet", {}, "0XAAA.avi has 6 readable frames but VolumeTracings.csv traces frame 9"


def _echo_tracing_outside_frame(root):
    write_echonet(root)
    with open(root / "VolumeTracings.csv", "a", newline="") as h:
        csv.writer(h).writerow(["0XAAA.avi", 130, 40, 140, 40, 1])
    return "echonet", {}, "0XAAA.avi over x 30..140, y 30..70, outside its 112x112 frame"


def _echo_corrupt_video(root):
    write_echonet(root)
    (root / "Videos" / "0XAAA.avi").write_bytes(b"RIFF garbage")
    return "echonet", {}, "cannot read video " + str(root / "Videos" / "0XAAA.avi")


def _echo_missing_column(root):
    write_echonet(root)
    (root / "VolumeTracings.csv").write_text("FileName,X1,Y1,X2,Y2\n0XAAA.avi,1,2,3,4\n")
    return "echonet", {}, "VolumeTracings.csv lacks column(s) Frame"


def _echo_no_videos_dir(root):
    write_echonet(root)
    (root / "Videos").rename(root / "Clips")
    return "echonet", {}, "has no Videos/ folder"


def _cmr_shape_mismatch(root):
    write_cardiac(root)
    nib.save(nib.Nifti1Image(np.zeros((24, 20, 4), np.uint8), np.eye(4)), str(root / "labelsTr" / "la_002.nii.gz"))
    return "cardiac-mr", {}, "la_002.nii.gz has shape (24, 20, 5) but its label volume"


def _cmr_bad_labels(root):
    write_cardiac(root)
    label = np.zeros((24, 20, 5), np.float32)
    label[0, 0, 0], label[1, 1, 1] = -1.0, 1.5
    nib.save(nib.Nifti1Image(label, np.eye(4)), str(root / "labelsTr" / "la_001.nii.gz"))
    return "cardiac-mr", {}, "labelsTr/la_001.nii.gz has values -1, 1.5; labels must be non-negative integers"


def _cmr_orphan(root):
    write_cardiac(root)
    (root / "labelsTr" / "la_002.nii.gz").unlink()
    return "cardiac-mr", {}, "image " + str(root / "imagesTr" / "la_002.nii.gz") + " has no label volume"


def _cmr_corrupt(root):
    write_cardiac(root)
    (root / "imagesTr" / "la_001.nii.gz").write_bytes(b"\x1f\x8bnot really gzip")
    return "cardiac-mr", {}, "cannot read " + str(root / "imagesTr" / "la_001.nii.gz")


def _cmr_label_absent(root):
    write_cardiac(root)
    return "cardiac-mr", {"label": 5}, "label 5 occurs in none of the 2 volumes"


BAD_FOLDERS = [_kv_orphan_image, _kv_orphan_mask, _kv_not_binary, _kv_size_mismatch, _kv_no_subfolder, _kv_empty,
               _kv_corrupt, _kv_truncated, _kv_split_unknown_stem, _fundus_bad_values, _fundus_out_of_coding,
               _fundus_orphan, _echo_missing_video, _echo_orphan_tracing, _echo_untraced, _echo_frame_out_of_range,
               _echo_tracing_outside_frame, _echo_corrupt_video, _echo_missing_column, _echo_no_videos_dir,
               _cmr_shape_mismatch, _cmr_bad_labels, _cmr_orphan, _cmr_corrupt, _cmr_label_absent]


@pytest.mark.parametrize("make", BAD_FOLDERS, ids=lambda f: f.__name__.lstrip("_"))
def test_bad_folder_is_one_line_naming_the_file(tmp_path, make):
    root = tmp_path / "data"
    name, options, expected = make(root)
    with pytest.raises(HarnessError) as info:
        data = open_dataset(name, 32, root=str(root), options=options)
        data.generate(range(len(data)), 0)
    message = str(info.value)
    assert "\n" not in message
    assert expected in message or expected in message.replace(str(root) + "/", ""), message


def test_missing_root_and_unknown_option(tmp_path):
    with pytest.raises(HarnessError, match="dataset 'kvasir' needs --data-dir pointing at the downloaded folder"):
        open_dataset("kvasir", 32)
    root = write_kvasir(tmp_path / "k", n=2)
    with pytest.raises(HarnessError, match="has no option 'spilt'; valid options: split, mask_threshold"):
        open_dataset("kvasir", 32, root=str(root), options={"spilt": "train"})
    with pytest.raises(HarnessError, match="generated procedurally"):
        open_dataset("synthetic-polyp", 32, root=str(root))


# -- splits on a finite dataset ------------------------------------------------------------
def test_finite_splits_disjoint_deterministic_and_nulls_avoid_owner(tmp_path):
    root = write_kvasir(tmp_path / "k", n=20, size=(32, 32))
    n = 20
    parts = split_indices(n, SMOKE, seed=3)
    flat = [i for p in parts for i in p]
    assert len(flat) == len(set(flat)) == n  # 20 < 72 images: every image used, once
    assert [len(p) for p in parts] == [len(p) for p in split_indices(n, SMOKE, seed=4)]
    assert parts == split_indices(n, SMOKE, seed=3) and parts != split_indices(n, SMOKE, seed=4)

    splits = make_splits("kvasir", SMOKE, 3, root=str(root))
    again = make_splits("kvasir", SMOKE, 3, root=str(root))
    assert torch.equal(splits.owner_train.images, again.owner_train.images)
    data = open_dataset("kvasir", SMOKE.image_size, root=str(root))
    all_images, _ = data.generate(range(n), 0)
    key = lambda t: tuple(t.flatten()[:50].tolist())  # noqa: E731 - random pixels identify the image
    index_of = {key(img): i for i, img in enumerate(all_images)}
    which = {name: {index_of[key(img)] for img in getattr(splits, name).images}
             for name in ("owner_train", "owner_verify", "attacker", "test")}
    assert sum(map(len, which.values())) == n and len(set().union(*which.values())) == n
    assert which["owner_train"] == set(parts[0])

    # Every image but the owner's is in the nulls' pool (here every image is in some split).
    pool = which["attacker"] | which["test"]
    drawn = []
    for k in range(3):
        null = null_training_set("kvasir", SMOKE, 10 + k, k, root=str(root), split_seed=3)
        drawn.append([index_of[key(img)] for img in null.images])
        assert len(null) == len(splits.owner_train) and set(drawn[-1]) <= pool
    assert len({tuple(sorted(d)) for d in drawn}) == 3  # a different training set for each null
    # The pool holds no disjoint slice of the owner's size here, so they are resamples, and share images:
    overlap = null_overlap("kvasir", SMOKE, [(10 + k, k) for k in range(3)], root=str(root), split_seed=3)
    assert 0 < overlap <= 1
    fp = dataset_fingerprint("kvasir", str(root))
    assert fp == "kvasir:" + data.fingerprint() and fp != dataset_fingerprint("kvasir", str(root), {"split": "all",
                                                                                          "mask_threshold": 128})


def test_folder_nulls_take_disjoint_slices_while_the_pool_has_room(tmp_path):
    """A folder larger than the preset's splits leaves images no split uses; with room for them, the
    nulls train on disjoint slices (overlap 0), and only members beyond the room are resampled."""
    per_null = SMOKE.owner_train
    used = SMOKE.owner_train + SMOKE.owner_verify + SMOKE.attacker + SMOKE.test
    root = write_kvasir(tmp_path / "k", n=used + 2 * per_null)  # room for exactly 2 + (attacker + test) slices
    room = (used - SMOKE.owner_train - SMOKE.owner_verify + 2 * per_null) // per_null
    data = open_dataset("kvasir", SMOKE.image_size, root=str(root))
    all_images, _ = data.generate(range(len(data)), 0)
    key = lambda t: tuple(t.flatten()[:50].tolist())  # noqa: E731
    index_of = {key(img): i for i, img in enumerate(all_images)}
    splits = make_splits("kvasir", SMOKE, 3, root=str(root))
    owners = {index_of[key(img)] for img in torch.cat([splits.owner_train.images, splits.owner_verify.images])}
    sets = [{index_of[key(img)] for img in null_training_set("kvasir", SMOKE, 10 + k, k, root=str(root),
                                                             split_seed=3).images} for k in range(room)]
    assert all(len(s) == per_null and not s & owners for s in sets)
    assert all(not a & b for i, a in enumerate(sets) for b in sets[i + 1:])
    assert null_overlap("kvasir", SMOKE, [(10 + k, k) for k in range(room)], root=str(root), split_seed=3) == 0.0
    assert null_overlap("kvasir", SMOKE, [(10 + k, k) for k in range(room + 2)], root=str(root), split_seed=3) > 0
    assert null_overlap("synthetic-polyp", SMOKE, [(1, 0), (2, 1)]) == 0.0


def test_too_few_images(tmp_path):
    root = write_kvasir(tmp_path / "k", n=5)
    with pytest.raises(HarnessError, match="has 5 images; at least 8"):
        make_splits("kvasir", SMOKE, 0, root=str(root))
