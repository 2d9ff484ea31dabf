"""Claims of the stealthmark-qr issue, re-measured on real tiny-preset models.

Embeds owner A's and owner B's marks by fine-tuning the cached clean model with
the configuration measured in the report (K = 512 masks per step, 3,000 steps).
On an H200 one embedding took 89 s; on this 2-core CPU a step costs about
4 s, so about 3.5 hours per owner: run it where a GPU is (it uses CUDA when
available) with::

    .venv/bin/python -m pytest -m claims tests/claims/test_stealthmark_qr_claims.py

The bars are the issue's; where one was not met the test is a strict xfail
carrying the measured value (k512 model embedded on an H200, measured on CPU).
"""

import copy
import os

import numpy as np
import pytest
import torch

from harness import scoring
from harness.cache import ArtifactCache
from harness.data import make_splits
from harness.nulls import null_population, population_spec, train_clean
from harness.presets import get_preset
from harness.measure import utility
from harness.segmenter import predict_proba
from watermarks.stealthmark_qr import StealthMarkQR

# On CPU the two embeddings take about 7 hours, far beyond CI's budget: these claims are measured
# where a GPU is, and skipped (with this reason, shown by -ra) everywhere else.
pytestmark = [pytest.mark.claims,
              pytest.mark.skipif(not torch.cuda.is_available(),
                                 reason="stealthmark-qr claims need a GPU: ~3.5 h of embedding per owner on CPU")]

PERTURBATION_EXPLAINERS = ("lime", "kernelshap", "captum-lime", "captum-kernelshap", "captum-occlusion")
CONFIG = {"steps": 3000, "masks_per_step": 512, "tau": 2.5e-4, "hinge_weight": 5, "lr": 1e-3}
HARM_MISS = "bar not met: measured harm_dice_drop 0.073 (k512, seed 0) vs bar 0.01; strict: turns red once met"
DECODE_MISS = ("bar not met: 0 of 5 explainers decode (bit accuracy 0.93-0.98; Micro QR M2-L corrects almost "
               "no module errors); strict: turns red once met")
NULL_BAND_MISS = ("bar not met: null bit accuracies 0.444-0.621 over 10 nulls x 5 explainers; 3 of 50 above the "
                  "99% band 0.401-0.599 (none decodes, none verifies); strict: turns red once met")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    preset = get_preset("tiny")
    cache = ArtifactCache(os.environ.get("HARNESS_CLAIMS_RESULTS", str(tmp_path_factory.mktemp("qr"))) + "/cache")
    splits = make_splits("synthetic-polyp", preset, 0)
    clean = train_clean(cache, "basic-unet", "synthetic-polyp", preset, 0, splits.owner_train, "clean")
    nulls = null_population(cache, "synthetic-polyp", preset, 0, population_spec("tiny", "basic-unet"), log=lambda m: None)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    owners = {}
    for payload, index in (("OWNERA", 0), ("OWNERB", 1)):
        wm = StealthMarkQR(payload=payload, trigger_index=index, **CONFIG)
        model = copy.deepcopy(clean).to(device)
        wm.embed(model, splits, preset, 0, clean=model)
        model = model.cpu().eval()
        key = wm.calibrate(wm.make_key(model, splits, preset, 0), nulls, explainers=PERTURBATION_EXPLAINERS)
        owners[payload] = (wm, model, key)
    return preset, splits, clean, nulls, owners


@pytest.mark.xfail(strict=True, reason=DECODE_MISS)
def test_qr_decodes_with_at_least_three_perturbation_explainers(world):
    *_, owners = world
    wm, model, key = owners["OWNERA"]
    decoded = [e for e in PERTURBATION_EXPLAINERS if wm.verify(model, key, explainer=e).qr_decoded]
    assert len(decoded) >= 3, decoded


def test_bit_accuracy_at_least_095(world):
    *_, owners = world
    wm, model, key = owners["OWNERA"]
    best = max(wm.verify(model, key, explainer=e).asr for e in PERTURBATION_EXPLAINERS)
    assert best >= 0.95


@pytest.mark.xfail(strict=True, reason=HARM_MISS)
def test_harmless(world):
    preset, splits, clean, _, owners = world
    wm, model, _ = owners["OWNERA"]
    drop = utility(clean, splits.test, 64)[0]["dice"] - utility(model, splits.test, 64)[0]["dice"]
    assert drop <= 0.01


def test_output_stealth(world):
    preset, splits, _, _, owners = world
    wm, model, _ = owners["OWNERA"]
    triggered = wm.trigger.apply(splits.test.images)
    flip = scoring.flip_rate(predict_proba(model, splits.test.images), predict_proba(model, triggered),
                             exclude=wm.trigger.footprint(preset.image_size, preset.image_size))
    assert scoring.summarize(flip) <= 0.002


@pytest.mark.xfail(strict=True, reason=NULL_BAND_MISS)
def test_nulls_never_decode_and_stay_in_the_binomial_band(world):
    *_, nulls, owners = world
    wm, _, key = owners["OWNERA"]
    n = key.arrays["modules"].size
    half_width = 2.576 * np.sqrt(0.25 / n)
    for name, model in nulls.items():
        for e in PERTURBATION_EXPLAINERS:
            r = wm.verify(model, key, explainer=e)
            assert not r.qr_decoded and not r.verified, (name, e)
            assert abs(r.asr - 0.5) <= half_width, (name, e, r.asr)


def test_two_owners_verify_only_their_own(world):
    *_, owners = world
    for mine, (wm, model, key) in owners.items():
        for theirs, (_, other, _) in owners.items():
            r = wm.verify(other, key, explainer="lime")
            assert r.verified == (mine == theirs), (mine, theirs, r.asr, r.p_value, r.p_value_null_empirical)
