"""Bad input never ends in a traceback: the inputs users tried, and a seeded fuzz of the CLI.

Every input error ends with one line on stderr and exit status 2, before
anything is trained or written. The fuzz throws a few hundred random argument
lists and grid files at ``harness.cli.main``. A list that happens to be valid
must not train for minutes here, so the executors are replaced by one that
records the plan it was given and runs nothing: what is tested is everything
before the first task.
"""

from __future__ import annotations

import random
import string

import pytest

from harness import executors
from harness.cli import main
from harness.grid import AXES, OPTIONS

SEED = 20261129
N_ARGUMENT_LISTS = 300
N_GRID_FILES = 200


@pytest.fixture
def no_training(monkeypatch):
    planned = []

    def plan_only(tasks, ctx, workers=None, scheduler=None, log=print):
        planned.append(len(tasks))
        return {}

    for name in list(executors.EXECUTORS):
        monkeypatch.setitem(executors.EXECUTORS, name, plan_only)
    return planned


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def _check(capsys, argv, results):
    """Run the CLI; an exception escaping ``main`` fails the test with the input that caused it."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own --help/--version would exit 0; nothing else may
        pytest.fail(f"SystemExit({exc.code}) for {argv!r}")
    except Exception as exc:  # noqa: BLE001 - the point of the test
        pytest.fail(f"traceback ({type(exc).__name__}: {exc}) for {argv!r}")
    out, err = capsys.readouterr()
    assert code in (0, 1, 2), (argv, code)
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (argv, err)
        assert _files(results) == [], f"{argv!r} failed but wrote {_files(results)}"
    return code, err


# -- the inputs a new user tried ---------------------------------------------------------------------

def test_a_results_folder_that_cannot_be_written_is_refused_before_training(capsys, tmp_path, no_training):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, err = _check(capsys, ["run", "--results", str(blocker / "results")], blocker / "results")
    assert code == 2 and "is not a folder" in err and no_training == []
    code, err = _check(capsys, ["run", "--results", "/sys/harness-results"], tmp_path / "none")
    assert code == 2 and "not writable" in err and no_training == []


@pytest.mark.parametrize("text, expected", [
    ("strengths: [abc]\n", "strength must be a number"),
    ('force: "no"\n', "force must be true or false"),
    ("seeds: [99999999999999999999]\n", "seed must be in"),
    ("seeds: [1.5]\n", "seed must be a whole number"),
    ("dice_budget: yes\n", "dice budget must be a number"),
    ("threads: 0\n", "threads must be in"),
    ("null_level: .nan\n", "null level"),
    ("data_dir: /tmp\n", "generated, not read from a folder"),
    ("data_dir: {kvasir: /tmp}\n", "not a folder dataset of this grid"),
    ("attacks: [prune]\nstrengths: [.inf]\n", "strength must be a number"),
])
def test_grid_file_values_are_checked_before_any_work(capsys, tmp_path, no_training, text, expected):
    results = tmp_path / "results"
    path = tmp_path / "grid.yaml"
    path.write_text(text + f"results: {results}\n")
    code, err = _check(capsys, ["grid", str(path)], results)
    assert code == 2 and expected in err and no_training == []


@pytest.mark.parametrize("argv, expected", [
    (["--seed", "99999999999999999999"], "seed must be in"),
    (["--data-dir", "/tmp"], "generated, not read from a folder"),
    (["--threads", "0"], "threads must be in"),
    (["--null-seeds", "0"], "null seeds must be in"),
    (["--null-level", "nan"], "null level"),
    (["--workers", "0"], "--workers must be a whole number >= 1"),
    (["--scheduler", "tcp://localhost:1"], "--scheduler needs --executor dask"),
])
def test_run_values_are_checked_before_any_work(capsys, tmp_path, no_training, argv, expected):
    results = tmp_path / "results"
    code = main(["run", *argv, "--results", str(results)])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, err
    assert no_training == [] and not results.exists()


def test_nulls_checks_its_seed(capsys, tmp_path):
    code = main(["nulls", "--seed", "99999999999999999999", "--results", str(tmp_path / "r")])
    assert code == 2 and "seed must be in" in capsys.readouterr().err


# -- the fuzz ---------------------------------------------------------------------------------------

NAMES = ["stealthmark", "badnets", "wanet", "prune", "ftal", "basic-unet", "unet", "synthetic-polyp", "kvasir",
         "lime", "kernelshap", "tiny", "smoke", "patch", "text", "all", "none", "prune.l1_50", "prune.nope"]
NUMBERS = ["0", "1", "-1", "0.5", "2", "1e400", "-1e-9", "nan", "inf", "-inf", "99999999999999999999", "3.0",
           "0x10", "1,2", "0.1,0.3", ",", "1,,2"]
JUNK = ["", " ", "é", "名前", "a,b", "../..", "--", "-", "\x00", "x" * 300, "=", "a=b", "${HOME}", "*", "?"]
FLAGS = {
    "--watermark": NAMES + JUNK, "--model": NAMES + JUNK, "--dataset": NAMES + JUNK, "--attack": NAMES + JUNK,
    "--strength": NUMBERS + JUNK, "--seed": NUMBERS + JUNK, "--preset": NAMES + JUNK, "--explainer": NAMES + JUNK,
    "--trigger": NAMES + JUNK, "--dice-budget": NUMBERS, "--null-seeds": NUMBERS, 
    "--null-level": NUMBERS, "--threads": NUMBERS, "--workers": NUMBERS, "--executor": ["local", "dask", "spark"],
    "--device": ["cpu", "cuda", "auto", "cuda:9", "tpu", ""], "--data-dir": ["/nonexistent", "/tmp", ""],
    "--dataset-option": ["target=cup", "a", "=", "split=train", "mask_threshold=x"],
}


def _value(rng, pool):
    value = rng.choice(pool)
    if rng.random() < 0.1:
        value = "".join(rng.choice(string.printable) for _ in range(rng.randint(1, 12)))
    return value


def random_argument_list(rng: random.Random, results: str) -> list[str]:
    argv = ["run", "--results", results, "--preset", "smoke"]
    for flag in rng.sample(sorted(FLAGS), rng.randint(1, 5)):
        argv += [flag, _value(rng, FLAGS[flag])]
    if rng.random() < 0.1:
        argv.append(rng.choice(["--force", "--bogus", "extra", "-x"]))
    return argv


def _yaml_value(rng: random.Random, depth: int = 0):
    kinds = ["str", "int", "float", "bool", "none", "list", "dict", "name"]
    kind = rng.choice(kinds if depth < 2 else kinds[:5] + ["name"])
    if kind == "str":
        return rng.choice(JUNK + NUMBERS)
    if kind == "int":
        return rng.choice([0, 1, -1, 2, 10**20, 7])
    if kind == "float":
        return rng.choice([0.5, -0.5, 1e300, float("inf"), float("nan"), 0.05])
    if kind == "bool":
        return rng.choice([True, False])
    if kind == "none":
        return None
    if kind == "name":
        return rng.choice(NAMES)
    if kind == "list":
        return [_yaml_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {str(_yaml_value(rng, 2)): _yaml_value(rng, depth + 1) for _ in range(rng.randint(0, 2))}


def random_grid_text(rng: random.Random, results: str) -> str:
    import yaml

    if rng.random() < 0.1:  # not a mapping, or not YAML at all
        return rng.choice(["[1, 2", "- a\n- b\n", "!!python/object:os.system {}\n", "\t\tx: : y", "42", "", "{a: [}"])
    keys = list(AXES + OPTIONS) + ["watermark", "seed", "bogus"]
    data = {k: _yaml_value(rng) for k in rng.sample(keys, rng.randint(1, 4)) if k != "results"}
    data["results"] = results
    data.setdefault("presets", ["smoke"])
    return yaml.safe_dump(data, allow_unicode=True)


def test_fuzzed_argument_lists_never_end_in_a_traceback(capsys, tmp_path, no_training):
    rng = random.Random(SEED)
    codes = []
    for n in range(N_ARGUMENT_LISTS):
        results = tmp_path / f"r{n}"
        codes.append(_check(capsys, random_argument_list(rng, str(results)), results)[0])
    # The fuzz must reach past the first check as well as fail at it: both kinds are exercised.
    assert codes.count(2) > N_ARGUMENT_LISTS // 2 and codes.count(0) > 0, {c: codes.count(c) for c in set(codes)}


def test_fuzzed_grid_files_never_end_in_a_traceback(capsys, tmp_path, no_training):
    rng = random.Random(SEED + 1)
    codes = []
    for n in range(N_GRID_FILES):
        results = tmp_path / f"r{n}"
        path = tmp_path / f"grid{n}.yaml"
        path.write_text(random_grid_text(rng, str(results)))
        codes.append(_check(capsys, ["grid", str(path)], results)[0])
    assert codes.count(2) > N_GRID_FILES // 2 and codes.count(0) > 0, {c: codes.count(c) for c in set(codes)}


@pytest.mark.parametrize("verb", [["leaderboard"], ["report"], ["nulls"], ["guard"]])
def test_every_verb_that_writes_checks_its_folder_first(capsys, tmp_path, verb):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, err = _check(capsys, [*verb, "--results", str(blocker / "results")], blocker / "results")
    assert code == 2 and "is not a folder" in err


def test_the_leaderboard_takes_the_readers_budget(capsys, tmp_path):
    code, err = _check(capsys, ["leaderboard", "--results", str(tmp_path), "--dice-budget", "1.5"], tmp_path / "none")
    assert code == 2 and "dice budget must be in [0, 1]" in err
