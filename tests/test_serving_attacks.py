"""Serving attacks: the stolen model's answers post-processed by the thief. Every registered one is checked here."""

import copy

import pytest
import torch
from torch import nn

import attacks.ensemble
from attacks._serving import SATURATED_LOGIT, logits_of
from attacks.tta import rescaled_side
from harness.attack import AttackerKit
from harness.data import Split
from harness.errors import HarnessError
from harness.presets import get_preset
from harness.registry import ATTACKS, resolve_attacks
from harness.segmenter import build_model
from harness.training import torch_threads

SERVING = [n for n in ATTACKS.names() if ATTACKS.get(n).family == "serving"]
SMOKE = get_preset("smoke")


@pytest.fixture(autouse=True)
def _one_thread():
    # Tensors this small gain nothing from a second thread, and on a busy two-core machine its spin-waiting
    # made this file thirty times slower (94 s instead of 3 s).
    with torch_threads(1):
        yield


def random_kit(count: int = 8, size: int = 32, seed: int = 0) -> AttackerKit:
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(count, 3, size, size, generator=generator)
    masks = (torch.rand(count, 1, size, size, generator=generator) > 0.5).float()
    return AttackerKit(Split(images, masks), "basic-unet", SMOKE)


def smoke_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("basic-unet", "smoke").eval()


def every_strength(attack) -> list[float]:
    return sorted({*attack.default_strengths, *attack.presets.values()})


