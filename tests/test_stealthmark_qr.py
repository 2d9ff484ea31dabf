"""Fast checks of stealthmark-qr (smoke preset and toy functions; seconds, not minutes)."""

import copy

import numpy as np
import pytest
import torch

from harness import qr
from harness.data import make_splits
from harness.presets import get_preset
from harness.registry import WATERMARKS
from harness.segmenter import build_model
from harness.watermark import Key
from watermarks import stealthmark_qr as smq


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield


def test_registered():
    assert WATERMARKS.get("stealthmark-qr") is smq.StealthMarkQR


@pytest.mark.parametrize("qr_type, payload", [("M2", "OWNERA"), ("M3", "HOSPITAL-A"), ("1", "HOSPITAL-A:2026")])
def test_payload_round_trip_through_modules_render_decode(qr_type, payload):
    modules = qr.encode_symbol(payload, qr_type, "L")
    side = qr.MICRO_TYPES.get(qr_type, 21)
    assert modules.shape == (side, side)
    assert qr.decode_symbol(modules, qr_type) == payload
    # weights whose signs (about the median) spell the modules decode too
    rng = np.random.default_rng(0)
    weights = np.where(modules, 1.0, -1.0) * rng.uniform(0.5, 2.0, modules.shape) + 0.3
    assert qr.decode_symbol(smq.read_bits(weights.ravel(), int(modules.sum())).reshape(modules.shape), qr_type) == payload


def test_payload_that_does_not_fit_fails_early():
    with pytest.raises(Exception, match="does not fit"):
        smq.StealthMarkQR(payload="THIS-PAYLOAD-IS-FAR-TOO-LONG", code="qr", qr_type="M2")
    with pytest.raises(Exception, match="4 characters"):
        smq.StealthMarkQR(payload="OWNERA")  # the linear code carries 4 characters


@pytest.mark.parametrize("name, value", [("code", "qr2"), ("signal", "ridg"), ("seg_target", "labels"), ("reads", 0),
                                         ("mask_mix", (1, -1, 1)), ("warmup", -1)])
def test_unknown_options_fail_early(name, value):
    with pytest.raises(Exception, match=name):
        smq.StealthMarkQR(**{name: value})


def test_linear_code_target_and_key_carry_no_function_patterns():
    wm = smq.StealthMarkQR(payload="OWNA")
    assert wm.modules.shape == (13, 13) and 0.35 < wm.modules.mean() < 0.65
    other = smq.StealthMarkQR(payload="OWNB").modules
    assert 0.25 < (wm.modules != other).mean() < 0.75  # two owners' targets differ in many patches


def test_shared_modules_are_the_function_patterns():
    shared = qr.shared_modules("OWNERA", "M2", "L")
    assert shared[:7, :7].all()  # the finder pattern is in every Micro QR code
    assert 0.2 < shared.mean() < 0.7  # ... but the payload region is not
    a, b = qr.encode_symbol("OWNERA", "M2", "L"), qr.encode_symbol("OWNERB", "M2", "L")
    assert (a[shared] == b[shared]).all() and (a[~shared] != b[~shared]).any()


def test_ridge_weights_recover_a_linear_function():
    gen = torch.Generator().manual_seed(0)
    z = smq.sample_masks(2000, 12, gen)
    theta = torch.linspace(-1, 1, 12, dtype=torch.float64)
    w = smq.ridge_weights(z.double(), 0.7 + z.double() @ theta, lam=1e-3)
    assert torch.allclose(w, theta, atol=1e-6)


