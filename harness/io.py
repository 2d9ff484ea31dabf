"""The bottom floor: content hashes and atomic writes, used by records, the cache and keys alike.

A file is written to a temporary sibling and renamed into place, so a reader
never sees half of it and a crash leaves the previous version intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable


def spec_hash(spec: dict) -> str:
    """16 hex digits of SHA-256 over the canonical JSON of ``spec`` (key order does not matter).

    >>> spec_hash({"a": 1, "b": [2, 3]}) == spec_hash({"b": [2, 3], "a": 1})
    True
    """
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def weights_hash(model) -> str:
    """SHA-256 over every parameter and buffer of a torch module: equal exactly when the weights are
    bit-identical (names, shapes, dtypes and values)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write_bytes(path: Path, write: Callable) -> None:
    """Call ``write(handle)`` on a temporary file of its own beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_writable(folder: str | Path, what: str = "results folder") -> None:
    """Fail with one line, before any work, when ``folder`` cannot be created or written.

    Permission bits do not tell (root ignores them; a read-only mount does not show in them), so
    the nearest existing folder is probed with a temporary file, removed at once.
    """
    from harness.errors import HarnessError

    folder = Path(folder)
    probe_dir = folder
    while not probe_dir.exists() and probe_dir.parent != probe_dir:
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise HarnessError(f"{what} {folder} cannot be created: {probe_dir} is not a folder")
    try:
        fd, tmp = tempfile.mkstemp(dir=probe_dir, prefix=".harness-probe-")
    except OSError as exc:
        raise HarnessError(f"{what} {folder} is not writable ({probe_dir}: {exc.strerror or exc})") from None
    os.close(fd)
    Path(tmp).unlink(missing_ok=True)
