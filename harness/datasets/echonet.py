"""EchoNet-Dynamic apical-4-chamber echo videos with left-ventricle tracings.

Layout (``--data-dir`` points at the folder holding these)::

    Videos/0X100009310A3BD7FC.avi ...
    FileList.csv         FileName, ..., Split            (Split: TRAIN, VAL or TEST)
    VolumeTracings.csv   FileName, X1, Y1, X2, Y2, Frame

Each video has two traced frames, end-diastole and end-systole; every traced
frame is one sample (sorted by file name, then frame number). A frame's tracing
is a list of segments: the first is the ventricle's long axis, the rest are chords
across the cavity. The cavity outline runs down the chords' (X1, Y1) ends and
back up their (X2, Y2) ends -- the same polygon EchoNet's own code draws -- and
is filled at the video's resolution, then resized with the frame.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from harness.datasets._folder import FolderDataset, one_line, parse_choice
from harness.errors import HarnessError
from harness.registry import DATASETS

TRACING_COLUMNS = ("FileName", "X1", "Y1", "X2", "Y2", "Frame")


def _stem(file_name: str) -> str:
    """FileList.csv names lack the .avi that VolumeTracings.csv names carry."""
    name = file_name.strip()
    return name[:-4] if name.lower().endswith(".avi") else name


def tracing_polygon(segments: np.ndarray) -> np.ndarray:
    """``(K, 2)`` polygon (x, y) from ``(n, 4)`` segments X1, Y1, X2, Y2; the first (long-axis) segment is left out.

    >>> chords = np.array([[5, 0, 5, 9], [1, 1, 9, 1], [1, 9, 9, 9]], dtype=float)
    >>> tracing_polygon(chords).tolist()
    [[1.0, 1.0], [1.0, 9.0], [9.0, 9.0], [9.0, 1.0]]
    """
    chords = segments[1:] if len(segments) > 2 else segments
    xs = np.concatenate([chords[:, 0], chords[::-1, 2]])
    ys = np.concatenate([chords[:, 1], chords[::-1, 3]])
    return np.stack([xs, ys], axis=1)


def rasterise(segments: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bool ``(height, width)`` mask of the traced cavity (pixel centres at integer coordinates)."""
    shift = 4  # sub-pixel precision: coordinates in 1/16 pixel
    points = np.round(tracing_polygon(segments) * (1 << shift)).astype(np.int32)
    canvas = np.zeros((height, width), dtype=np.uint8)
    cv2.fillPoly(canvas, [points.reshape(-1, 1, 2)], 1, lineType=cv2.LINE_8, shift=shift)
    return canvas.astype(bool)


