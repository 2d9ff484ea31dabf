"""Committed results are reproducible: every record names a clean commit that exists in this history."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORDS = sorted((ROOT / "results" / "runs").glob("*.json"))


def _git(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)


def test_there_are_committed_records():
    assert len(RECORDS) >= 10


def test_no_committed_record_comes_from_a_dirty_tree():
    dirty = [p.name for p in RECORDS if "-dirty" in str(json.loads(p.read_text())["versions"].get("git_commit"))]
    assert dirty == [], f"{len(dirty)} records name a commit with uncommitted changes: regenerate them from main"


def test_every_committed_record_names_a_commit_of_this_history():
    commits = {json.loads(p.read_text())["versions"].get("git_commit") for p in RECORDS}
    assert None not in commits
    shallow = _git("rev-parse", "--is-shallow-repository").stdout.strip() == "true"
    for commit in sorted(commits):
        exists = _git("cat-file", "-e", f"{commit}^{{commit}}").returncode == 0
        # A shallow clone lacks old commits; it can still check that the name is a full commit hash.
        assert exists or (shallow and len(commit) == 40 and all(c in "0123456789abcdef" for c in commit)), commit
