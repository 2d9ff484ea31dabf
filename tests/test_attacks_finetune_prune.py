"""Fine-tuning (FTLL, FTAL, RTLL, RTAL) and pruning (layer-wise, global, fine-pruning) attacks at the smoke preset."""

import copy

import pytest
import torch

from attacks._fine_tuning import retrain
from harness.attack import AttackerKit, output_layer, weight_layers
from harness.data import Split
from harness.errors import HarnessError
from harness.presets import get_preset
from harness.registry import ATTACKS
from harness.segmenter import build_model

NEW_ATTACKS = ["ftll", "ftal", "rtll", "rtal", "prune-layer", "fine-prune"]


def _owner():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_model("basic-unet", "smoke").eval()


@pytest.fixture(scope="module")
def kit():
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(8, 3, 32, 32, generator=generator)
    masks = (torch.rand(8, 1, 32, 32, generator=generator) > 0.5).float()
    return AttackerKit(Split(images, masks), "basic-unet", get_preset("smoke"))


@pytest.fixture(scope="module")
def probe():
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))


def _outputs(model, images):
    with torch.no_grad():
        return model.eval()(images)


def _head_keys(model):
    """State-dict keys of the output layer's parameters."""
    head = output_layer(model)
    prefix = next(name for name, module in model.named_modules() if module is head)
    return {f"{prefix}.{name}" for name, _ in head.named_parameters()}


@pytest.mark.parametrize("name", NEW_ATTACKS)
def test_moderate_attack_changes_weights_and_outputs_and_spares_the_owner(name, kit, probe):
    owner = _owner()
    before = copy.deepcopy(owner.state_dict())
    attack = ATTACKS.get(name)()
    attacked = attack.apply(owner, kit, attack.default_strengths[0], seed=0)
    after = owner.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    changed = attacked.state_dict()
    assert changed.keys() == before.keys(), "the attacked model must be a plain model of the same architecture"
    assert any(not torch.equal(before[k], changed[k]) for k in before)
    assert not torch.equal(_outputs(attacked, probe), _outputs(owner, probe))
    assert not attacked.training


@pytest.mark.parametrize("name", ["ftll", "ftal"])
def test_zero_epochs_is_the_identity(name, kit, probe):
    owner = _owner()
    tuned = ATTACKS.get(name)().apply(owner, kit, 0, seed=0)
    assert tuned is not owner
    assert torch.equal(_outputs(tuned, probe), _outputs(owner, probe))


@pytest.mark.parametrize("name", ["ftll", "rtll"])
def test_last_layer_attacks_touch_only_the_last_layer(name, kit):
    owner = _owner()
    tuned = ATTACKS.get(name)().apply(owner, kit, 5, seed=0)
    head = _head_keys(owner)
    original, result = owner.state_dict(), tuned.state_dict()
    # Buffers included: the frozen body's batch norm must keep the owner's running statistics.
    untouched = [k for k in original if k not in head]
    assert all(torch.equal(original[k], result[k]) for k in untouched)
    assert all(not torch.equal(original[k], result[k]) for k in head)
    assert all(p.requires_grad for p in tuned.parameters()), "the shipped model is a plain, trainable model"


def test_all_layer_fine_tuning_trains_the_body(kit):
    owner = _owner()
    tuned = ATTACKS.get("ftal")().apply(owner, kit, 2, seed=0)
    head = _head_keys(owner)
    assert any(not torch.equal(v, tuned.state_dict()[k]) for k, v in owner.state_dict().items() if k not in head)


@pytest.mark.parametrize("name", ["rtll", "rtal"])
def test_reinitialisation_is_new_and_seeded(name, kit):
    owner = _owner()
    attack = ATTACKS.get(name)()
    rng = torch.get_rng_state()
    first, again, other = (output_layer(attack.apply(owner, kit, 0, seed=s)).weight for s in (0, 0, 1))
    assert torch.equal(torch.get_rng_state(), rng), "re-initialisation must not consume the global RNG"
    assert not torch.equal(first, output_layer(owner).weight)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_training_attack_is_deterministic_under_its_seed(kit, probe):
    owner = _owner()
    attack = ATTACKS.get("rtal")(data_fraction=0.5)
    first, again, other = (_outputs(attack.apply(owner, kit, 2, seed=s), probe) for s in (0, 0, 1))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_epochs_must_be_whole(kit):
    with pytest.raises(HarnessError, match="whole number"):
        retrain(_owner(), kit, 2.5, 1e-3, 1.0, seed=0)


def _zero_fraction(weights):
    return sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)


def test_layerwise_pruning_zeroes_each_layer(kit):
    pruned = ATTACKS.get("prune-layer")().apply(_owner(), kit, 0.9, seed=0)
    for module, name in weight_layers(pruned):
        weight = getattr(module, name)
        assert isinstance(weight, torch.nn.Parameter), "the mask must be baked in"
        if weight.numel() >= 100:
            assert _zero_fraction([weight]) >= 0.85


def test_global_pruning_zeroes_the_targeted_weights_overall(kit):
    pruned = ATTACKS.get("prune")().apply(_owner(), kit, 0.9, seed=0)
    assert _zero_fraction([getattr(m, n) for m, n in weight_layers(pruned)]) >= 0.85


def _mean_activation_into_output_layer(model, images):
    captured = []
    handle = output_layer(model).register_forward_pre_hook(lambda module, inputs: captured.append(inputs[0]))
    with torch.no_grad():
        model.eval()(images)
    handle.remove()
    return torch.cat(captured).mean(dim=(0, 2, 3))


def test_fine_pruning_cuts_the_least_active_channels_and_keeps_them_cut(kit):
    owner = _owner()
    activity = _mean_activation_into_output_layer(owner, kit.data.images)
    attacked = ATTACKS.get("fine-prune")(epochs=3).apply(owner, kit, 0.6, seed=0)
    count = round(0.6 * len(activity))
    expected = set(activity.argsort()[:count].tolist())
    weight = output_layer(attacked).weight
    assert isinstance(weight, torch.nn.Parameter) and not hasattr(output_layer(attacked), "weight_orig")
    # Conv2d weight is (out, in, kh, kw): a pruned feature channel is a zero input column.
    cut = {c for c in range(weight.shape[1]) if not weight[:, c].any()}
    assert cut == expected
    original = output_layer(owner).weight
    kept = sorted(set(range(weight.shape[1])) - expected)
    assert not torch.equal(weight[:, kept], original[:, kept]), "the surviving channels were fine-tuned"
