"""`harness verify` on a checkpoint file answers exactly as the owner's in-memory model does, for every
registered architecture and for checkpoints saved outside the harness (wrapped, DataParallel-prefixed).

The keys are built on perturbed, untrained smoke models: nothing here is a verified mark, the point is
that the file -> architecture path loses nothing. Each model is compared with a second, differently
seeded model of the same architecture, so a loader that silently kept fresh weights would fail.
"""

import json
from functools import lru_cache

import numpy as np
import pytest
import torch

from harness.checkpoints import export_checkpoint, load_state_dict
from harness.cli import main
from harness.data import make_splits
from harness.presets import get_preset
from harness.registry import MODELS
from harness.segmenter import build_model, predict_proba
from harness.watermark import Key
from watermarks.stealthmark import StealthMark
from watermarks.stealthmark_qr import StealthMarkQR

MODEL_NAMES = MODELS.names()
PRESET = "smoke"


def perturbed_model(name: str, seed: int):
    """A smoke model whose weights AND batch-norm statistics are moved off their initial values, so that a
    loader which dropped either (or loaded a fresh network) would answer differently."""
    torch.manual_seed(seed)
    model = build_model(name, PRESET)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.net.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=gen))
        for buffer_name, buffer in model.net.named_buffers():
            if buffer_name.endswith("running_var"):
                buffer.mul_(0.5 + torch.rand(buffer.shape, generator=gen))
            elif buffer_name.endswith("running_mean"):
                buffer.add_(0.1 * torch.randn(buffer.shape, generator=gen))
    return model.eval()


def record_of(result) -> dict:
    """What the CLI prints for a result, through JSON, so floats compare exactly as printed."""
    return json.loads(json.dumps(result.as_record()))


def verify_cli(capsys, name, checkpoint, key_path, *extra):
    code = main(["verify", "--model", name, "--preset", PRESET, "--checkpoint", str(checkpoint),
                 "--key", str(key_path), *extra])
    out, err = capsys.readouterr()
    return code, out, err


def printed_record(out: str) -> dict:
    return json.loads(out[out.index("\n{") + 1:])


