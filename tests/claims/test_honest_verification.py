"""Claims of the honest-verification issue, re-measured on real tiny-preset models.

Trains every baseline, StealthMark with every trigger family, the 19-model null
population and 6 held-out null models: about half an hour on 2 cores, so it is
not part of the default run. The full false-accusation certification (at least
59 held-out innocent models over three architectures) is `harness certify`, whose
records are committed in results/certification/; this is its smaller re-run. Run it with::

    .venv/bin/python -m pytest -m claims

``HARNESS_CLAIMS_RESULTS=DIR`` reuses the models cached in ``DIR/cache`` (hash-verified,
e.g. ./results after the README's runs); otherwise everything is trained from scratch.
The bars are the issue's; where one is not met the test is a strict xfail carrying the
measured value, never a loosened bar.
"""

import os

import pytest

from harness.artifact_guard import artifact_check
from harness.attack import AttackerKit
from harness.cache import ArtifactCache
from harness.calibration import clopper_pearson_upper
from harness.data import make_splits
from harness.nulls import null_population, population_spec
from harness.presets import get_preset
from harness.registry import ATTACKS, BASELINES, EXPLAINERS, WATERMARKS
from harness.runner import benchmark
from harness.tasks import attack_population, embedded_model_and_key
from harness.training import DEFAULT_THREADS, torch_threads
from harness.watermark import trigger_from_spec

pytestmark = pytest.mark.claims

STEALTHMARK_TRIGGERS = ("patch", "text", "border", "noise", "warp", "blend")
HELD_OUT = 6
# Measured at seed 0 on the CPU CI runs on (AMD family 26, torch AVX512; the earlier CPU measured 0.0103,
# 0.0106, 0.0171, 0.0122, 0.0387, 0.0440): the flip rate, held so that getting worse turns red, and the
# clean model's own flip rate on the same triggered images. Strict: a met bar turns the xfail red.
_MISS = ("bar not met at tiny scale: measured flip_rate {} (seed 0) vs flip_rate_clean {}; "
         "README 'Honest verification'. strict: turns red once met")
STEALTH_MEASURED = {"patch": (0.0122, 0.0023), "text": (0.0132, 0.0115), "border": (0.0177, 0.0209),
                    "noise": (0.0160, 0.0015),
                    # Full-image triggers: compared with the clean model's mask on the same triggered image,
                    # whose disagreement with the watermarked model on benign images (flip_rate_clean) is a floor.
                    "warp": (0.0370, 0.0283), "blend": (0.0383, 0.0300)}
STEALTH_BAR_MISSES = {trigger: _MISS.format(*measured) for trigger, measured in STEALTH_MEASURED.items()}


@pytest.fixture(scope="module")
def results(claims_results):
    return claims_results


@pytest.fixture(scope="module")
def before(results):
    """(watermark, trigger) -> the metrics of the untouched watermarked model."""
    quiet = lambda msg: None  # noqa: E731
    records = benchmark(watermarks=BASELINES.names(), attack="none", results=results, log=quiet).records
    # One grid for the six triggers, so the two workers embed two at a time (one run per trigger left one idle).
    records += benchmark(watermarks=["stealthmark"], trigger=",".join(STEALTHMARK_TRIGGERS), attack="none",
                         results=results, log=quiet).records
    return {(r.spec["watermark"], r.spec["trigger"]): r.metrics for r in records}


@pytest.mark.parametrize("baseline", BASELINES.names())
def test_every_baseline_flips_its_target_and_verifies(before, baseline):
    m = next(m for (w, _), m in before.items() if w == baseline)
    assert m["flip_rate"] >= 0.10, f"{baseline}: flip_rate {m['flip_rate']:.4f}"
    assert m["asr_before"] >= 0.9, f"{baseline}: asr_before {m['asr_before']:.3f}"
    # Verified on the distribution-free rule: beyond all 19 nulls of its architecture.
    assert m["verified_before"] == 1.0 and m["nulls_before"] == 19 and m["p_value_null_empirical_before"] == 1 / 20


@pytest.mark.parametrize("trigger", STEALTHMARK_TRIGGERS)
def test_stealthmark_verifies_with_every_trigger_family(before, trigger):
    m = before[("stealthmark", trigger)]
    assert m["asr_before"] >= 0.95, f"{trigger}: asr_before {m['asr_before']:.3f}"
    assert m["verified_before"] == 1.0 and m["nulls_before"] == 19 and m["p_value_null_empirical_before"] == 1 / 20


@pytest.mark.parametrize("trigger", [
    pytest.param(t, marks=pytest.mark.xfail(strict=True, reason=STEALTH_BAR_MISSES[t]))
    if t in STEALTH_BAR_MISSES else t for t in STEALTHMARK_TRIGGERS])
def test_stealthmark_output_stealth_with_every_trigger_family(before, trigger):
    assert before[("stealthmark", trigger)]["flip_rate"] <= 0.002


@pytest.mark.parametrize("trigger", STEALTHMARK_TRIGGERS)
def test_stealthmark_output_stealth_does_not_regress_with_any_trigger_family(before, trigger):
    """The bar above is missed with every trigger; this holds each measured flip rate."""
    assert before[("stealthmark", trigger)]["flip_rate"] <= STEALTH_MEASURED[trigger][0]