def served_probs(served: nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.sigmoid(served(images))


def masks_of(logits: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(logits) > 0.5


class RedLogits(nn.Module):
    """Logits = an affine function of each pixel's red value: flip-equivariant, with logits the images choose."""

    def __init__(self, scale: float = 8.0):
        super().__init__()
        self.scale = scale

    def forward(self, images):
        return (images[:, :1] - 0.5) * self.scale


# Logits at and around the threshold: float32 sigmoid is exactly 0.5 up to ~9e-8, so a move that merely keeps
# the sign of each logit still turns some of these pixels from foreground to background or back.
BOUNDARY_LOGITS = [0.0, -0.0, 1e-45, -1e-45, 1e-38, -1e-38, 1e-8, -1e-8, 5.9e-8, -5.9e-8, 8.9e-8, 8.95e-8, 9e-8,
                   -9e-8, 1e-7, -1e-7, 1.2e-7, -1.2e-7, 2.4e-7, 1e-6, -1e-6, 1e-3, -1e-3, 0.5, -0.5, 20.0, -20.0,
                   88.0, -88.0, 100.0, -100.0, 1e4, -1e4]


class FixedLogits(nn.Module):
    """The same logit map for every image: boundary values first, random ones after."""

    def __init__(self, size: int = 16):
        super().__init__()
        values = torch.randn(size * size, generator=torch.Generator().manual_seed(1)) * 3
        values[: len(BOUNDARY_LOGITS)] = torch.tensor(BOUNDARY_LOGITS)
        self.register_buffer("logits", values.view(1, 1, size, size))

    def forward(self, images):
        return self.logits.expand(len(images), -1, -1, -1).clone()


def test_the_family_is_the_seven_moves_and_all_runs_them():
    assert set(SERVING) == {"hard-mask", "temperature", "round-probs", "tta", "ensemble", "recalibrate",
                            "smooth-probs"}
    everything = {attack.registered_name for attack, _ in resolve_attacks("all", None)}
    assert set(SERVING) <= everything
    assert all(not ATTACKS.get(name).trains for name in SERVING)


@pytest.mark.parametrize("name", SERVING)
def test_every_strength_leaves_the_owners_model_bit_identical_and_keeps_the_shape(name):
    owner = smoke_model()
    before = copy.deepcopy(owner.state_dict())
    attack = ATTACKS.get(name)()
    kit = random_kit()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        clean = owner(x)
    for strength in every_strength(attack):
        with torch.no_grad():
            out = attack.apply(owner, kit, strength, seed=0)(x)
        assert out.shape == clean.shape and torch.isfinite(out).all(), f"{name} at {strength}"
    after = owner.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("name", SERVING)
def test_two_applications_with_one_seed_answer_alike(name):
    owner, kit, x = smoke_model(), random_kit(), torch.rand(2, 3, 32, 32)
    strength = ATTACKS.get(name)().default_strengths[-1]
    # Fresh instances: the ensemble's thief must train to the same model, not merely be remembered.
    first = ATTACKS.get(name)().apply(owner, kit, strength, seed=3)
    second = ATTACKS.get(name)().apply(owner, kit, strength, seed=3)
    with torch.no_grad():
        assert torch.equal(first(x), second(x))


MASK_KEEPING = [("hard-mask", 1), *[("temperature", k) for k in (0.01, 0.25, 0.5, 2, 4, 100)],
                *[("round-probs", levels) for levels in (2, 4, 16, 256, 65536)]]


@pytest.mark.parametrize("name, strength", MASK_KEEPING)
def test_mask_is_kept_exactly_at_the_threshold(name, strength):
    model = FixedLogits()
    served = ATTACKS.get(name)().apply(model, random_kit(size=16), strength, seed=0)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        out, clean = served(x), model(x)
    assert torch.equal(masks_of(out), masks_of(clean))
    assert not torch.equal(torch.sigmoid(out), torch.sigmoid(clean))


def test_recalibrated_temperature_keeps_the_mask_exactly():
    model = FixedLogits()
    kit = random_kit(size=16)
    # Masks that agree with the logits four times in five: the fitted slope is finite and far from 1.
    agree = torch.rand(kit.data.masks.shape, generator=torch.Generator().manual_seed(2)) < 0.8
    kit.data.masks = torch.where(agree, (model.logits > 0).float(), (model.logits <= 0).float())
    served = ATTACKS.get("recalibrate")(method="temperature").apply(model, kit, 1.0, seed=0)
    assert served.bias == 0 and served.slope > 0 and abs(served.slope - 1) > 0.05
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(masks_of(served(x)), masks_of(model(x)))


@pytest.mark.parametrize("name", ["temperature", "tta", "ensemble", "recalibrate", "smooth-probs"])
def test_differentiable_moves_pass_gradients_to_the_images(name):
    attack = ATTACKS.get(name)()
    served = attack.apply(smoke_model(), random_kit(), attack.default_strengths[0], seed=0)
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    served(x).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_hard_mask_answers_exact_zeros_and_ones_with_finite_logits():
    served = ATTACKS.get("hard-mask")().apply(FixedLogits(), random_kit(size=16), 1, seed=0)
    with torch.no_grad():
        out = served(torch.rand(2, 3, 16, 16))
    assert torch.isfinite(out).all() and out.abs().max() == SATURATED_LOGIT
    probs = torch.sigmoid(out)
    assert probs.dtype == torch.float32 and set(probs.unique().tolist()) == {0.0, 1.0}


def test_exact_zero_and_one_become_finite_logits_that_give_them_back():
    probs = torch.tensor([0.0, 1e-30, 0.2, 0.5, 0.9, 1.0], requires_grad=True)
    logits = logits_of(probs)
    assert torch.isfinite(logits).all()
    assert torch.equal(torch.sigmoid(logits[[0, 3, 5]]), torch.tensor([0.0, 0.5, 1.0]))
    assert torch.allclose(torch.sigmoid(logits), probs, rtol=1e-6, atol=0)
    logits.sum().backward()
    assert torch.isfinite(probs.grad).all(), "the discarded branch must not poison the gradient"


def images_with_distinct_red(size: int = 32) -> torch.Tensor:
    images = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(4))
    images[0, 0] = torch.randperm(size * size, generator=torch.Generator().manual_seed(5)).view(size, size) / (
        size * size - 1)
    return images


def bernoulli_kit(model: nn.Module, slope: float, bias: float, count: int, size: int) -> AttackerKit:
    """Masks drawn from a known Platt model of ``model``'s logits: P(foreground) = sigmoid(slope * z + bias)."""
    generator = torch.Generator().manual_seed(6)
    images = torch.rand(count, 3, size, size, generator=generator)
    with torch.no_grad():
        chance = torch.sigmoid(slope * model(images) + bias)
    masks = (torch.rand(chance.shape, generator=generator) < chance).float()
    return AttackerKit(Split(images, masks), "basic-unet", SMOKE)


@pytest.mark.parametrize("name, strength", [("temperature", 0.25), ("temperature", 4), ("recalibrate", 1.0)])
def test_the_order_of_the_probabilities_is_kept(name, strength):
    model = RedLogits(scale=16)
    served = ATTACKS.get(name)().apply(model, bernoulli_kit(model, 2, -1, count=4, size=32), strength, seed=0)
    x = images_with_distinct_red()
    with torch.no_grad():
        order = model(x).flatten().argsort()
        answers = served(x).flatten()[order]
    assert (answers.diff() > 0).all(), "the served logits must rise with the stolen ones"
    assert (torch.sigmoid(answers).diff() >= 0).all()


def test_recalibration_recovers_a_known_platt_model():
    model = RedLogits(scale=8)  # logits uniform in [-4, 4]
    kit = bernoulli_kit(model, 2.0, -1.0, count=16, size=64)
    served = ATTACKS.get("recalibrate")().apply(model, kit, 1.0, seed=0)
    # The tolerance is four standard errors of the maximum-likelihood fit, from its Fisher information
    # (0.017 for the slope and 0.018 for the bias at these 65536 pixels).
    with torch.no_grad():
        z = model(kit.data.images).double().flatten()
    weight = torch.sigmoid(2 * z - 1) * (1 - torch.sigmoid(2 * z - 1))
    features = torch.stack([z, torch.ones_like(z)], dim=1)
    errors = torch.linalg.inv(features.T @ (weight[:, None] * features)).diagonal().sqrt()
    assert abs(served.slope - 2.0) < 4 * errors[0] and abs(served.bias + 1.0) < 4 * errors[1]


def test_recalibration_method_is_checked_and_part_of_the_spec():
    assert ATTACKS.get("recalibrate")(method="temperature").spec()["method"] == "temperature"
    with pytest.raises(HarnessError, match="did you mean 'platt'") as info:
        ATTACKS.get("recalibrate")(method="plat")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("levels", [4, 16])
def test_round_probs_answers_one_probability_per_level(levels):
    served = ATTACKS.get("round-probs")().apply(RedLogits(scale=20), random_kit(), levels, seed=0)
    probs = served_probs(served, torch.rand(4, 3, 32, 32))
    assert len(probs.unique()) == levels  # a logit range of +-10 reaches every bin


def test_round_probs_refuses_an_odd_number_of_levels():
    with pytest.raises(HarnessError, match="must be even") as info:
        resolve_attacks("round-probs", [5])
    assert "\n" not in str(info.value)
    with pytest.raises(HarnessError, match="must be even"):
        ATTACKS.get("round-probs")().apply(RedLogits(), random_kit(), 3, seed=0)


@pytest.mark.parametrize("views", [2, 4])
def test_flip_views_of_a_flip_equivariant_model_agree_with_it(views):
    model = RedLogits()
    served = ATTACKS.get("tta")().apply(model, random_kit(), views, seed=0)
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(served_probs(served, x), torch.sigmoid(model(x)), rtol=0, atol=1e-6)


@pytest.mark.parametrize("views", [2, 4, 6])
def test_views_of_a_model_that_is_not_equivariant_change_its_answer(views):
    torch.manual_seed(0)
    model = nn.Conv2d(3, 1, 3, padding=1).eval()
    served = ATTACKS.get("tta")().apply(model, random_kit(), views, seed=0)
    for size in (32, 48):
        x = torch.rand(2, 3, size, size)
        probs = served_probs(served, x)
        assert probs.shape == (2, 1, size, size)
        assert (probs - torch.sigmoid(model(x))).abs().max() > 1e-3


def test_tta_accepts_only_2_4_or_6_views_and_rescales_to_multiples_of_16():
    with pytest.raises(HarnessError, match="must be one of 2, 4, 6"):
        resolve_attacks("tta", [3])
    assert [rescaled_side(side, f) for side in (256, 48, 32, 16) for f in (0.75, 1.25)] == [
        192, 320, 32, 64, 16, 48, 16, 32]


def test_ensemble_trains_the_thiefs_model_once_and_mixes_the_probabilities(monkeypatch):
    trained = []

    def counting_fit(model, *args, **kwargs):
        trained.append(model)
        return real_fit(model, *args, **kwargs)

    real_fit = attacks.ensemble.fit
    monkeypatch.setattr(attacks.ensemble, "fit", counting_fit)
    attack, kit, x = ATTACKS.get("ensemble")(), random_kit(), torch.rand(2, 3, 32, 32)
    suspect = smoke_model(seed=0)
    served = [attack.apply(model, kit, 0.25, seed=0) for model in (suspect, smoke_model(1), smoke_model(2))]
    assert len(trained) == 1, "the suspect and every null share one thief's model"
    assert all(s.thief is trained[0] for s in served)
    attack.apply(suspect, kit, 0.25, seed=1)
    assert len(trained) == 2, "another seed is another thief's model"
    suspect_storage = {p.data_ptr() for p in suspect.state_dict().values()}
    assert not suspect_storage & {p.data_ptr() for p in trained[0].state_dict().values()}
    with torch.no_grad():
        expected = 0.75 * torch.sigmoid(suspect(x)) + 0.25 * torch.sigmoid(trained[0](x))
    assert torch.allclose(served_probs(served[0], x), expected, rtol=0, atol=1e-6)


def test_smoothing_keeps_a_constant_map_and_flattens_a_random_one():
    attack = ATTACKS.get("smooth-probs")()
    uniform = FixedLogits()
    uniform.logits.fill_(-1.4)
    probs = served_probs(attack.apply(uniform, random_kit(size=16), 2.0, seed=0), torch.rand(1, 3, 16, 16))
    assert torch.allclose(probs, torch.sigmoid(torch.tensor(-1.4)), rtol=0, atol=1e-6)
    model = RedLogits()
    x = torch.rand(2, 3, 32, 32)
    blurred = served_probs(attack.apply(model, random_kit(), 1.0, seed=0), x)
    assert blurred.var() < 0.5 * torch.sigmoid(model(x)).var()


@pytest.mark.parametrize("name", SERVING)
def test_budget_names_what_the_thief_spends(name):
    attack = ATTACKS.get(name)()
    kit = random_kit(count=10)
    budgets = {strength: attack.budget(kit, strength) for strength in every_strength(attack)}
    if name == "ensemble":
        assert all(b.images == 10 and b.labels and b.queries == 0 for b in budgets.values())
    elif name == "recalibrate":
        assert budgets[1.0].images == 10 and budgets[0.1].images == 1
        assert all(b.labels and b.queries == b.images for b in budgets.values())
    else:
        assert all(b.images == 0 and not b.labels and b.queries == 0 for b in budgets.values())
