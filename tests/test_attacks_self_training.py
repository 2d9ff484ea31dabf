"""Self-training (ft-pseudo), feature shift tuning (ft-large-lr) and NAD (nad) at the smoke preset."""

import copy

import pytest
import torch
from torch import nn

from attacks.nad import attention_layers
from harness.attack import AttackerKit, attacker_subset, output_layer
from harness.data import Split
from harness.errors import HarnessError
from harness.presets import TrainConfig, get_preset
from harness.registry import ATTACKS
from harness.segmenter import Segmenter, build_model
from harness.training import fit, torch_threads

NEW_ATTACKS = ["ft-pseudo", "ft-large-lr", "nad"]


@pytest.fixture(autouse=True)
def _one_thread():
    # One thread, as a benchmark run trains: on two shared cores a second thread mostly waits.
    with torch_threads(1):
        yield


def _owner(name="basic-unet"):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_model(name, "smoke").eval()


def _kit(masks=None, model_name="basic-unet"):
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(8, 3, 32, 32, generator=generator)
    if masks is None:
        masks = (torch.rand(8, 1, 32, 32, generator=generator) > 0.5).float()
    return AttackerKit(Split(images, masks), model_name, get_preset("smoke"))


@pytest.fixture(scope="module")
def kit():
    return _kit()


@pytest.fixture(scope="module")
def probe():
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))


def _outputs(model, images):
    with torch.no_grad():
        return model.eval()(images)


def _same_state(a, b):
    a, b = a.state_dict(), b.state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", NEW_ATTACKS)
def test_moderate_attack_changes_weights_and_outputs_and_spares_the_owner(name, kit, probe):
    owner = _owner()
    before = copy.deepcopy(owner)
    attack = ATTACKS.get(name)()
    attacked = attack.apply(owner, kit, attack.default_strengths[0], seed=0)
    # Parameters and buffers (batch-norm running statistics) alike.
    assert _same_state(owner, before)
    assert attacked.state_dict().keys() == before.state_dict().keys(), "a plain model of the same architecture"
    assert type(attacked) is type(owner)
    assert any(not torch.equal(v, attacked.state_dict()[k]) for k, v in before.state_dict().items())
    assert not torch.equal(_outputs(attacked, probe), _outputs(before, probe))
    assert not attacked.training


@pytest.mark.parametrize("name", NEW_ATTACKS)
def test_attack_is_deterministic_under_its_seed_and_leaves_the_global_rng(name, kit):
    owner = _owner()
    attack = ATTACKS.get(name)()
    rng = torch.get_rng_state()
    first, again, other = (attack.apply(owner, kit, 2, seed=s) for s in (0, 0, 1))
    assert torch.equal(torch.get_rng_state(), rng)
    assert _same_state(first, again)
    assert not _same_state(first, other)


@pytest.mark.parametrize("name", NEW_ATTACKS)
def test_strength_is_whole_epochs(name, kit):
    with pytest.raises(HarnessError, match="whole number"):
        ATTACKS.get(name)().apply(_owner(), kit, 2.5, seed=0)


# -- ft-pseudo ---------------------------------------------------------------------------------------------


def test_self_training_never_reads_the_masks(kit):
    """Masks of NaN or of noise: the thief's masks cannot reach the result."""
    owner = _owner()
    attack = ATTACKS.get("ft-pseudo")()
    with_nan = attack.apply(owner, _kit(masks=torch.full((8, 1, 32, 32), float("nan"))), 5, seed=0)
    with_noise = attack.apply(owner, kit, 5, seed=0)
    assert _same_state(with_nan, with_noise)
    assert all(not torch.isnan(v).any() for v in with_nan.state_dict().values() if v.is_floating_point())
    assert not _same_state(with_nan, owner)


def test_self_training_budget_is_queries_not_labels(kit):
    budget = ATTACKS.get("ft-pseudo")(data_fraction=0.5).budget(kit, 5)
    assert (budget.images, budget.labels, budget.queries) == (4, False, 4)


def test_self_training_for_zero_epochs_is_an_equal_copy(kit, probe):
    owner = _owner()
    tuned = ATTACKS.get("ft-pseudo")().apply(owner, kit, 0, seed=0)
    assert tuned is not owner
    assert _same_state(tuned, owner)
    assert torch.equal(_outputs(tuned, probe), _outputs(owner, probe))


# -- ft-large-lr -------------------------------------------------------------------------------------------