def test_sign_hinge_gradient_moves_signs_towards_the_bits():
    """Toy differentiable 'model' y = Z theta: descending the hinge on the closed-form ridge weights of
    fresh masks makes the weights' signs (about their median) spell the bits."""
    gen = torch.Generator().manual_seed(1)
    bits = torch.tensor([1.0, -1, -1, 1, 1, -1, 1, -1, -1, 1, 1, -1])
    theta = (0.01 * torch.randn(12, generator=gen)).requires_grad_()
    # one step: the gradient of every violated module's weight points against its bit
    z = smq.sample_masks(256, 12, gen).double()
    w = smq.ridge_weights(z, z @ theta.double(), 1.0)
    smq.sign_hinge(w.float(), bits, margin=1.0, tau=0.05).backward()
    violated = bits * smq.centred(w.detach().float(), 0.5) < 0.05
    assert (torch.sign(theta.grad[violated]) == -bits[violated]).float().mean() >= 0.9
    optimizer = torch.optim.SGD([theta], lr=0.05)
    for _ in range(100):
        z = smq.sample_masks(64, 12, gen).double()
        loss = smq.sign_hinge(smq.ridge_weights(z, z @ theta.double(), 1.0).float(), bits, 1.0, 0.05)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05
    read = smq.read_bits(theta.detach().numpy(), int((bits > 0).sum()))
    assert (read == (bits > 0).numpy()).all()


def untrained_nulls(count: int, first_seed: int) -> dict:
    """Stand-ins for null models: untrained networks, each from its own seed (n0, n1, ...)."""
    nulls = {}
    for i in range(count):
        torch.manual_seed(first_seed + i)
        nulls[f"n{i}"] = build_model("basic-unet", "smoke").eval()
    return nulls


@pytest.fixture(scope="module")
def smoke():
    preset = get_preset("smoke")
    splits = make_splits("synthetic-polyp", preset, 0)
    torch.manual_seed(0)
    model = build_model("basic-unet", "smoke")
    wm = smq.StealthMarkQR(steps=3, masks_per_step=8, batch_size=4)
    # three fine-tuning steps from an untrained network: a null-ish model that carries no mark
    model = wm.embed(model, splits, preset, 0, clean=build_model("basic-unet", "smoke"))
    return wm, model, splits, preset


def test_embed_runs_and_keeps_batch_norm_statistics(smoke):
    wm, model, _, _ = smoke
    assert len(wm.history) == 3 and all(np.isfinite(h).all() for h in wm.history)
    assert not model.training
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))  # frozen: never updated


def test_key_save_load_round_trip(smoke, tmp_path):
    wm, model, splits, preset = smoke
    key = wm.make_key(model, splits, preset, 0)
    loaded = Key.load(key.save(tmp_path / "k.npz"))
    assert loaded.meta["payload"] == "OWNA" and loaded.meta["grid"] == 13 and loaded.meta["code"] == "linear"
    assert not loaded.arrays["shared_modules"].any()
    for name in ("trigger_image", "modules", "shared_modules"):
        assert np.array_equal(loaded.arrays[name], key.arrays[name])
    assert loaded.arrays["trigger_image"].shape == (3, 32, 32)


def test_verify_fields_and_a_random_model_does_not_decode(smoke):
    wm, model, splits, preset = smoke
    key = wm.make_key(model, splits, preset, 0)
    result = wm.verify(model, key, explainer="captum-occlusion")
    assert 0 <= result.asr <= 1 and result.asr == result.bit_accuracy
    assert result.score == result.bit_accuracy_payload and 0 < result.p_value <= 1
    assert result.fpr is None and result.queries == 13 * 13 + 1
    assert result.certificate.shape == (13, 13)
    assert result.qr_decoded is False and not result.verified  # no calibration: never verified
    assert "certificate" not in result.as_record() and "bit_accuracy" in result.as_record()


