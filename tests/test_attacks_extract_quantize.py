"""Distillation (model extraction), weight quantization and weight noise: the attacks that rebuild or perturb weights."""

import copy
from itertools import pairwise

import pytest
import torch
from monai.networks.nets import UNet
from torch import nn

from attacks import _distillation as distillation
from attacks.quantize import output_channel_dim
from harness.attack import AttackerKit, weight_layers
from harness.data import Split
from harness.errors import HarnessError
from harness.presets import get_preset
from harness.registry import ATTACKS, MODELS
from harness.segmenter import Segmenter, build_model, predict_proba

NEW_ATTACKS = ["distill-soft", "distill-hard", "distill-arch", "quantize", "weight-noise"]
DISTILLATIONS = ["distill-soft", "distill-hard", "distill-arch"]
FEW_EPOCHS = 3  # enough to show a student trains; the defaults are for measured runs


@pytest.fixture
def owner():
    torch.manual_seed(0)
    model = build_model("basic-unet", "smoke")
    # A few training-mode passes give batch norm non-trivial running statistics, like a trained owner's.
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(8, 3, 32, 32))
    return model.eval()


@pytest.fixture
def kit():
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(8, 3, 32, 32, generator=generator)
    masks = (torch.rand(8, 1, 32, 32, generator=generator) > 0.5).float()
    return AttackerKit(Split(images, masks), "basic-unet", get_preset("smoke"))


def same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("name", NEW_ATTACKS)
def test_moderate_strength_changes_the_model_and_spares_the_owner(name, owner, kit):
    attack = ATTACKS.get(name)()
    assert len(attack.default_strengths) == 2
    assert all(attack.check_strength(s) == s for s in [*attack.default_strengths, *attack.presets.values()])
    before = copy.deepcopy(owner)
    attacked = attack.apply(owner, kit, attack.default_strengths[0], seed=0)
    assert same_state(owner, before) and not owner.training
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.equal(attacked(x), owner(x))
    assert not attacked.training


@pytest.mark.parametrize("name", NEW_ATTACKS)
def test_same_seed_same_model(name, owner, kit):
    attack = ATTACKS.get(name)()
    strength = FEW_EPOCHS if name in DISTILLATIONS else attack.default_strengths[0]
    first = attack.apply(owner, kit, strength, seed=3)
    torch.manual_seed(123)  # the global RNG state must not matter...
    state = torch.get_rng_state()
    assert same_state(first, attack.apply(owner, kit, strength, seed=3))
    assert torch.equal(torch.get_rng_state(), state)  # ...nor be moved by the attack


@pytest.mark.parametrize("name", DISTILLATIONS)
def test_distillation_never_reads_the_attackers_masks(name, owner, kit):
    poisoned = AttackerKit(Split(kit.data.images, torch.full_like(kit.data.masks, float("nan"))),
                           kit.model_name, kit.preset)
    attack = ATTACKS.get(name)()
    student = attack.apply(owner, poisoned, FEW_EPOCHS, seed=0)
    assert torch.isfinite(predict_proba(student, kit.data.images)).all()
    assert same_state(student, attack.apply(owner, kit, FEW_EPOCHS, seed=0))


@pytest.mark.parametrize("hard", [True, False])
def test_targets_are_the_teachers_probabilities_or_its_masks(hard, owner, kit, monkeypatch):
    seen = {}
    real_fit = distillation.fit

    def recording_fit(model, images, targets, *args, **kwargs):
        seen["images"], seen["targets"] = images, targets
        return real_fit(model, images, targets, *args, **kwargs)

    monkeypatch.setattr(distillation, "fit", recording_fit)
    distillation.distill(owner, kit, "basic-unet", FEW_EPOCHS, 1e-3, hard=hard, seed=0)
    # The batch size distill uses: compared bit for bit below, so the convolutions must run on the
    # same batches (their rounding may depend on the batch size).
    probs = predict_proba(owner, kit.data.images, kit.preset.eval_batch_size)
    assert seen["images"] is kit.data.images
    if hard:
        assert set(seen["targets"].unique().tolist()) <= {0.0, 1.0}
        assert torch.equal(seen["targets"], (probs > 0.5).float())
    else:
        assert torch.equal(seen["targets"], probs)
        assert ((probs > 0) & (probs < 1)).any()


