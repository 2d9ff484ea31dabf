"""Overwriting: the thief's own mark is embedded and checked with the thief's own key."""

import copy

import torch

from harness.attack import AttackerKit
from harness.data import make_splits
from harness.presets import get_preset
from harness.registry import ATTACKS
from harness.runner import benchmark
from harness.segmenter import build_model


def test_overwrite_fine_tunes_a_copy_and_reports_the_thiefs_mark():
    preset = get_preset("smoke")
    splits = make_splits("synthetic-polyp", preset, seed=0)
    torch.manual_seed(0)
    stolen = build_model("basic-unet", "smoke").eval()
    before = copy.deepcopy(stolen.state_dict())
    attack = ATTACKS.get("overwrite")()
    attacked = attack.apply(stolen, AttackerKit(splits.attacker, "basic-unet", preset), 2, seed=0)
    assert all(torch.equal(before[k], v) for k, v in stolen.state_dict().items())
    assert any(not torch.equal(before[k], v) for k, v in attacked.state_dict().items())
    report = attack.report(attacked, AttackerKit(splits.attacker, "basic-unet", preset), seed=0)
    assert set(report) == {"thief_asr", "thief_verified"} and 0 <= report["thief_asr"] <= 1
    assert attack._thief_key.meta["payload"] != "HOSPITAL-A:2026"
    assert attack._thief_key.meta["watermark"]["trigger"]["name"] == "text"


def test_overwrite_cells_carry_thief_columns(tmp_path):
    outcome = benchmark(watermarks=["stealthmark"], attack="overwrite", strengths=[1], preset="smoke",
                        results=tmp_path, log=lambda m: None)
    metrics = outcome.records[0].metrics
    assert metrics["thief_verified"] in (0.0, 1.0) and metrics["thief_asr"] is not None
    assert outcome.records[0].spec["attack_family"] == "overwriting"
    header = (tmp_path / "leaderboard.csv").read_text().splitlines()[0].split(",")
    assert "thief_verified" in header and (tmp_path / "worst_case.csv").is_file()
