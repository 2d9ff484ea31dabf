"""QR certificates and explainer plugins: the pieces that read a StealthMark-style certificate."""

import numpy as np
import pytest
import torch

from harness import qr
from harness.errors import HarnessError
from harness.explainer import Explainer
from harness.registry import EXPLAINERS

PAYLOAD = "owner:st-marys-hospital/2026"
# 28 bytes need version 4 at level H; version 1 at level H holds only 9.
PAYLOAD_VERSION = 4


@pytest.fixture(scope="module")
def modules():
    return qr.encode_payload(PAYLOAD, version=PAYLOAD_VERSION, error_correction="H")


# -- QR ---------------------------------------------------------------------
def test_version_1_is_21_by_21():
    m = qr.encode_payload("wm:1", version=1)
    assert m.shape == (21, 21) and m.dtype == bool
    # Finder pattern corner: no quiet zone in the matrix.
    assert m[0, 0] and m[0, 6] and not m[1, 1]


def test_payload_too_long_for_version_raises():
    with pytest.raises(HarnessError, match="does not fit a version-1"):
        qr.encode_payload(PAYLOAD, version=1)


@pytest.mark.parametrize("decoder", qr.DECODERS)
def test_round_trip_with_each_decoder(modules, decoder):
    assert decoder in qr.available_decoders()
    image = qr.render_modules(modules)
    assert image.dtype == np.uint8 and image.shape == ((33 + 8) * 8,) * 2
    assert qr.decode(image, decoders=(decoder,)) == PAYLOAD


def test_unknown_decoder_raises(modules):
    with pytest.raises(HarnessError, match="unknown QR decoder"):
        qr.decode(qr.render_modules(modules), decoders=("zbar",))


def test_modules_from_noisy_weights_recover_the_payload(modules):
    rng = np.random.default_rng(0)
    weights = modules * 1.0 + rng.normal(0, 0.1, modules.shape)
    recovered = qr.modules_from_weights(weights)
    np.testing.assert_array_equal(recovered, modules)
    assert qr.decode(qr.render_modules(recovered)) == PAYLOAD


def test_modules_from_pure_noise_do_not_decode_to_the_payload(modules):
    rng = np.random.default_rng(0)
    recovered = qr.modules_from_weights(rng.normal(0, 1, modules.shape))
    assert qr.decode(qr.render_modules(recovered)) != PAYLOAD


def test_constant_weights_give_all_light_modules():
    assert not qr.modules_from_weights(np.zeros((21, 21))).any()
    assert not qr.modules_from_weights(np.full((21, 21), 0.3)).any()


