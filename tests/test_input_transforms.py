"""Input-transform attacks: the model served behind preprocessing. Every registered one is checked here."""

import copy

import pytest
import torch
from torch import nn

from attacks._input_transform import A, TransformedModel
from harness.attack import AttackerKit
from harness.data import Split
from harness.errors import HarnessError
from harness.presets import get_preset
from harness.registry import ATTACKS, DATASETS
from harness.registry import resolve_attacks
from harness.segmenter import predict_proba

INPUT_TRANSFORMS = [n for n in ATTACKS.names() if ATTACKS.get(n).family == "input-transform"]
KIT = AttackerKit(Split(torch.rand(2, 3, 32, 32), torch.zeros(2, 1, 32, 32)), "basic-unet", get_preset("smoke"))


def grid_images(count: int = 4, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Random images on the 8-bit grid: the wrapper's 8-bit round trip is then lossless, so any change is the attack's."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, 3, size, size), generator=generator).float() / 255


def asymmetric_model() -> nn.Module:
    """A random 3x3 convolution: neither flip-equivariant nor blind to any of the transforms."""
    torch.manual_seed(0)
    return nn.Conv2d(3, 1, 3, padding=1).eval()


class FirstChannel(nn.Module):
    """Logits = the red channel: equivariant to any flip, so an undone flip must give its output back exactly."""

    def forward(self, images):
        return images[:, :1]


def test_every_input_transform_is_found():
    expected = {"jpeg", "blur", "gauss-noise", "downscale", "gamma", "brightness", "contrast", "median", "hflip"}
    assert expected <= set(INPUT_TRANSFORMS)


@pytest.mark.parametrize("name", INPUT_TRANSFORMS)
def test_moderate_strength_changes_the_output_and_not_the_owners_model(name):
    model = asymmetric_model()
    before = copy.deepcopy(model.state_dict())
    attack = ATTACKS.get(name)()
    wrapped = attack.apply(model, KIT, attack.default_strengths[0], seed=0)
    x = grid_images()
    with torch.no_grad():
        attacked, clean = wrapped(x), model(x)
    assert attacked.shape == clean.shape
    assert not torch.equal(attacked, clean), f"{name} at {attack.default_strengths[0]} did not change the output"
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("name", INPUT_TRANSFORMS)
def test_transform_is_deterministic_under_a_seed_and_independent_of_batching(name):
    attack = ATTACKS.get(name)()
    strength = attack.default_strengths[-1]
    # The identity model exposes the transformed images themselves, bit for bit.
    first = attack.apply(nn.Identity(), KIT, strength, seed=3)
    second = attack.apply(nn.Identity(), KIT, strength, seed=3)
    x = grid_images()
    out = first(x)
    assert torch.equal(out, second(x)) and torch.equal(out, first(x))
    assert torch.equal(out[2:3], first(x[2:3])), "an image's answer must not depend on its batch"
    assert out.min() >= 0 and out.max() <= 1


def test_noise_follows_the_seed_and_differs_between_images():
    attack = ATTACKS.get("gauss-noise")()
    x = grid_images(count=1).repeat(2, 1, 1, 1)
    x[1, 0, 0, 0] = 1 - x[1, 0, 0, 0]
    noisy = attack.apply(nn.Identity(), KIT, 0.08, seed=0)(x)
    other_seed = attack.apply(nn.Identity(), KIT, 0.08, seed=1)(x)
    assert not torch.equal(noisy, other_seed)
    noise = noisy - x
    assert not torch.equal(noise[0, :, 1:], noise[1, :, 1:]), "distinct queries must get fresh noise"


@pytest.mark.parametrize("name", INPUT_TRANSFORMS)
def test_predict_proba_runs_through_the_wrapper(name):
    attack = ATTACKS.get(name)()
    wrapped = attack.apply(asymmetric_model(), KIT, attack.default_strengths[0], seed=0)
    wrapped.train()
    x = grid_images(count=3)
    proba = predict_proba(wrapped, x, batch_size=2)
    assert proba.shape == (3, 1, 32, 32) and 0 <= proba.min() and proba.max() <= 1
    assert wrapped.training, "predict_proba restores the training flag"
    with torch.no_grad():
        # Close, not equal: a convolution's rounding may depend on the batch size.
        assert torch.allclose(proba, torch.sigmoid(wrapped(x)), atol=1e-6)


def test_hflip_is_undone_for_a_flip_equivariant_model():
    model = FirstChannel()
    wrapped = ATTACKS.get("hflip")().apply(model, KIT, 1, seed=0)
    x = grid_images()
    assert torch.equal(wrapped(x), model(x))


def test_jpeg_at_quality_100_changes_images_far_less_than_at_20():
    # Natural-looking images: on pixel noise even quality 100 loses much to chroma subsampling.
    images, _ = DATASETS.get("synthetic-polyp")(image_size=48).generate(range(4), seed=0)
    images = (images * 255).round() / 255
    jpeg = ATTACKS.get("jpeg")()

    def mse(quality):
        return ((jpeg.apply(nn.Identity(), KIT, quality, seed=0)(images) - images) ** 2).mean().item()

    assert 0 < 4 * mse(100) < mse(20)


def test_strengths_that_albumentations_would_alter_are_refused_up_front():
    with pytest.raises(HarnessError, match="must be odd"):
        resolve_attacks("median", [4])
    with pytest.raises(HarnessError, match="whole number"):
        resolve_attacks("jpeg", [50.5])
    with pytest.raises(HarnessError, match="must be odd"):
        ATTACKS.get("median")().apply(nn.Identity(), KIT, 4, seed=0)


def test_a_transform_that_could_skip_queries_is_refused():
    with pytest.raises(HarnessError, match="p=1"):
        TransformedModel(nn.Identity(), A.HorizontalFlip(), seed=0)