def test_distill_arch_student_is_a_monai_unet(owner, kit):
    student = ATTACKS.get("distill-arch")().apply(owner, kit, FEW_EPOCHS, seed=0)
    assert isinstance(student, Segmenter) and isinstance(student.net, UNet)
    assert ATTACKS.get("distill-soft")(student="unet").params() == {"lr": None, "student": "unet"}
    same = ATTACKS.get("distill-soft")().apply(owner, kit, FEW_EPOCHS, seed=0)
    assert type(same.net) is type(owner.net)


def test_unet_matches_basic_unet_size_at_tiny():
    count = lambda net: sum(p.numel() for p in net.parameters())
    ratio = count(MODELS.get("unet")("tiny")) / count(MODELS.get("basic-unet")("tiny"))
    assert 0.8 < ratio < 1.25
    with pytest.raises(HarnessError, match="unknown preset"):
        MODELS.get("unet")("tinny")


@pytest.mark.parametrize("bits, most", [(8, 2**8 - 1), (4, 15)])
def test_quantize_leaves_few_values_per_output_channel(bits, most, owner, kit):
    quantized = ATTACKS.get("quantize")().apply(owner, kit, bits, seed=0)
    largest = 0
    for module, name in weight_layers(quantized):
        weight = getattr(module, name).detach()
        channels = weight.transpose(0, output_channel_dim(module)).flatten(1)
        for channel in channels:
            distinct = channel.unique().numel()
            assert distinct <= most
            largest = max(largest, distinct)
    assert largest > (most + 1) // 2  # the grid is actually used, not collapsed to a few values


def test_quantize_error_shrinks_with_more_bits(owner, kit):
    attack = ATTACKS.get("quantize")()
    original = [getattr(m, n).detach() for m, n in weight_layers(owner)]

    def error(bits):
        quantized = attack.apply(owner, kit, bits, seed=0)
        return sum((getattr(m, n) - w).abs().sum().item() for (m, n), w in zip(weight_layers(quantized), original))

    errors = [error(bits) for bits in (2, 4, 8, 16)]
    assert all(a > b for a, b in pairwise(errors)) and errors[-1] > 0
    with pytest.raises(HarnessError, match="whole number"):
        attack.check_strength(4.5)


def test_weight_noise_at_zero_is_the_identity(owner, kit):
    assert same_state(ATTACKS.get("weight-noise")().apply(owner, kit, 0.0, seed=0), owner)


def test_weight_noise_std_follows_each_layers_std(owner, kit):
    strength = 0.2
    noisy = ATTACKS.get("weight-noise")().apply(owner, kit, strength, seed=0)
    pairs = list(zip(weight_layers(owner), weight_layers(noisy)))
    (m0, n0), (m1, n1) = max(pairs, key=lambda pair: getattr(*pair[0]).numel())
    clean, perturbed = getattr(m0, n0).detach(), getattr(m1, n1).detach()
    assert clean.numel() > 10_000  # enough samples for a tight estimate
    assert (perturbed - clean).std().item() == pytest.approx(strength * clean.std().item(), rel=0.05)
    # Every layer is perturbed, not just the big one.
    assert all(not torch.equal(getattr(*a), getattr(*b)) for a, b in pairs)
    other_seed = ATTACKS.get("weight-noise")().apply(owner, kit, strength, seed=1)
    assert not same_state(noisy, other_seed)


def test_distillation_rejects_fractional_epochs():
    with pytest.raises(HarnessError, match="whole number"):
        ATTACKS.get("distill-soft")().check_strength(2.5)


def test_mirroring_flips_some_pairs_and_keeps_each_target_aligned_with_its_image():
    # A "model" that predicts its input's first channel fits that channel perfectly only when the
    # target is mirrored together with its image; an unaligned flip would raise the loss.
    images = torch.rand(16, 3, 8, 8).clamp(0.01, 0.99)
    targets = images[:, :1].clone()
    seen = []

    def echo(x):
        seen.append(x)
        return torch.logit(x[:, :1])

    aligned = torch.nn.functional.binary_cross_entropy_with_logits(echo(images), targets)
    loss = distillation.flipping_loss(seed=0)
    assert loss(echo, images, targets, torch.arange(16)).item() == pytest.approx(aligned.item(), rel=1e-5)
    mirrored = torch.tensor([torch.equal(a, b.flip(-1)) for a, b in zip(seen[-1], images)])
    kept = torch.tensor([torch.equal(a, b) for a, b in zip(seen[-1], images)])
    assert mirrored.any() and kept.any() and (mirrored | kept).all()
