"""The command line: every verb, and one-line errors (exit 2, no traceback, nothing written) for bad input."""

import json
import pickle
import random
import subprocess
import sys

import pytest
import torch

from harness.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *fragments):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.mark.parametrize("flag, bad, expected", [
    ("--watermark", "stealthmrak", "did you mean 'stealthmark'"),
    ("--attack", "prnue", "did you mean 'prune'"),
    ("--model", "basic-unte", "did you mean 'basic-unet'"),
    ("--dataset", "synthetic-polip", "did you mean 'synthetic-polyp'"),
    ("--explainer", "lmie", "did you mean 'lime'"),
    ("--preset", "tinny", "did you mean 'tiny'"),
    ("--trigger", "txt", "did you mean 'text'"),
    ("--strength", "0.5,1.5", "out of range"),
    ("--strength", "-0.1", "out of range"),
    ("--strength", "half", "comma-separated numbers"),
    ("--seed", "x", "comma-separated whole numbers"),
    ("--dice-budget", "2", "dice budget"),
    ("--attacker-images", "0", "attacker images must be in"),
    ("--attack", "prnue.l1_50+ftal.e5", "did you mean 'prune'"),
    ("--attack", "hard-mask+ftal.e5", "can only be the last step"),
    ("--attack", "prune.l1_55+ftal.e5", "presets of 'prune'"),
])
def test_run_rejects_bad_input_before_writing_anything(capsys, tmp_path, flag, bad, expected):
    results = tmp_path / "results"
    code, out, err = run_cli(capsys, "run", flag, bad, "--results", str(results))
    assert_one_line_error(code, err, expected)
    assert not results.exists(), "bad input must not leave partial output"


def test_bad_input_leaves_existing_results_untouched(capsys, smoke_run):
    results, _ = smoke_run
    before = {p: p.read_bytes() for p in results.rglob("*") if p.is_file()}
    code, _, err = run_cli(capsys, "run", "--attack", "nope", "--results", str(results))
    assert_one_line_error(code, err, "unknown attack")
    assert {p: p.read_bytes() for p in results.rglob("*") if p.is_file()} == before


def test_list_shows_every_kind_with_descriptions(capsys):
    code, out, _ = run_cli(capsys, "list")
    assert code == 0
    for heading in ("watermarks:", "baselines:", "attacks:", "explainers:", "models:", "datasets:"):
        assert heading in out
    assert "stealthmark" in out and "Uncertainty backdoor" in out and "badnets" in out
    code, out, _ = run_cli(capsys, "list", "attacks", "--pattern", "prune-*")
    assert code == 0 and "prune-channels" in out and "prune " not in out
    assert_one_line_error(*run_cli(capsys, "list", "atacks")[::2], "did you mean 'attacks'")


def test_leaderboard_is_rebuilt_from_records_alone(capsys, smoke_run):
    results, outcome = smoke_run
    board = results / "leaderboard.csv"
    original = board.read_text()
    board.unlink()
    code, out, _ = run_cli(capsys, "leaderboard", "--results", str(results))
    assert code == 0 and f"({len(outcome.records)} rows, verdicts at a Dice budget of 0.05)" in out
    assert board.read_text() == original


def test_leaderboard_verdicts_follow_the_readers_budget_and_nothing_else(capsys, smoke_run):
    import csv

    results, _ = smoke_run
    code, _, _ = run_cli(capsys, "leaderboard", "--results", str(results), "--dice-budget", "0")
    strict = list(csv.DictReader(open(results / "leaderboard.csv")))
    run_cli(capsys, "leaderboard", "--results", str(results))
    default = list(csv.DictReader(open(results / "leaderboard.csv")))
    assert code == 0 and {r["dice_budget"] for r in strict} == {"0"}
    derived = {"dice_budget", "verdict"}
    assert [{k: v for k, v in r.items() if k not in derived} for r in strict] == \
           [{k: v for k, v in r.items() if k not in derived} for r in default]


def _verify(capsys, smoke_run, checkpoint, watermark="stealthmark"):
    results, outcome = smoke_run
    return run_cli(capsys, "verify", "--model", "basic-unet", "--checkpoint", str(checkpoint),
                   "--key", str(outcome.keys[watermark]))