def test_calibration_per_explainer_gates_the_verdict(smoke):
    wm, model, splits, preset = smoke
    key = wm.make_key(model, splits, preset, 0)
    nulls = untrained_nulls(3, first_seed=10)
    wm.calibrate(key, nulls, explainers=["captum-occlusion"])
    cal = key.meta["null_calibrations"]["captum-occlusion"]
    assert cal["members"] == ["n0", "n1", "n2"] and len(key.meta["null_bit_accuracy"]["captum-occlusion"]) == 3
    result = wm.verify(model, key, explainer="captum-occlusion")
    assert result.null_threshold == cal["threshold"] and result.p_value_null_empirical is not None
    assert not result.verified
    # an explainer without a calibration never verifies
    assert wm.verify(model, key, explainer="lime").p_value_null_empirical is None


def test_occlusion_effects_are_each_patchs_exact_effect_at_the_base():
    """A toy model whose background mean is linear in the kept pixels: each patch's effect, at any base,
    is its own coefficient, with the sign the kept-minus-removed convention gives it."""

    class Linear(torch.nn.Module):
        def forward(self, x):  # probabilities 0.25 + 0.5 * channel mean, as logits
            return torch.logit(0.25 + 0.5 * x.mean(1, keepdim=True))

    gen = torch.Generator().manual_seed(3)
    image = torch.rand(3, 12, 12, generator=gen)
    feature_mask = torch.from_numpy(qr.grid_feature_mask(12, 12, 4))
    coefficient = torch.stack([0.5 * image.mean(0)[feature_mask == p].sum() / 144 for p in range(16)])
    for density in (1.0, 0.5, 0.0):
        base = (torch.rand(16, generator=gen) < density).float()
        effects, logits = smq.occlusion_effects(Linear(), image, feature_mask, smq.get_reduction("foreground-mean"), None, base)
        assert logits.shape == (17, 1, 12, 12)
        assert torch.allclose(effects, coefficient, atol=1e-6)


def test_a_read_is_remembered_per_weights_key_explainer_and_seed(smoke, monkeypatch):
    """A cell reads each null to calibrate and again to judge it against the others: the second read is the
    first one's, and anything a read depends on (the weights, the seed, the key's image) makes a new one."""
    wm, model, splits, preset = smoke
    key = wm.make_key(model, splits, preset, 0)
    fresh = smq.StealthMarkQR(steps=3, masks_per_step=8, batch_size=4)
    expected = fresh.read(model, key, "captum-lime", seed=1)
    explained = []
    real = smq.StealthMarkQR.read_weights
    monkeypatch.setattr(smq.StealthMarkQR, "read_weights",
                        lambda self, *a, **k: explained.append(a[2:]) or real(self, *a, **k))
    assert [np.array_equal(wm.read(model, key, "captum-lime", seed=1)[0], expected[0]) for _ in range(2)] == [True] * 2
    assert len(explained) == 1 and wm.read(model, key, "captum-lime", seed=1)[1] == expected[1]
    changed = copy.deepcopy(model)
    with torch.no_grad():
        next(changed.parameters()).add_(0.01)
    other_image = Key(dict(key.meta), {**key.arrays, "trigger_image": 255 - key.arrays["trigger_image"]})
    for args in ((changed, key, "captum-lime", 1), (model, key, "captum-lime", 2), (model, other_image, "captum-lime", 1),
                 (model, key, "captum-occlusion", 1)):
        wm.read(*args)
    assert len(explained) == 5


def test_a_run_calibrates_the_key_for_its_own_explainers_only(smoke, tmp_path):
    from harness.cache import ArtifactCache
    from harness.tasks import embedded_model_and_key

    wm, _, splits, preset = smoke
    nulls = untrained_nulls(3, first_seed=20)
    cache = ArtifactCache(tmp_path)
    _, key = embedded_model_and_key(cache, wm, "basic-unet", "synthetic-polyp", preset, 0, splits, nulls,
                                    explainers=("captum-occlusion",))
    assert list(key.meta["null_calibrations"]) == ["captum-occlusion"]
    # another run's explainers are another key: never one that lacks their calibration
    _, other = embedded_model_and_key(cache, wm, "basic-unet", "synthetic-polyp", preset, 0, splits, nulls,
                                      explainers=("captum-lime", "captum-occlusion"))
    assert sorted(other.meta["null_calibrations"]) == ["captum-lime", "captum-occlusion"]


