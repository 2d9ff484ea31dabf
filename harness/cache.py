"""Content-addressed artifacts: a trained model or a key is stored under a hash of exactly
the inputs it depends on, so a re-run (or another cell needing the same model) loads it.

Files are written atomically (temp file + rename) next to a manifest holding
their SHA-256; a file whose hash does not match is discarded and rebuilt,
never loaded silently. Checkpoints load with ``weights_only=True``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from harness.io import atomic_write_bytes, file_sha256, spec_hash


class ArtifactCache:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def _paths(self, kind: str, spec: dict) -> tuple[Path, Path]:
        stem = self.root / kind / spec_hash(spec)
        return stem.with_suffix(".pt"), stem.with_suffix(".json")

    def _intact(self, data: Path, manifest: Path) -> bool:
        if not (data.is_file() and manifest.is_file()):
            return False
        try:
            return json.loads(manifest.read_text())["sha256"] == file_sha256(data)
        except (ValueError, KeyError, OSError):
            return False

    def _commit(self, data: Path, manifest: Path, spec: dict) -> None:
        body = json.dumps({"spec": spec, "sha256": file_sha256(data)}, indent=1, sort_keys=True, default=str)
        atomic_write_bytes(manifest, lambda h: h.write(body.encode()))

    def model(self, kind: str, spec: dict, model: nn.Module, train: Callable[[nn.Module], nn.Module]) -> tuple[nn.Module, bool]:
        """``model`` with cached weights if an intact artifact exists, else ``train(model)``, stored.

        Returns (model, loaded_from_cache).
        """
        data, manifest = self._paths(kind, spec)
        if self._intact(data, manifest):
            state = torch.load(data, map_location="cpu", weights_only=True)
            try:
                model.load_state_dict(state)
                return model.eval(), True
            except RuntimeError:
                # Intact, but made by an earlier version of this architecture (its keys or
                # shapes differ): stale, so rebuilt below rather than half-loaded.
                pass
        trained = train(model)
        atomic_write_bytes(data, lambda h: torch.save(trained.state_dict(), h))
        self._commit(data, manifest, spec)
        return trained.eval(), False

    def file(self, kind: str, spec: dict, build: Callable, load: Callable, suffix: str = ".npz"):
        """An object saved as one file (``obj.save(path)``, read back by ``load(path)``): an owner's
        key, say. Loaded when an intact copy exists, else built and stored."""
        data, manifest = self._paths(kind, spec)
        data = data.with_suffix(suffix)
        if self._intact(data, manifest):
            return load(data)
        obj = build()
        obj.save(data)
        self._commit(data, manifest, spec)
        return obj