def _read_csv(dataset: str, path: Path, required: tuple[str, ...]) -> list[tuple[int, dict]]:
    if not path.is_file():
        raise HarnessError(f"dataset {dataset!r}: {path} does not exist")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            missing = [c for c in required if c not in columns]
            if missing:
                raise HarnessError(f"dataset {dataset!r}: {path} lacks column(s) {', '.join(missing)} "
                                   f"(has: {', '.join(columns) or 'none'})")
            return [(line, {(k or "").strip(): (v or "").strip() for k, v in row.items()})
                    for line, row in enumerate(reader, 2)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise HarnessError(f"dataset {dataset!r}: cannot read {path}: {one_line(exc)}") from None


@DATASETS.register("echonet")
class EchoNetDynamic(FolderDataset):
    """EchoNet-Dynamic echo videos: traced end-diastolic/end-systolic frames with LV masks (--data-dir)."""

    modality = "echocardiography"
    OPTIONS = {"split": "all", "missing_tracings": "error"}

    def _scan(self) -> None:
        name = self.name()
        split = parse_choice(name, "split", self.options["split"], ("TRAIN", "VAL", "TEST", "all"))
        self.missing = parse_choice(name, "missing_tracings", self.options["missing_tracings"], ("error", "skip"))
        video_dir = next((self.root / d for d in ("Videos", "videos") if (self.root / d).is_dir()), None)
        if video_dir is None:
            raise HarnessError(f"dataset {name!r}: {self.root} has no Videos/ folder")
        file_list, tracings_csv = self.root / "FileList.csv", self.root / "VolumeTracings.csv"

        listed: dict[str, str] = {}
        for line, row in _read_csv(name, file_list, ("FileName", "Split")):
            if row["FileName"]:
                listed[_stem(row["FileName"])] = row["Split"].upper()
        if not listed:
            raise HarnessError(f"dataset {name!r}: {file_list} lists no videos")

        traces: dict[str, dict[int, list]] = defaultdict(lambda: defaultdict(list))
        for line, row in _read_csv(name, tracings_csv, TRACING_COLUMNS):
            stem = _stem(row["FileName"])
            if stem not in listed:
                raise HarnessError(f"dataset {name!r}: {tracings_csv} line {line} traces {row['FileName']}, "
                                   f"which {file_list.name} does not list")
            try:
                frame = int(float(row["Frame"]))
                segment = [float(row[c]) for c in ("X1", "Y1", "X2", "Y2")]
            except ValueError:
                raise HarnessError(f"dataset {name!r}: {tracings_csv} line {line} has a non-numeric coordinate "
                                   f"or frame: {', '.join(row[c] for c in TRACING_COLUMNS[1:])}") from None
            traces[stem][frame].append(segment)

        chosen = sorted(s for s, sp in listed.items() if split == "all" or sp == split)
        self.samples = []
        for stem in chosen:
            video = video_dir / f"{stem}.avi"
            if not video.is_file():
                raise HarnessError(f"dataset {name!r}: video {video} (listed in {file_list.name}) does not exist")
            if stem not in traces:
                if self.missing == "skip":
                    continue
                raise HarnessError(f"dataset {name!r}: video {video} has no tracing in {tracings_csv.name} "
                                   f"(option missing_tracings=skip leaves such videos out)")
            for frame, segments in sorted(traces[stem].items()):
                if len(segments) < 3:
                    raise HarnessError(f"dataset {name!r}: {tracings_csv.name} traces frame {frame} of {video.name} "
                                       f"with {len(segments)} segment(s); an outline needs at least 3")
                self.samples.append((video, frame, np.asarray(segments, dtype=np.float64)))
        self.files = sorted({s[0] for s in self.samples}) + [file_list, tracings_csv]
        self._cached: tuple[Path, dict[int, np.ndarray]] | None = None

    def _empty_hint(self) -> str:
        return f" in split {self.options['split']}"

    def _frames(self, video: Path) -> dict[int, np.ndarray]:
        """The traced frames of one video, RGB uint8, read in one pass (the last video read is kept)."""
        if self._cached is not None and self._cached[0] == video:
            return self._cached[1]
        wanted = sorted(f for v, f, _ in self.samples if v == video)
        name = self.name()
        capture = cv2.VideoCapture(str(video))
        try:
            if not capture.isOpened():
                raise HarnessError(f"dataset {name!r}: cannot read video {video} (OpenCV could not open it)")
            frames, position = {}, 0
            while position <= wanted[-1]:
                ok, frame = capture.read()
                if not ok or frame is None:
                    break
                if position in wanted:
                    frames[position] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                position += 1
        finally:
            capture.release()
        if position == 0:
            raise HarnessError(f"dataset {name!r}: cannot read video {video} (no frame could be decoded)")
        missing = [f for f in wanted if f not in frames]
        if missing:
            raise HarnessError(f"dataset {name!r}: video {video} has {position} readable frames but "
                               f"VolumeTracings.csv traces frame {missing[0]}")
        self._cached = (video, frames)
        return frames

    def _load(self, index: int):
        video, frame, segments = self.samples[index]
        pixels = self._frames(video)[frame]
        height, width = pixels.shape[:2]
        xs, ys = segments[:, [0, 2]], segments[:, [1, 3]]
        if xs.min() < -0.5 or ys.min() < -0.5 or xs.max() > width - 0.5 or ys.max() > height - 0.5:
            raise HarnessError(
                f"dataset {self.name()!r}: VolumeTracings.csv traces frame {frame} of {video} over x "
                f"{xs.min():g}..{xs.max():g}, y {ys.min():g}..{ys.max():g}, outside its {width}x{height} frame")
        return pixels.astype(np.float32) / 255.0, rasterise(segments, height, width)
