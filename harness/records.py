"""One JSON record per benchmark cell, written atomically; the leaderboard is derived from these alone."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from harness.io import atomic_write_bytes

from harness.cell import HARNESS_VERSION

RUNS_DIR = "runs"


def now() -> str:
    """A record's start time: UTC, to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def cpu_identity() -> str:
    """The processor and the kernel level torch dispatches to: two x86 CPUs of different generations run
    different float kernels (oneDNN picks them per CPU), so the last digits of a trained model, and a
    borderline verdict, can differ between them. Exact reproduction is defined on the same identity.

    >>> isinstance(cpu_identity(), str)
    True
    """
    fields = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            name = name.strip()
            if name in ("vendor_id", "cpu family", "model") and name not in fields:
                fields[name] = value.strip()
    except OSError:
        pass
    chip = (f"{fields.get('vendor_id', platform.machine())} family {fields.get('cpu family', '?')} "
            f"model {fields.get('model', '?')}")
    return f"{chip}, torch {torch.backends.cpu.get_cpu_capability()}"


@lru_cache(maxsize=1)
def versions() -> dict:
    """Versions that decide the numbers, recorded in every record."""
    # The thread count changes float reduction order, hence the last digits of trained weights; the CPU
    # changes which float kernels run (cpu_identity).
    out = {"python": platform.python_version(), "harness": HARNESS_VERSION, "platform": platform.platform(),
           "torch_threads": torch.get_num_threads(), "cpu": cpu_identity()}
    for package in ("torch", "monai", "numpy", "scikit-learn", "lime", "torch-pruning"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).parent).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=5, cwd=Path(__file__).parent).stdout.strip()
        out["git_commit"] = (commit + ("-dirty" if dirty else "")) or None
    except (OSError, subprocess.SubprocessError):
        out["git_commit"] = None
    return out


@dataclass
class RunRecord:
    run_id: str
    spec: dict  # the cell: watermark, model, dataset, attack, strength, seed, preset, explainer
    metrics: dict  # name -> float (booleans as 0/1; None where a metric does not apply)
    status: str = "ok"  # ok | error
    error: str | None = None
    started: str = ""
    duration_s: float = 0.0
    device: str = "cpu"
    versions: dict = field(default_factory=versions)
    command: str = field(default_factory=lambda: " ".join(sys.argv))

    def write(self, results_dir: str | Path) -> Path:
        path = Path(results_dir) / RUNS_DIR / f"{self.run_id}.json"
        body = json.dumps(asdict(self), indent=1, sort_keys=True, allow_nan=False)
        atomic_write_bytes(path, lambda h: h.write(body.encode()))
        return path


def load_records(results_dir: str | Path) -> list[RunRecord]:
    """Every readable record under ``results_dir/runs``; unreadable files are skipped with a warning."""
    records = []
    for path in sorted((Path(results_dir) / RUNS_DIR).glob("*.json")):
        try:
            records.append(RunRecord(**json.loads(path.read_text())))
        except (ValueError, TypeError) as exc:
            print(f"warning: skipping unreadable record {path}: {exc}", file=sys.stderr)
    return records
