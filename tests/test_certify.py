"""`harness certify` on the smoke preset: what it counts, the bound it computes, the two-owner table.

The models are tiny and barely trained, so these tests check the bookkeeping, not the figures; the
figures are the committed tiny-preset certification (results/certification/) and the claims test.
"""

import json
import re

import pytest

from harness import certify
from harness.calibration import clopper_pearson_upper
from harness.cli import main
from harness.errors import HarnessError

MODELS = ("basic-unet", "unet")
HELD_OUT = 2


@pytest.fixture(scope="module")
def certified(tmp_path_factory):
    results = tmp_path_factory.mktemp("certify")
    outcome = certify.certify(models=MODELS, attacks=(("prune", 0.3), ("rtll", 1.0)), held_out=HELD_OUT,
                              preset="smoke", results=results, null_seeds=3, workers=1, log=lambda m: None)
    return results, outcome


def test_every_innocent_model_is_counted_once_per_scheme(certified):
    _, outcome = certified
    for scheme in certify.DEFAULT_WATERMARKS:
        rows = [r for r in outcome.rows if r["scheme"] == scheme]
        # Held-out nulls of each architecture, plus owner B's six marks in the first architecture.
        assert len(rows) == HELD_OUT * len(MODELS) + 6
        assert len({(r["model"], r["innocent"]) for r in rows}) == len(rows)
        assert {r["model"] for r in rows if r["kind"] == "other owner's mark"} == {MODELS[0]}
        # Each is judged by owner A's key of its own architecture.
        assert all(r["key"] == f"A:{scheme}/patch" for r in rows)


def test_a_model_is_accused_if_any_version_of_it_verifies_and_the_bound_counts_models(certified):
    _, outcome = certified
    for row in outcome.rows:
        assert row["accused"] == (row["clean_verified"] or row["prune 0.3_verified"] or row["rtll 1_verified"])
    for summary in outcome.summary:
        assert summary["models"] == HELD_OUT * len(MODELS) + 6 and summary["architectures"] == len(MODELS)
        assert summary["false_accusation_upper_95"] == clopper_pearson_upper(summary["accused_any"],
                                                                             summary["models"])


def test_two_owner_table_covers_three_cases_per_scheme_and_prints_no_p_below_the_data(certified):
    _, outcome = certified
    assert [(r["scheme"], r["case"]) for r in outcome.owners] == [
        (s, c) for s in certify.DEFAULT_WATERMARKS
        for c in ("same default trigger", "B's own trigger", "owner-keyed triggers")]
    for row in outcome.owners:
        for text in (v for k, v in row.items() if k.endswith("_p_null")):
            number = re.fullmatch(r"[0-9.e-]+", text)
            assert number is None or float(text) >= 1 / 4, text  # K = 3 nulls: nothing below 1/4 as a number


def test_tables_are_written(certified):
    results, outcome = certified
    folder = results / certify.CERTIFICATION_DIR
    record = json.loads((folder / "certification.json").read_text())
    assert record["summary"] == json.loads(json.dumps(outcome.summary))
    assert record["spec"]["held_out"] == HELD_OUT and record["spec"]["models"] == list(MODELS)
    assert (folder / "summary.csv").read_text().startswith("scheme,models,")
    assert len((folder / "models.csv").read_text().splitlines()) == len(outcome.rows) + 1


@pytest.mark.parametrize("argv, message", [
    (["--attack", "prnue:0.3"], "did you mean 'prune'"),
    (["--attack", "prune:7"], "out of range"),
    (["--attack", "prune"], "NAME:STRENGTH"),
    (["--held-out", "0"], "at least 1"),
    (["--model", "unett"], "did you mean 'unet'"),
])
def test_bad_input_is_one_line_before_any_training(tmp_path, capsys, argv, message):
    code = main(["certify", "--preset", "smoke", "--results", str(tmp_path), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "cache").exists(), "nothing may be trained before the input is checked"