@pytest.mark.parametrize("watermark", ["stealthmark", "badnets"])
def test_verify_prints_a_verdict_and_a_json_record_matching_the_run(capsys, smoke_run, watermark):
    results, outcome = smoke_run
    code, out, err = _verify(capsys, smoke_run, outcome.checkpoints[watermark], watermark)
    assert code == 0, err
    verdict, _, rest = out.partition("\n")
    assert verdict.startswith(("VERIFIED", "NOT VERIFIED"))
    assert rest.startswith("against 4 null models: score"), "the calibrated verdict is printed too"
    record = json.loads(rest[rest.index("\n{") + 1:])
    before = outcome.records[0] if watermark == "stealthmark" else outcome.records[-1]
    assert before.spec["watermark"] == watermark
    assert record["asr"] == before.metrics["asr_before"] and record["p_value"] == before.metrics["p_value_before"]
    assert record["p_value_null_empirical"] == before.metrics["p_value_null_empirical_before"]
    assert record["p_value_null_parametric"] == before.metrics["p_value_null_parametric_before"]
    assert record["null_threshold"] == before.metrics["null_threshold"]
    assert record["verdict"] == verdict.split(":")[0]


def test_verify_accepts_a_checkpoint_saved_outside_the_harness(capsys, smoke_run, tmp_path):
    """A plain training script would save the bare network, often wrapped or DataParallel-prefixed."""
    results, outcome = smoke_run
    state = torch.load(outcome.checkpoints["null"], weights_only=True)
    foreign = tmp_path / "foreign.pth"
    torch.save({"epoch": 7, "state_dict": {f"module.{k}": v for k, v in state.items()}}, foreign)
    code, out, err = _verify(capsys, smoke_run, foreign)
    assert code == 0, err
    assert json.loads(out[out.index("\n{") + 1:])["queries"] > 0


def test_verify_missing_checkpoint(capsys, smoke_run, tmp_path):
    assert_one_line_error(*_verify(capsys, smoke_run, tmp_path / "nope.pt")[::2], "checkpoint not found")


@pytest.mark.parametrize("seed", range(12))
def test_verify_corrupt_checkpoint(capsys, smoke_run, tmp_path, seed):
    """Random bytes reach torch's unpickler along many paths (KeyError, EOFError, ...): all are one line."""
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(random.Random(seed).randbytes(64 + 64 * seed))
    assert_one_line_error(*_verify(capsys, smoke_run, bad)[::2], "corrupt or not a PyTorch file")


def test_verify_truncated_checkpoint(capsys, smoke_run, tmp_path):
    _, outcome = smoke_run
    cut = tmp_path / "truncated.pt"
    cut.write_bytes(outcome.checkpoints["stealthmark"].read_bytes()[:1000])
    assert_one_line_error(*_verify(capsys, smoke_run, cut)[::2], "corrupt or not a PyTorch file")


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # would create the marker file if unpickled


def test_verify_refuses_a_pickle_with_code_and_runs_none_of_it(capsys, smoke_run, tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"weight": _Payload(str(marker))}, evil)
    assert_one_line_error(*_verify(capsys, smoke_run, evil)[::2], "refused")
    assert not marker.exists()
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps(_Payload(str(marker))))
    code, _, err = _verify(capsys, smoke_run, plain)
    assert code == 2 and "Traceback" not in err and not marker.exists()


def test_verify_wrong_architecture(capsys, smoke_run, tmp_path):
    wrong = tmp_path / "wrong.pt"
    torch.save({"conv.weight": torch.zeros(3, 3, 1, 1)}, wrong)
    assert_one_line_error(*_verify(capsys, smoke_run, wrong)[::2], "does not fit model 'basic-unet'", "missing")


def test_verify_bad_key(capsys, smoke_run, tmp_path):
    _, outcome = smoke_run
    bad = tmp_path / "key.npz"
    bad.write_text("not a key")
    code, _, err = run_cli(capsys, "verify", "--model", "basic-unet", "--checkpoint",
                           str(outcome.checkpoints["null"]), "--key", str(bad))
    assert_one_line_error(code, err, "not a valid harness key")


def test_python_dash_m_entry_point_exits_2_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--attack", "prnue", "--results",
                           str(tmp_path / "r")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: unknown attack 'prnue'") and "Traceback" not in proc.stderr
    assert not (tmp_path / "r").exists()
