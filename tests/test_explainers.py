"""Swappable explainers: plugins, the model forward with its reductions, feature masks, the bench verb."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from harness import qr
from harness.cli import main
from harness.errors import HarnessError
from harness.explainer import DifferentiableForward, ModelForward
from harness.feature_masks import contiguous_ids, grid, make_feature_mask, slic
from harness.reductions import (
    REDUCTIONS,
    binary_entropy,
    describe_reductions,
    get_reduction,
    region_for,
)
from harness.registry import EXPLAINERS

SIDE = 48
GRID = 4
TARGET = 6  # the one patch the synthetic model looks at
N_SAMPLES = 200
BATCH = 24  # 200 = 8 * 24 + 8


class OnePatchModel(nn.Module):
    """A segmenter whose every logit is 6 * (mean of one patch's pixels) - 3: only that patch matters."""

    def __init__(self, inside: np.ndarray):
        super().__init__()
        self.register_buffer("inside", torch.from_numpy(inside).float())
        self.scale = nn.Parameter(torch.tensor(6.0))
        self.calls: list[int] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.calls.append(len(images))
        patch_mean = (images * self.inside).sum(dim=(1, 2, 3)) / (3 * self.inside.sum())
        logit = self.scale * patch_mean - 3
        return logit[:, None, None, None].expand(-1, 1, *images.shape[-2:])


@pytest.fixture(scope="module")
def scene():
    image = np.random.default_rng(7).random((SIDE, SIDE, 3)).astype(np.float32)
    mask = grid(SIDE, SIDE, GRID)
    return image, mask


@pytest.fixture
def model(scene):
    return OnePatchModel(scene[1] == TARGET)


def _model_dependent():
    return [n for n in EXPLAINERS.names() if EXPLAINERS.get(n).model_dependent_by_design]


# -- explainers on a model that uses one patch --------------------------------
@pytest.mark.parametrize("name", [n for n in _model_dependent() if not EXPLAINERS.get(n).white_box])
def test_every_perturbation_explainer_ranks_the_one_used_patch_first(name, scene, model):
    image, mask = scene
    # ModelForward would split big batches itself: give it room, so model.calls shows the explainer's batches.
    forward = ModelForward(model, "foreground-mean", batch_size=10 * N_SAMPLES)
    weights = EXPLAINERS.get(name)().attribute(forward, image, mask, n_samples=N_SAMPLES, batch_size=BATCH, seed=0)
    assert np.argmax(np.abs(weights)) == TARGET and weights[TARGET] > 0
    # batch_size is respected: the model never sees more images at once.
    assert model.calls and max(model.calls) <= BATCH


def test_integrated_gradients_puts_the_output_change_on_the_patch(scene, model):
    image, mask = scene
    forward = ModelForward(model, "foreground-mean", batch_size=BATCH)
    weights = EXPLAINERS.get("captum-ig")().attribute(forward, image, mask, n_samples=64, batch_size=BATCH)
    assert np.argmax(np.abs(weights)) == TARGET
    others = np.delete(weights, TARGET)
    assert np.abs(others).max() <= 1e-3 * weights[TARGET]
    # Completeness: the weights add up to f(image) - f(black).
    change = forward(image[None])[0] - forward(np.zeros_like(image)[None])[0]
    assert weights.sum() == pytest.approx(change, rel=1e-3)
    assert max(model.calls) <= BATCH and 64 % BATCH != 0  # the short last chunk was taken too


def test_white_box_explainer_refuses_a_black_box_forward(scene):
    image, mask = scene
    with pytest.raises(HarnessError, match="captum-ig is white-box"):
        EXPLAINERS.get("captum-ig")().attribute(lambda b: b.mean(axis=(1, 2, 3)), image, mask, n_samples=8)


def test_white_box_flags_and_descriptions():
    assert EXPLAINERS.get("captum-ig").white_box
    assert "white-box" in dict(EXPLAINERS.describe())["captum-ig"].lower()
    for name in ("lime", "captum-lime", "kernelshap", "captum-kernelshap", "captum-occlusion"):
        assert not EXPLAINERS.get(name).white_box
    assert not EXPLAINERS.get("captum-occlusion").stochastic and not EXPLAINERS.get("captum-ig").stochastic


def test_kernelshap_leaves_numpy_global_rng_alone(scene, model):
    image, mask = scene
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    EXPLAINERS.get("kernelshap")().attribute(ModelForward(model, "foreground-mean"), image, mask, n_samples=40)
    assert np.random.random() == expected


# -- ModelForward ---------------------------------------------------------------
def test_model_forward_numpy_and_torch_paths_agree_and_batch(scene, model):
    image, _ = scene
    forward = ModelForward(model, "entropy-mean", batch_size=3)
    assert isinstance(forward, DifferentiableForward)
    batch = np.stack([image, image * 0.5, np.zeros_like(image), image, image])
    out = forward(batch)
    assert out.dtype == np.float64 and out.shape == (5,)
    assert model.calls == [3, 2]
    x = torch.from_numpy(batch).permute(0, 3, 1, 2).requires_grad_()
    via_torch = forward.torch(x)
    # float32 on two paths that sum the 432 patch pixels in different orders (a channels-last view in one
    # batch of 5 vs contiguous batches of 3 + 2): rounding of order sqrt(432) * 1.2e-7 = 2.5e-6 is expected,
    # 2.6e-7 measured. 1e-5 allows that; a real disagreement (region, reduction, preprocessing) is >= 1e-3.
    np.testing.assert_allclose(via_torch.detach().numpy(), out, rtol=1e-5)
    via_torch.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_model_forward_restores_training_mode(scene, model):
    model.train()
    ModelForward(model, "foreground-mean")(scene[0][None])
    assert model.training


def test_for_image_takes_the_region_from_the_unperturbed_answer():
    class HalfModel(nn.Module):  # object (logit +4) in the left half, background (-4) in the right
        def forward(self, images):
            logits = torch.full((len(images), 1, 4, 4), -4.0)
            logits[..., :2] = 4.0
            return logits + 0 * images.sum()

    image = np.zeros((4, 4, 3), np.float32)
    background = ModelForward.for_image(HalfModel(), image, "background-mean")
    assert background.region[:, 2:].all() and not background.region[:, :2].any()
    assert background(image[None])[0] == pytest.approx(torch.sigmoid(torch.tensor(-4.0)).item())
    foreground = ModelForward.for_image(HalfModel(), torch.from_numpy(image).permute(2, 0, 1), "foreground-mean")
    assert foreground(image[None])[0] == pytest.approx(torch.sigmoid(torch.tensor(4.0)).item())
    assert ModelForward.for_image(HalfModel(), image, "entropy-mean").region is None


def test_model_forward_bad_inputs(model):
    with pytest.raises(HarnessError, match="torch model"):
        ModelForward(lambda x: x)
    with pytest.raises(HarnessError, match="bool"):
        ModelForward(model, region=np.ones((4, 4)))
    with pytest.raises(HarnessError, match="empty"):
        ModelForward(model, region=np.zeros((4, 4), bool))
    with pytest.raises(HarnessError, match="did you mean 'entropy-mean'"):
        ModelForward(model, "entropy")


# -- reductions -----------------------------------------------------------------
PROBS = torch.tensor([[[[0.1, 0.3], [0.5, 0.9]]], [[[0.0, 1.0], [0.5, 0.5]]]])  # (2, 1, 2, 2)
LOWER = torch.tensor([[False, False], [True, True]])


def test_reductions_on_hand_made_maps():
    bg = get_reduction("background-mean")
    np.testing.assert_allclose(bg(PROBS, None), [0.45, 0.5])
    np.testing.assert_allclose(bg(PROBS, ~LOWER), [0.2, 0.5])
    np.testing.assert_allclose(get_reduction("foreground-mean")(PROBS, LOWER), [0.7, 0.5])
    entropy = get_reduction("entropy-mean")(PROBS, None)
    # Second map: two certain pixels (0 bits) and two coin flips (1 bit each).
    assert entropy[1].item() == pytest.approx(0.5, abs=1e-5)
    assert binary_entropy(torch.tensor(0.5)).item() == pytest.approx(1.0)
    assert entropy[0].item() == pytest.approx(binary_entropy(PROBS[0]).mean().item())


def test_region_for_reads_the_unperturbed_answer():
    assert torch.equal(region_for("background-mean", PROBS[:1]), torch.tensor([[True, True], [True, False]]))
    assert torch.equal(region_for("foreground-mean", PROBS[0, 0]), torch.tensor([[False, False], [False, True]]))
    # No background at all: every pixel, rather than a mean over nothing.
    assert region_for("background-mean", torch.ones(1, 1, 2, 2)).all()
    assert region_for("entropy-mean", PROBS[:1]) is None


def test_detector_score_hook():
    def score(probs, region):
        return probs[:, 0].amax(dim=(1, 2)) * 10

    reduce = get_reduction("detector-score", score=score)
    np.testing.assert_allclose(reduce(PROBS, None), [9.0, 10.0])
    numpy_score = get_reduction("detector-score", score=lambda p, r: np.array([1.0, 2.0]))
    assert isinstance(numpy_score(PROBS, None), torch.Tensor)
    with pytest.raises(HarnessError, match="needs a score function"):
        get_reduction("detector-score")
    with pytest.raises(HarnessError, match="takes no score function"):
        get_reduction("entropy-mean", score=score)
    with pytest.raises(HarnessError, match="one value per image"):
        get_reduction("detector-score", score=lambda p, r: torch.zeros(3))(PROBS, None)


def test_unknown_reduction_names_the_closest():
    with pytest.raises(HarnessError, match="did you mean 'foreground-mean'"):
        get_reduction("forground-mean")
    assert [name for name, _ in describe_reductions()] == list(REDUCTIONS)
    assert all(text for _, text in describe_reductions())


# -- feature masks --------------------------------------------------------------
def test_grid_is_the_qr_grid():
    np.testing.assert_array_equal(grid(48, 50, 7), qr.grid_feature_mask(48, 50, 7))
    np.testing.assert_array_equal(make_feature_mask("grid:7", np.zeros((48, 50, 3))), grid(48, 50, 7))


def _smooth_image():
    """Colour gradients, a red block and a little noise: something SLIC can cut into superpixels
    (pure noise is one segment to it)."""
    y, x = np.mgrid[0:SIDE, 0:SIDE] / (SIDE - 1)
    image = np.stack([x, y, 0.5 * (x + y)], axis=-1)
    image[10:25, 12:30] = [0.9, 0.2, 0.2]
    return np.clip(image + np.random.default_rng(7).normal(0, 0.02, image.shape), 0, 1).astype(np.float32)


def test_slic_ids_are_contiguous_and_deterministic():
    image = _smooth_image()
    mask = slic(image, n_segments=20, compactness=10, seed=0)
    assert mask.shape == image.shape[:2] and mask.dtype == np.int64
    assert np.array_equal(np.unique(mask), np.arange(mask.max() + 1)) and mask.max() >= 4
    np.testing.assert_array_equal(mask, slic(image, 20, 10, seed=1))
    np.testing.assert_array_equal(make_feature_mask("slic:20", image), mask)
    assert not np.array_equal(make_feature_mask("slic:20:0.1", image), mask)
    # Superpixels follow colour: the one at the red block's centre is (almost all) red block.
    centre = mask == mask[17, 21]
    assert image[centre, 0].mean() > 0.8
    # Every backend takes it: explain over superpixels.
    forward = ModelForward(OnePatchModel(mask == 0), "foreground-mean")
    weights = EXPLAINERS.get("captum-occlusion")().attribute(forward, image, mask, n_samples=2)
    assert weights.shape == (mask.max() + 1,) and np.argmax(weights) == 0


def test_contiguous_ids_renumbers_gaps():
    np.testing.assert_array_equal(contiguous_ids(np.array([[5, 5], [9, 2]])), [[1, 1], [2, 0]])


@pytest.mark.parametrize("spec, message", [
    ("grid", "needs a size"),
    ("grid:x", "not a valid whole number"),
    ("grd:4", "did you mean 'grid'"),
    ("slic:0", "at least 1"),
    ("grid:4:5", "expected grid:G"),
    ("slic:10:soft", "not a valid number"),
    ("", "must be a string"),
    ("grid:100", "at least 100x100"),
])
def test_bad_feature_mask_specs_are_one_line_errors(spec, message):
    with pytest.raises(HarnessError, match=message) as info:
        make_feature_mask(spec, np.zeros((48, 48, 3), np.float32))
    assert "\n" not in str(info.value)


# -- bench verb -------------------------------------------------------------------
def test_bench_cli_prints_a_table():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "harness", "bench", "explainers", "--samples", "64",
                           "--explainer", "lime"], check=False, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("basic-unet (tiny), 64 patches, 64 samples, batch 64")
    assert lines[1].split()[:4] == ["explainer", "box", "images", "explain"]
    row = lines[3].split()
    assert row[:3] == ["lime", "black", "64"] and float(row[5]) > 0


def test_bench_cli_bad_explainer_is_exit_2_one_line(capsys):
    assert main(["bench", "explainers", "--explainer", "lmie"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "did you mean 'lime'" in err
    assert main(["bench", "models"]) == 2