@pytest.fixture(scope="module")
def owner(tmp_path_factory):
    """``owner(name)``: (model, key path, checkpoint path, in-memory record, other model's record),
    built once per architecture and shared by every test of this file."""
    preset = get_preset(PRESET)
    splits = make_splits("synthetic-polyp", preset, 0)
    root = tmp_path_factory.mktemp("owners")
    watermark = StealthMark()

    @lru_cache(maxsize=None)
    def build(name):
        torch.set_num_threads(1)
        model = perturbed_model(name, seed=1)
        nulls = {f"null-{s}": perturbed_model(name, seed=s) for s in (2, 3)}
        key = watermark.calibrate(watermark.make_key(model, splits, preset, 0), nulls)
        key_path = key.save(root / f"{name}.npz")
        checkpoint = export_checkpoint(model, root / f"{name}.pt")
        explainer = key.meta.get("explainer")
        expected = record_of(watermark.verify(model, key, explainer=explainer, seed=0))
        other = record_of(watermark.verify(nulls["null-2"], key, explainer=explainer, seed=0))
        return model, key_path, checkpoint, expected, other

    return build


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_verify_from_a_checkpoint_matches_the_in_memory_model(capsys, owner, name):
    model, key_path, checkpoint, expected, other = owner(name)
    probs = predict_proba(model, torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
    assert probs.std() > 1e-3, "answers must vary, or equal records would prove nothing"
    assert other["score"] != expected["score"], "a differently seeded model must be told apart"
    code, out, err = verify_cli(capsys, name, checkpoint, key_path)
    assert code == 0, err
    verdict, _, rest = out.partition("\n")
    assert verdict.startswith(("VERIFIED: stealthmark key, asr", "NOT VERIFIED: stealthmark key, asr"))
    assert rest.startswith("against 2 null models: score")
    record = printed_record(out)
    for field in ("asr", "fpr", "score", "p_value", "p_value_null_empirical", "p_value_null_parametric", "null_threshold", "payload_read"):
        assert record[field] == expected[field], (field, record[field], expected[field])
    assert {k: record[k] for k in expected} == expected
    assert record["verdict"] == verdict.split(":")[0]


LAYOUTS = {
    "state_dict": lambda sd: {"epoch": 3, "state_dict": sd},
    "model_state_dict": lambda sd: {"model_state_dict": sd, "optimizer": {"lr": torch.tensor(1e-3)}},
    "model": lambda sd: {"model": sd},
    "dataparallel": lambda sd: {f"module.{k}": v for k, v in sd.items()},
    "wrapped-dataparallel": lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
    # DataParallel around the whole Segmenter: its `net.` lies between `module.` and the real keys
    "dataparallel-segmenter": lambda sd: {f"module.net.{k}": v for k, v in sd.items()},
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_foreign_layouts_give_the_same_answers(capsys, owner, tmp_path, name, layout):
    """unet / attention-unet keys start with `model.`, unetr / swin-unetr with `net.`: those prefixes are
    the architecture's own and must survive, while the wrapper's are removed."""
    _, key_path, checkpoint, expected, _ = owner(name)
    state = torch.load(checkpoint, weights_only=True)
    foreign = tmp_path / f"{layout}.pth"
    torch.save(LAYOUTS[layout](state), foreign)
    code, out, err = verify_cli(capsys, name, foreign, key_path)
    assert code == 0, err
    record = printed_record(out)
    assert {k: record[k] for k in expected} == expected


def _one_line_error(code, err, *fragments):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def _unet_state(owner):
    return torch.load(owner("unet")[2], weights_only=True)


@pytest.mark.parametrize("case", ["other-architecture", "prefix-removed", "wrong-shape", "extra-key"])
def test_a_checkpoint_that_does_not_fit_even_after_stripping_is_one_line(capsys, owner, tmp_path, case):
    state = _unet_state(owner)
    first = next(iter(state))  # model.0.conv.unit0.conv.weight
    if case == "other-architecture":
        bad = {f"module.{k}": v for k, v in torch.load(owner("basic-unet")[2], weights_only=True).items()}
        fragments = ("missing (e.g. model.0.", "unexpected")
    elif case == "prefix-removed":
        # the old loader's mistake, made by the saver: the architecture's own `model.` is gone
        bad = {k[len("model."):]: v for k, v in state.items()}
        fragments = ("49 missing (e.g. model.0.",)
    elif case == "wrong-shape":
        bad = {f"module.{k}": (v[:1] if k == first else v) for k, v in state.items()}
        fragments = (f"1 wrong shape (e.g. {first})",)  # named as the architecture calls it: stripping fitted
    else:
        bad = {"state_dict": {**{f"module.{k}": v for k, v in state.items()}, "module.extra.weight": torch.zeros(1)}}
        # reported in the layout that fits but for it: the one extra tensor, and nothing missing
        fragments = ("model 'unet' (preset smoke): 1 unexpected (e.g. extra.weight)",)
    path = tmp_path / "bad.pt"
    torch.save(bad, path)
    code, out, err = verify_cli(capsys, "unet", path, owner("unet")[1])
    _one_line_error(code, err, "does not fit model 'unet' (preset smoke)", *fragments)
    assert out == ""


def test_load_state_dict_keeps_saved_keys_without_an_architecture(owner, tmp_path):
    state = _unet_state(owner)
    path = tmp_path / "dp.pt"
    torch.save({f"module.{k}": v for k, v in state.items()}, path)
    assert set(load_state_dict(path)) == {f"module.{k}" for k in state}
    assert set(load_state_dict(path, state)) == set(state)


# -- StealthMark-QR: no benign queries, so no fpr -------------------------------------------------------
@pytest.fixture(scope="module")
def qr_owner(tmp_path_factory):
    torch.set_num_threads(1)
    preset = get_preset(PRESET)
    splits = make_splits("synthetic-polyp", preset, 0)
    root = tmp_path_factory.mktemp("qr")
    watermark = StealthMarkQR()
    model = perturbed_model("unet", seed=1)
    key = watermark.make_key(model, splits, preset, 0)
    uncalibrated = key.save(root / "uncalibrated.npz")
    nulls = {f"null-{s}": perturbed_model("unet", seed=s) for s in (2, 3)}
    calibrated = watermark.calibrate(key, nulls, explainers=["lime", "captum-occlusion"]).save(root / "calibrated.npz")
    return watermark, model, key, export_checkpoint(model, root / "unet.pt"), {"uncalibrated": uncalibrated,
                                                                              "calibrated": calibrated}


@pytest.mark.parametrize("explainer", ["lime", "captum-occlusion"])
@pytest.mark.parametrize("calibrated", ["uncalibrated", "calibrated"])
def test_verify_prints_a_verdict_for_a_stealthmark_qr_key(capsys, qr_owner, calibrated, explainer):
    """fpr is None for this scheme; the verdict line reports the bits read instead of crashing on it."""
    watermark, model, key, checkpoint, keys = qr_owner
    code, out, err = verify_cli(capsys, "unet", checkpoint, keys[calibrated], "--explainer", explainer)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("NOT VERIFIED: stealthmark-qr key, bit accuracy ") and "payload modules" in lines[0]
    assert "fpr" not in lines[0]
    if calibrated == "calibrated":
        cal = key.meta["null_calibrations"][explainer]
        assert lines[1].startswith("against 2 null models: score") and f"{cal['threshold']:.3f}" in lines[1]
    else:
        assert lines[1].startswith("uncalibrated key")
    record = printed_record(out)
    expected = record_of(watermark.verify(model, Key.load(keys[calibrated]), explainer=explainer, seed=0))
    assert record["fpr"] is None and record["explainer"] == explainer
    assert {k: record[k] for k in expected} == expected
    assert (record["p_value_null_empirical"] is None) == (calibrated == "uncalibrated")
    assert np.isclose(record["asr"], record["bit_accuracy"])
    # the certificate line: the explainer's verdict, the payload its explanation spells, the bits it read
    certificate = next(line for line in lines if line.startswith(f"certificate ({explainer}): NOT VERIFIED"))
    assert "payload read None (not the owner's payload)" in certificate
    assert f"bit accuracy {record['bit_accuracy']:.3f}" in certificate and "best message" in certificate