def test_feature_shift_tuning_keeps_the_head_norm_and_turns_the_head_away(kit):
    owner = _owner()
    original = output_layer(owner).weight.detach()
    attack = ATTACKS.get("ft-large-lr")()
    tuned = output_layer(attack.apply(owner, kit, 5, seed=0)).weight.detach()
    assert torch.allclose(tuned.norm(), original.norm(), rtol=1e-5)
    assert not torch.equal(tuned, original)
    # The penalty alpha * <w, w_orig> is the only thing separating these two runs: it lowers the inner product.
    plain = output_layer(ATTACKS.get("ft-large-lr")(alpha=0.0).apply(owner, kit, 5, seed=0)).weight.detach()
    assert (tuned * original).sum() < (plain * original).sum()


def test_feature_shift_tuning_reinitialises_the_head_with_its_seed(kit):
    owner = _owner()
    attack = ATTACKS.get("ft-large-lr")()
    first, again, other = (output_layer(attack.apply(owner, kit, 0, seed=s)).weight for s in (0, 0, 1))
    assert not torch.equal(first, output_layer(owner).weight)
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_feature_shift_tuning_labels_are_validated_and_budgeted(kit):
    with pytest.raises(HarnessError, match="labels must be one of masks, pseudo"):
        ATTACKS.get("ft-large-lr")(labels="ground-truth")
    masks = ATTACKS.get("ft-large-lr")().budget(kit, 5)
    pseudo = ATTACKS.get("ft-large-lr")(labels="pseudo").budget(kit, 5)
    assert (masks.images, masks.labels, masks.queries) == (8, True, 0)
    assert (pseudo.images, pseudo.labels, pseudo.queries) == (8, False, 8)


def test_feature_shift_tuning_on_pseudo_labels_never_reads_the_masks(kit):
    owner = _owner()
    attack = ATTACKS.get("ft-large-lr")(labels="pseudo")
    with_nan = attack.apply(owner, _kit(masks=torch.full((8, 1, 32, 32), float("nan"))), 3, seed=0)
    assert _same_state(with_nan, attack.apply(owner, kit, 3, seed=0))
    assert all(not torch.isnan(v).any() for v in with_nan.state_dict().values() if v.is_floating_point())


# -- nad ---------------------------------------------------------------------------------------------------


def _hooked(model):
    return [name for name, module in model.named_modules()
            if module._forward_hooks or module._forward_pre_hooks]


def test_nad_leaves_no_hooks_behind(kit):
    owner = _owner()
    attacked = ATTACKS.get("nad")(teacher_epochs=1).apply(owner, kit, 2, seed=0)
    assert _hooked(attacked) == [] and _hooked(owner) == []


def test_nad_without_its_term_and_teacher_is_plain_fine_tuning(kit):
    """beta=0 and an untrained teacher: bit-identical to ``fit`` on the same data, seed and recipe."""
    owner = _owner()
    attack = ATTACKS.get("nad")(beta=0.0, teacher_epochs=0, lr=1e-3)
    attacked = attack.apply(owner, kit, 3, seed=0)
    data = attacker_subset(kit, 1.0, 0)
    config = TrainConfig(epochs=3, batch_size=kit.preset.train.batch_size, lr=1e-3)
    plain = fit(copy.deepcopy(owner), data.images, data.masks, config, 0)
    assert _same_state(attacked, plain)
    # ... and the attention term is what changes the result when it is switched on.
    assert not _same_state(ATTACKS.get("nad")(teacher_epochs=0).apply(owner, kit, 3, seed=0), plain)


@pytest.mark.parametrize("model_name, expected", [
    ("basic-unet", ["net.down_4", "net.upcat_4", "net.upcat_3", "net.upcat_2", "net.upcat_1"]),
    # MONAI UNet: the bottleneck's skip connection, then the two decoder levels above it.
    ("unet", ["net.model.1.submodule.1.submodule.1", "net.model.1.submodule.1", "net.model.1"]),
])
def test_nad_distils_the_bottleneck_and_the_decoder_stages(model_name, expected):
    model = _owner(model_name)
    state = copy.deepcopy(model.state_dict())
    assert attention_layers(model, torch.rand(1, 3, 32, 32)) == expected
    assert _hooked(model) == [] and not model.training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())


def test_nad_runs_on_unet():
    owner = _owner("unet")
    attacked = ATTACKS.get("nad")(teacher_epochs=1).apply(owner, _kit(model_name="unet"), 1, seed=0)
    assert not _same_state(attacked, owner) and _hooked(attacked) == []


def test_nad_refuses_a_network_without_a_decoder(kit):
    flat = Segmenter(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                                   nn.ReLU(), nn.Conv2d(4, 1, 1))).eval()
    with pytest.raises(HarnessError, match="encoder-decoder"):
        ATTACKS.get("nad")().apply(flat, kit, 1, seed=0)