def test_innocents_are_judged_each_against_the_others_with_the_cells_explainer(smoke):
    """The leaderboard's null_verified for StealthMark-QR: each null read with the cell's explainer and seed,
    against the other nulls' bit accuracies (a read has no sampling error to widen the band with)."""
    from harness.measure import innocents_verified

    wm, model, splits, preset = smoke
    key = wm.make_key(model, splits, preset, 0)
    nulls = untrained_nulls(4, first_seed=30)
    out = innocents_verified(wm, nulls, key, 0.05, explainer="captum-occlusion", seed=1)
    assert out["verified"] == 0.0 and out["fpr"] is None
    reads = [wm.read(m, key, "captum-occlusion", 1)[0] for m in nulls.values()]
    assert out["asr"] == pytest.approx(np.mean([wm.bit_scores(r, key)["bit_accuracy"] for r in reads]))


def test_a_grid_run_writes_its_cells_before_and_after_an_attack(tmp_path, monkeypatch):
    """The path a leaderboard row takes (embed, key for the run's explainer, before, attack, after), in this
    process, with three embedding steps: each cell is written, read with the run's explainer, and judged
    against its nulls under the same attack."""
    import functools

    from harness.runner import benchmark

    monkeypatch.setattr(smq.StealthMarkQR, "__init__",
                        functools.partialmethod(smq.StealthMarkQR.__init__, steps=3, masks_per_step=8, batch_size=4))
    out = benchmark(watermarks=["stealthmark-qr"], attack="none,hard-mask.masks", preset="smoke",
                    explainer="captum-occlusion", results=tmp_path, workers=1, log=lambda m: None)
    assert [r.status for r in out.records] == ["ok", "ok"], [r.error for r in out.records]
    for r in out.records:
        m = r.metrics
        assert r.spec["explainer"] == "captum-occlusion" and m["nulls_after"] == 4
        assert m["verified_after"] == 0.0 and m["null_verified_after"] == 0.0
    untouched = next(r.metrics for r in out.records if r.spec["attack"] == "none")
    # no attack: the suspect read after is the model read before, bit for bit
    assert untouched["bit_accuracy_after"] == untouched["bit_accuracy_before"]


def test_the_committed_leaderboard_has_it_beside_stealthmark_under_every_attack_at_three_seeds():
    """Issue 18's last bar, on the committed records (``scripts/regenerate_results.sh stealthmark-qr``): every
    serving attack and every attack of the suite, seeds 0, 1, 2, for StealthMark-QR and StealthMark alike."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    script = (root / "scripts" / "regenerate_results.sh").read_text().splitlines()

    def listed(name):  # the script's NAME=a,b and NAME=$NAME,c lines, attack names without their setting
        values = [line.split("=", 1)[1] for line in script if line.startswith(f"{name}=")]
        return {v.split(".")[0] for line in values for v in line.split(",") if not v.startswith("$")}

    attacks = listed("QR_SERVING") | listed("SUITE")
    assert listed("SERVING") <= attacks and len(attacks) >= 25
    seeds: dict = {}
    for path in (root / "results" / "runs").glob("*.json"):
        record = json.loads(path.read_text())
        spec = record["spec"]
        if spec["watermark"] in ("stealthmark", "stealthmark-qr") and spec["trigger"] == "patch":
            assert record["status"] == "ok" or spec["watermark"] != "stealthmark-qr", (path.name, record["error"])
            if record["status"] == "ok":
                seeds.setdefault((spec["watermark"], spec["attack"]), set()).add(spec["seed"])
    missing = [(w, a) for w in ("stealthmark", "stealthmark-qr") for a in sorted(attacks)
               if not {0, 1, 2} <= seeds.get((w, a), set())]
    assert missing == []