def test_grid_feature_mask_covers_every_patch():
    mask = qr.grid_feature_mask(48, 50, 21)
    assert mask.shape == (48, 50) and mask.dtype == np.int64
    counts = np.bincount(mask.ravel(), minlength=21 * 21)
    assert len(counts) == 21 * 21 and counts.min() > 0
    # 48 rows over 21 modules: patches 2 or 3 pixels tall; 50 columns: 2 or 3 wide.
    assert set(np.bincount(mask[:, 0] // 21)) == {2, 3}
    assert set(np.bincount(mask[0, :])) == {2, 3}
    # Row-major: ids grow left to right, then top to bottom.
    assert mask[0, 0] == 0 and mask[0, -1] == 20 and mask[-1, 0] == 21 * 20 and mask[-1, -1] == 21 * 21 - 1


def test_grid_larger_than_image_raises():
    with pytest.raises(HarnessError, match="at least 21x21"):
        qr.grid_feature_mask(20, 64, 21)


# -- explainers -------------------------------------------------------------
GRID = 4
SIDE = 48
TARGET = 9  # the only patch the synthetic model looks at
N_SAMPLES = 200
BATCH = 32  # 200 = 6 * 32 + 8: the last batch is short but still > 1


@pytest.fixture(scope="module")
def scene():
    image = np.random.default_rng(1).random((SIDE, SIDE, 3)).astype(np.float32)
    return image, qr.grid_feature_mask(SIDE, SIDE, GRID)


class _PatchMeanForward:
    """Mean of the TARGET patch: a numpy (black-box) call and the same function on tensors
    (the differentiable path white-box explainers use). Records the size of every batch."""

    def __init__(self, feature_mask, batch_sizes):
        self.inside = feature_mask == TARGET
        self.batch_sizes = batch_sizes

    def __call__(self, batch):
        assert batch.dtype == np.float32 and batch.shape[1:] == (SIDE, SIDE, 3)
        self.batch_sizes.append(len(batch))
        return batch[:, self.inside].mean(axis=(1, 2))

    def torch(self, images):
        assert images.dtype == torch.float32 and images.shape[1:] == (3, SIDE, SIDE)
        self.batch_sizes.append(len(images))
        return images[:, :, torch.from_numpy(self.inside)].mean(dim=(1, 2))


def _patch_mean_forward(feature_mask, batch_sizes):
    return _PatchMeanForward(feature_mask, batch_sizes)


# Every explainer except the known-bad reproduction of the public code's (reference-grid-lime),
# whose picture does not depend on the model; test_reference_grid_lime_ignores_the_model pins that down.
MODEL_DEPENDENT = [n for n in EXPLAINERS.names() if EXPLAINERS.get(n).model_dependent_by_design]


@pytest.mark.parametrize("name", MODEL_DEPENDENT)
def test_explainer_finds_the_one_patch_the_model_uses(name, scene):
    image, mask = scene
    batch_sizes = []
    weights = EXPLAINERS.get(name)().attribute(
        _patch_mean_forward(mask, batch_sizes), image, mask, n_samples=N_SAMPLES, batch_size=BATCH, seed=0
    )
    assert weights.shape == (GRID * GRID,) and weights.dtype == np.float64
    assert np.argmax(np.abs(weights)) == TARGET
    # Off = black, so keeping the patch raises its mean by the patch's own mean.
    assert weights[TARGET] > 0
    # Batched: at most one single-image call (occlusion's reference f(image)), never more than BATCH.
    assert batch_sizes and batch_sizes.count(1) <= 1 and max(batch_sizes) > 1 and max(batch_sizes) <= BATCH


@pytest.mark.parametrize("name", EXPLAINERS.names())
def test_explainer_is_deterministic_per_seed(name, scene):
    image, mask = scene
    explainer = EXPLAINERS.get(name)()

    def run(seed):
        forward = _patch_mean_forward(mask, [])
        return explainer.attribute(forward, image, mask, n_samples=N_SAMPLES, batch_size=BATCH, seed=seed)

    torch_state = torch.random.get_rng_state()
    numpy_state = np.random.get_state()[1].copy()
    np.testing.assert_array_equal(run(3), run(3))
    # A sampling method draws other samples for another seed; a deterministic one (occlusion, IG) ignores it.
    assert np.array_equal(run(3), run(4)) != explainer.stochastic
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    np.testing.assert_array_equal(np.random.get_state()[1], numpy_state)


@pytest.mark.parametrize("name", MODEL_DEPENDENT)
def test_model_independent_output_gives_no_picture(name, scene):
    image, mask = scene
    explainer = EXPLAINERS.get(name)()
    assert explainer.model_dependent_by_design

    class constant:  # noqa: N801 - a function with a torch path
        def __call__(self, batch):
            return np.full(len(batch), 0.7)

        def torch(self, images):  # ignores the pixels, but stays in the autograd graph
            return images.sum(dim=(1, 2, 3)) * 0 + 0.7

    weights = explainer.attribute(constant(), image, mask, n_samples=N_SAMPLES, batch_size=BATCH, seed=0)
    np.testing.assert_allclose(weights, 0.0, atol=1e-9)


def test_reference_grid_lime_ignores_the_model(scene):
    """The public code's explainer: the same 0/1 picture (1 - its fixed seed-42 mask) for two
    forwards that depend on different patches, whatever the seed."""
    image, mask = scene
    explainer = EXPLAINERS.get("reference-grid-lime")()
    a = explainer.attribute(_patch_mean_forward(mask, []), image, mask, n_samples=N_SAMPLES, batch_size=BATCH, seed=0)
    other = lambda batch: batch[:, mask == 0].mean(axis=(1, 2))  # noqa: E731 - depends on patch 0 only
    b = explainer.attribute(other, image, mask, n_samples=N_SAMPLES, batch_size=BATCH, seed=7)
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) == {0.0, 1.0}


@pytest.mark.parametrize("name", EXPLAINERS.names())
def test_every_explainer_has_a_description(name):
    assert issubclass(EXPLAINERS.get(name), Explainer)
    assert dict(EXPLAINERS.describe())[name]


def test_feature_mask_with_a_gap_in_ids_is_rejected(scene):
    image, mask = scene
    explainer = EXPLAINERS.get(EXPLAINERS.names()[0])()
    with pytest.raises(HarnessError, match="0..P-1"):
        explainer.attribute(lambda b: np.zeros(len(b)), image, np.where(mask == 3, 4, mask), n_samples=10)


def test_forward_with_wrong_output_shape_is_reported(scene):
    image, mask = scene
    black_box = [name for name in EXPLAINERS.names() if not EXPLAINERS.get(name).white_box]
    explainer = EXPLAINERS.get(black_box[0])()
    with pytest.raises(HarnessError, match="one scalar per image"):
        explainer.attribute(lambda b: np.zeros((len(b), 2)), image, mask, n_samples=10)


def test_decode_falls_back_to_zxing_when_pyzbar_cannot_load(modules, monkeypatch):
    monkeypatch.setitem(qr._LOADERS, "pyzbar", lambda: None)
    assert qr.available_decoders() == ["zxing-cpp"]
    assert qr.decode(qr.render_modules(modules)) == PAYLOAD
    with pytest.raises(HarnessError, match="no QR decoder can be loaded"):
        qr.decode(qr.render_modules(modules), decoders=("pyzbar",))
