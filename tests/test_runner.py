"""benchmark(): records, caching, resumption and determinism, on the seconds-long smoke preset."""

import csv
import json
from pathlib import Path

from harness.leaderboard import columns_markdown, leaderboard_columns
from harness.runner import benchmark

REQUIRED = ("watermark, model, dataset, attack, strength, seed, dice_clean, dice_watermarked, dice_attacked, "
            "harm_dice_drop, flip_rate, flip_rate_clean, trigger_psnr, asr_before, fpr_before, asr_after, "
            "fpr_after, null_asr, p_value_after, qr_decoded_after, verdict, dice_budget, attack_seconds").split(", ")


def _metrics_without_timing(records):
    return [{k: v for k, v in r.metrics.items() if k != "attack_seconds"} for r in records]


def test_one_atomic_json_record_per_cell(smoke_run):
    results, outcome = smoke_run
    assert len(outcome.records) == 4  # 2 watermarks x 2 strengths
    files = sorted((results / "runs").glob("*.json"))
    assert [f.stem for f in files] == sorted(r.run_id for r in outcome.records)
    assert not list(results.rglob("*.tmp")), "no temporary files may be left behind"
    record = json.loads(files[0].read_text())
    assert record["status"] == "ok" and record["versions"]["torch"] and record["spec"]["seed"] == 0
    for value in record["metrics"].values():
        assert value is None or isinstance(value, float)


def test_leaderboard_has_every_required_column_and_one_row_per_cell(smoke_run):
    results, outcome = smoke_run
    with open(results / "leaderboard.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert set(REQUIRED) <= set(rows[0])
    assert len(rows) == len(outcome.records)
    assert {(r["watermark"], float(r["strength"])) for r in rows} == {
        (w, s) for w in ("stealthmark", "badnets") for s in (0.5, 0.9)}
    badnets = [r for r in rows if r["watermark"] == "badnets"]
    assert all(r["qr_decoded_after"] == "" for r in badnets), "no QR for BadNets: empty, not a number"


def test_every_column_is_documented_in_results_readme():
    readme = (Path(__file__).parents[1] / "results" / "README.md").read_text()
    assert columns_markdown() in readme, "regenerate the table: python -c 'from harness.leaderboard import columns_markdown as c; print(c())'"
    assert set(REQUIRED) <= {c.name for c in leaderboard_columns()}


def test_warm_rerun_reuses_records_and_models(smoke_run):
    results, outcome = smoke_run
    messages = []
    again = benchmark(preset="smoke", results=results, strengths=[0.5, 0.9], log=messages.append)
    assert any("already recorded" in m for m in messages)
    assert [r.run_id for r in again.records] == [r.run_id for r in outcome.records]
    assert _metrics_without_timing(again.records) == _metrics_without_timing(outcome.records)


def test_same_seed_same_numbers_from_scratch(smoke_run, tmp_path):
    _, outcome = smoke_run
    fresh = benchmark(preset="smoke", results=tmp_path, strengths=[0.5, 0.9], log=lambda m: None)
    assert _metrics_without_timing(fresh.records) == _metrics_without_timing(outcome.records)


def test_a_corrupted_cached_model_is_rebuilt_not_loaded(smoke_run, tmp_path):
    first = benchmark(watermarks=["badnets"], preset="smoke", results=tmp_path, strengths=[0.5], log=lambda m: None)
    for artifact in (tmp_path / "cache").rglob("*.pt"):
        artifact.write_bytes(artifact.read_bytes()[:100])
    second = benchmark(watermarks=["badnets"], preset="smoke", results=tmp_path, strengths=[0.5], force=True,
                       log=lambda m: None)
    assert _metrics_without_timing(second.records) == _metrics_without_timing(first.records)


def test_records_keep_evidence_not_budget_dependent_verdicts(smoke_run):
    _, outcome = smoke_run
    for record in outcome.records:
        assert "removed" not in record.metrics and "verdict" not in record.metrics


def test_a_changed_attack_parameter_or_plugin_version_changes_the_run_id(smoke_run, monkeypatch):
    """Everything that changes a number is in the run id, so a changed recipe never reuses a record."""
    from dataclasses import replace

    _, outcome = smoke_run
    cell = outcome.records[0]
    from harness.cell import CellSpec

    spec = CellSpec(**{k: v for k, v in cell.spec.items() if k in CellSpec.__dataclass_fields__})
    spec = replace(spec, plugin_versions=tuple(tuple(p) for p in spec.plugin_versions))
    assert spec.run_id == cell.run_id
    assert replace(spec, attack_id="other").run_id != spec.run_id
    assert replace(spec, plugin_versions=(("model", 2),)).run_id != spec.run_id

    from harness.registry import ATTACKS

    prune = ATTACKS.get("prune")
    before = prune().spec()
    monkeypatch.setattr(prune, "version", prune.version + 1)
    assert prune().spec() != before


def test_an_undeclared_metric_is_refused_not_dropped(tmp_path):
    import pytest

    from harness.errors import HarnessError
    from harness.leaderboard import write_leaderboard
    from harness.records import RunRecord

    RunRecord("abc", {"watermark": "w", "role": "watermark", "trigger": "patch", "model": "m", "dataset": "d",
                      "preset": "tiny", "attack": "prune", "strength": 0.1, "seed": 0, "explainer": "lime"},
              {"no_such_metric": 1.0}).write(tmp_path)
    with pytest.raises(HarnessError, match="no_such_metric"):
        write_leaderboard(tmp_path)
