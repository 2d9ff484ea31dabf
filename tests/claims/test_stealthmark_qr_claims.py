"""Claims of issue 18, StealthMark-QR on a laptop, re-measured on 2 CPU threads in CI.

The full measurement (seeds 0-2, two owners, 19 basic-unet + 5 segresnet nulls, five explainers) is
``scripts/stealthmark_qr_measure.py``, committed in ``results/stealthmark_qr/measurements.json``. CI cannot
afford it all (each embedding is minutes), so this module re-embeds owner A's mark at seed 0 with the
watermark's defaults, reads it with the five model-dependent explainers, reads 5 of seed 0's nulls (a
weaker check than the committed 24: no decode among 5 models bounds the per-model false-decode rate at 45%,
one-sided 95%, against 12% for 24), and compares what it re-measured with the committed record. The
two-owner table and seeds 1-2 are checked as committed, not re-measured.
"""

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from harness.cache import ArtifactCache
from harness.data import make_splits
from harness.measure import utility
from harness.nulls import null_population, population_spec, train_clean
from harness.presets import get_preset
from harness.records import cpu_identity
from harness.training import DEFAULT_THREADS, torch_threads
from watermarks.stealthmark_qr import StealthMarkQR

pytestmark = pytest.mark.claims

EXPLAINERS = ("lime", "kernelshap", "captum-lime", "captum-kernelshap", "captum-occlusion")
COMMITTED = json.loads((Path(__file__).parents[2] / "results" / "stealthmark_qr" / "measurements.json").read_text())
EMBED_THREADS = 2  # as the committed measurement ran (scripts/stealthmark_qr_measure.py --threads)


@pytest.fixture(scope="module")
def world(claims_results):
    preset = get_preset("tiny")
    cache = ArtifactCache(f"{claims_results}/cache")
    splits = make_splits("synthetic-polyp", preset, 0)
    with torch_threads(DEFAULT_THREADS):  # as a run trains it: the same cache entry
        clean = train_clean(cache, "basic-unet", "synthetic-polyp", preset, 0, splits.owner_train, "clean")
    nulls = null_population(cache, "synthetic-polyp", preset, 0, population_spec("tiny", "basic-unet", 5),
                            log=lambda m: None)
    wm = StealthMarkQR(payload="OWNA", trigger_index=0)
    with torch_threads(EMBED_THREADS):
        model = wm.embed(copy.deepcopy(clean), splits, preset, 0, clean=clean)
        key = wm.make_key(model, splits, preset, 0)
        readings = {e: wm.verify(model, key, explainer=e) for e in EXPLAINERS}
        null_readings = {(name, e): wm.verify(null, key, explainer=e) for name, null in nulls.items() for e in EXPLAINERS}
    harm = utility(clean, splits.test, 64)[0]["dice"] - utility(model, splits.test, 64)[0]["dice"]
    return wm, readings, null_readings, harm


def test_embedding_takes_at_most_20_minutes(world):
    wm, *_ = world
    assert wm.embed_seconds <= 20 * 60


def test_payload_decodes_with_at_least_three_explainers(world):
    _, readings, _, _ = world
    decoded = [e for e, r in readings.items() if r.qr_decoded]
    assert len(decoded) >= 3, {e: (r.bit_accuracy, r.code_z, r.payload_read) for e, r in readings.items()}


def test_harm_at_most_001_at_seed_0(world):
    *_, harm = world
    assert harm <= 0.01


def _committed_owner_a() -> list[dict]:
    return [v for k, v in sorted(COMMITTED["owners"].items()) if k.startswith("A-")]


# Seeds 1 and 2 as committed (re-embedding them would cost CI 25 more minutes): the bars over 3 seeds.
def test_committed_every_seed_decodes_with_at_least_three_explainers():
    """Measured 5, 3 and 5 of 5 at seeds 0, 1, 2 (at seed 1 the two Kernel SHAP read 0.50-0.54 of the bits)."""
    assert len(_committed_owner_a()) == 3
    assert all(sum(r["decoded"] for r in v["readings"].values()) >= 3 for v in _committed_owner_a())


def test_committed_mean_harm_at_most_001():
    """Measured +0.0094 (+0.0049, -0.0004, +0.0238): met on the mean, not at seed 2 alone."""
    assert np.mean([v["harm_dice_drop"] for v in _committed_owner_a()]) <= 0.01


def test_committed_embeddings_took_at_most_20_minutes():
    assert all(v["embed_seconds"] <= 20 * 60 for v in COMMITTED["owners"].values())


def test_nulls_decode_nothing_and_stay_in_the_committed_null_band(world):
    _, _, null_readings, _ = world
    for (name, e), r in null_readings.items():
        assert r.payload_read is None and not r.qr_decoded, (name, e, r.best_payload, r.code_z)
        band = COMMITTED["null_band"][e]
        assert band["low"] <= r.bit_accuracy <= band["high"], (name, e, r.bit_accuracy, band)


def test_committed_two_owner_table_decodes_only_each_owners_own():
    for cell, readings in COMMITTED["two_owners"].items():
        key_owner, model_owner = cell.split()[1], cell.split()[-1]
        payloads = {r["payload_read"] for r in readings.values()}
        if key_owner == model_owner:
            assert sum(r["decoded"] for r in readings.values()) >= 3, cell
        # a model carries its own owner's payload or none: never the other owner's
        assert payloads <= {f"OWN{model_owner}", None}, (cell, payloads)


def test_committed_nulls_of_two_architectures_decode_nothing_and_sit_in_their_own_band():
    """24 nulls (19 basic-unet, 5 segresnet) x 5 explainers: no payload, and each null's bit accuracy inside
    the 99% prediction band of the other 23 (the band is the nulls' own, not a binomial's)."""
    archs = {name.split(":")[0] for name in COMMITTED["nulls"]}
    assert len(COMMITTED["nulls"]) >= 20 and len(archs) >= 2
    for e in EXPLAINERS:
        assert all(r[e]["payload_read"] is None for r in COMMITTED["nulls"].values()), e
        assert COMMITTED["null_band"][e]["outside_leave_one_out"] == 0, e


def test_reproduces_the_committed_seed_0_measurement(world):
    wm, readings, _, harm = world
    committed = COMMITTED["owners"]["A-seed0"]
    if COMMITTED.get("cpu") != cpu_identity():
        pytest.skip(f"committed on {COMMITTED.get('cpu')!r}, this machine is {cpu_identity()!r}: exact "
                    "reproduction needs the same CPU kernels")
    assert harm == pytest.approx(committed["harm_dice_drop"], abs=1e-6)
    for e, r in readings.items():
        assert r.bit_accuracy == pytest.approx(committed["readings"][e]["bit_accuracy"], abs=1e-6), e
        assert r.payload_read == committed["readings"][e]["payload_read"], e