@pytest.fixture(scope="module")
def owner(results, before):
    """Every mark's model and key, the calibration population and the held-out nulls."""
    preset = get_preset("tiny")
    cache = ArtifactCache(os.path.join(results, "cache"))
    splits = make_splits("synthetic-polyp", preset, 0)
    spec = population_spec("tiny", "basic-unet")
    nulls = null_population(cache, "synthetic-polyp", preset, 0, spec, log=lambda m: None)
    held_out = null_population(cache, "synthetic-polyp", preset, 0, spec, held_out=HELD_OUT, log=lambda m: None)
    marks = [(BASELINES.get(name)(), name) for name in BASELINES.names()]
    marks += [(WATERMARKS.get("stealthmark")(trigger=t), f"stealthmark/{t}") for t in STEALTHMARK_TRIGGERS]
    with torch_threads(DEFAULT_THREADS):  # as the run of `before` trained them: its cache entries, not retrained
        keyed = {label: (wm, *embedded_model_and_key(cache, wm, "basic-unet", "synthetic-polyp", preset, 0, splits,
                                                     nulls)) for wm, label in marks}
    return keyed, nulls, held_out, splits


def test_held_out_nulls_clean_or_pruned_against_each_key_and_the_bound_counts_models(owner):
    """Each held-out model is queried with every mark's key, as it is and after pruning 30% of its weights
    (judged against the nulls pruned the same way). The unit is the model, per key: the rule's level (5%)
    holds per key, so a model accused by *some* of 11 keys is expected now and then (11 keys x 6 models
    at 5% would give about 3 per version if independent). Measured on the CPU CI runs on (AMD family 26,
    torch AVX512; another CPU trains other models from the same seeds, docs/determinism.md): StealthMark's
    key accused none of the 6 under either verifier (bound 0.393); BadNets' key accused basic-unet-seed21,
    pruned, under the detector, and clean and pruned under paired-rank (bound 0.582); over all 11 keys the
    detector made three accusations (also wanet's key on seed21 pruned and on seed22 clean), paired-rank
    four (also border-backdoor's key on seed23, clean and pruned). The earlier development CPU measured
    0 and 0 for the two certified keys under the detector, 1 and 0 under paired-rank, and 1 and 3
    accusations over all keys. At a 5% level per key, 1 of 6 is what chance gives about a quarter of the
    time; six models cannot show more: the certification (59+ models) is `harness certify`. Held, so
    that more turns red."""
    keyed, nulls, held_out, splits = owner
    assert not set(held_out) & set(nulls), "held-out nulls must not have set any threshold"
    prune = ATTACKS.get("prune")()
    kit = AttackerKit(splits.attacker, "basic-unet", get_preset("tiny"), null_models=nulls)
    with torch_threads(DEFAULT_THREADS):
        pruned_nulls = attack_population(prune, nulls, kit, 0.3, 0)
        pruned_models = {name: prune.apply(model, kit, 0.3, 0) for name, model in held_out.items()}
        accused = set()
        for label, (wm, _, key) in keyed.items():
            for verifier in wm.verifiers:
                pruned_calibration = wm.null_calibration(key, pruned_nulls, key.meta["null_calibration"]["level"],
                                                         verifier=verifier)
                for name, model in held_out.items():
                    if wm.verify(model, key, certify=False, verifier=verifier).verified:
                        accused.add((name, label, "clean", verifier))
                    if wm.verify(pruned_models[name], key, certify=False, calibration=pruned_calibration,
                                 verifier=verifier).verified:
                        accused.add((name, label, "pruned 0.3", verifier))
    # Measured (held: more turns red): models accused per certified key, and accusations over all 11 keys.
    measured = {("detector", "stealthmark/patch"): (0, 0.393), ("detector", "badnets"): (1, 0.582),
                ("paired-rank", "stealthmark/patch"): (0, 0.393), ("paired-rank", "badnets"): (1, 0.582)}
    for (verifier, certified), (most, bound) in measured.items():
        mine = sorted(a for a in accused if a[1] == certified and a[3] == verifier)
        models_accused = len({a[0] for a in mine})
        assert models_accused <= most, f"{certified} ({verifier}): {mine}"
        # The bound the docstring and docs quote is that of the recorded count over these held-out models.
        assert round(clopper_pearson_upper(most, len(held_out)), 3) == bound
    for verifier, most in (("detector", 3), ("paired-rank", 4)):
        assert len([a for a in accused if a[3] == verifier]) <= most, f"accused: {sorted(accused)}"


@pytest.mark.parametrize("explainer", EXPLAINERS.names())
def test_artifact_guard_flags_exactly_the_model_independent_explainer(owner, explainer):
    keyed, nulls, _, _ = owner
    wm, marked, key = keyed["stealthmark/patch"]
    image = trigger_from_spec(key.meta["watermark"]["trigger"]).apply(key.queries().images[:1])[0]
    # Ten nulls are plenty to tell a model-dependent explainer from one that is not, and each null costs
    # 1,000 explained forward passes per explainer: the guard does not need all 19.
    result = artifact_check(explainer, marked, dict(list(nulls.items())[:10]), image, n_samples=1000)
    assert result.flagged == (not EXPLAINERS.get(explainer).model_dependent_by_design), result.line()


@pytest.mark.parametrize("explainer", [n for n in EXPLAINERS.names() if EXPLAINERS.get(n).model_dependent_by_design])
def test_every_explainer_runs_stealthmarks_verification(owner, explainer):
    """The swappable-explainer issue: each explainer reads the certificate on the watermarked model,
    and none reads it on a null model (whose detector does not fire)."""
    keyed, nulls, _, _ = owner
    wm, marked, key = keyed["stealthmark/patch"]
    result = wm.verify(marked, key, explainer=explainer)
    assert result.verified and result.qr_decoded, f"{explainer}: read {result.payload_read!r}"
    innocent = wm.verify(nulls["basic-unet-seed1"], key, explainer=explainer)
    assert not innocent.verified and not innocent.qr_decoded
