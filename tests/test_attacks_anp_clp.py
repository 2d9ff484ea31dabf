"""Backdoor-removal pruning: CLP (data-free) and ANP (adversarial masks) at the smoke preset, and their shared units."""

import copy

import pytest
import torch
from torch import nn

from attacks._channels import find_units
from attacks.clp import channel_lipschitz_bounds
from harness.attack import AttackerKit, Budget
from harness.data import Split
from harness.errors import HarnessError
from harness.presets import get_preset
from harness.registry import ATTACKS
from harness.segmenter import build_model

NAMES = ["clp", "anp"]
# Few ANP iterations: the tests check the mechanism, not how well masks settle.
PARAMS = {"clp": {}, "anp": {"iterations": 12}}


def _owner(name="basic-unet"):
    """A smoke model whose batch norms carry trained-like statistics (spread gammas, means and variances).

    Fresh batch norms (gamma 1, mean 0, var 1) would make every channel's
    folded scale equal; a trained model's are not, and the owner-untouched
    check then covers non-trivial buffers.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model(name, "smoke").eval()
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                size = module.num_features
                module.weight.copy_(1 + 0.3 * torch.randn(size, generator=generator))
                module.bias.copy_(0.2 * torch.randn(size, generator=generator))
                module.running_mean.copy_(0.5 * torch.randn(size, generator=generator))
                module.running_var.copy_(torch.exp(torch.randn(size, generator=generator)))
    return model


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


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def _attack(name):
    return ATTACKS.get(name)(**PARAMS[name])


@pytest.mark.parametrize("name", NAMES)
def test_moderate_attack_prunes_a_copy_and_leaves_the_owner_bit_identical(name, kit, probe):
    owner = _owner()
    before = _state(owner)
    attack = _attack(name)
    attacked = attack.apply(owner, kit, attack.default_strengths[0], seed=0)
    assert _same(before, owner.state_dict()), "parameters and buffers (batch-norm statistics) must be untouched"
    assert not owner.training and _hooks(owner) == 0
    after = attacked.state_dict()
    assert after.keys() == before.keys(), "the attacked model must be a plain model of the same architecture"
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert not torch.equal(_outputs(attacked, probe), _outputs(owner, probe))
    assert not attacked.training
    assert _hooks(attacked) == 0, "no hook may be left on the shipped model"
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in attacked.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_model_and_the_global_rng_is_left_alone(name, kit):
    owner = _owner()
    attack = _attack(name)
    rng = torch.get_rng_state()
    first = attack.apply(owner, kit, attack.default_strengths[-1], seed=0)
    assert torch.equal(torch.get_rng_state(), rng)
    again = attack.apply(owner, kit, attack.default_strengths[-1], seed=0)
    assert _same(first.state_dict(), again.state_dict())


def _silent_channels(model, images):
    """{unit name: channels whose output is exactly zero on ``images``}, read at each unit's end."""
    units = find_units(model, (1, *images.shape[1:]))
    captured = {}
    handles = [u.tap.register_forward_hook(lambda m, i, o, name=u.name: captured.__setitem__(name, o))
               for u in units]
    with torch.no_grad():
        model.eval()(images)
    for handle in handles:
        handle.remove()
    return {name: set(torch.nonzero(out.abs().amax(dim=(0, 2, 3)) == 0).flatten().tolist())
            for name, out in captured.items()}


@pytest.mark.parametrize("name", NAMES)
def test_pruned_channels_are_exactly_silent_and_nothing_else_changed(name, kit, probe):
    owner = _owner()
    attack = _attack(name)
    attacked = attack.apply(owner, kit, attack.default_strengths[-1], seed=0)
    images = probe * 5 - 2  # far outside [0, 1]: no channel is zero by accident
    silent = _silent_channels(attacked, images)
    assert sum(map(len, silent.values())) > 0
    assert not any(_silent_channels(owner, images).values())
    # Silencing exactly those channels of the owner's model gives the attacked model: nothing else moved.
    rebuilt = copy.deepcopy(owner)
    for unit in find_units(rebuilt, (1, 3, 32, 32)):
        unit.silence(sorted(silent[unit.name]))
    assert _same(rebuilt.state_dict(), attacked.state_dict())


def test_clp_budget_is_free_and_anp_needs_labelled_images(kit):
    assert ATTACKS.get("clp")().budget(kit, 3.0) == Budget()
    assert ATTACKS.get("anp")(data_fraction=0.5).budget(kit, 0.02) == Budget(images=4, labels=True)
    assert ATTACKS.get("anp").trains and not ATTACKS.get("clp").trains


# -- CLP -----------------------------------------------------------------------------------------------


class _Blind:
    """A kit without data: reading ``data`` fails the test."""

    def __init__(self, kit):
        self.model_name, self.preset, self.null_models = kit.model_name, kit.preset, {}

    @property
    def data(self):
        raise AssertionError("CLP read the thief's data")


def test_clp_reads_no_data(kit):
    owner = _owner()
    attack = ATTACKS.get("clp")()
    normal = attack.apply(owner, kit, 2.0, seed=0)
    nan_kit = AttackerKit(Split(torch.full_like(kit.data.images, float("nan")),
                                torch.full_like(kit.data.masks, float("nan"))), kit.model_name, kit.preset)
    for other in (attack.apply(owner, nan_kit, 2.0, seed=0), attack.apply(owner, _Blind(kit), 2.0, seed=5)):
        assert _same(normal.state_dict(), other.state_dict())
    assert not _same(normal.state_dict(), owner.state_dict())


class _Small(nn.Module):
    """conv-BN-ReLU twice and a 1x1 head: a stand-in for a segmenter, with channels to plant."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.conv2, self.bn2 = nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.head = nn.Conv2d(16, 1, 1)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        return self.head(torch.relu(self.bn2(self.conv2(x))))


def _small():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(4)
        model = _Small().eval()
        with torch.no_grad():
            for norm in (model.bn1, model.bn2):
                norm.bias.uniform_(0.1, 0.5)  # nonzero, so that zeroing one shows in the state
                norm.running_mean.uniform_(-0.5, 0.5)
        return model


def test_clp_prunes_the_channel_planted_with_a_huge_lipschitz_bound(kit):
    model = _small()
    with torch.no_grad():
        model.conv2.weight[5] *= 20  # a trigger-sized response: a kernel norm far above its layer's
        model.bn1.running_var[11] = 1e-4  # the same through the folded batch norm: scale 100x
        model.head.weight *= 50  # the output layer is never a candidate, whatever its norm
    pruned = ATTACKS.get("clp")().apply(model, kit, 3.0, seed=0)
    original, result = model.state_dict(), pruned.state_dict()
    changed = {k: (original[k] != result[k]).nonzero().flatten().tolist() for k in original
               if not torch.equal(original[k], result[k])}
    assert changed == {"bn1.weight": [11], "bn1.bias": [11], "bn2.weight": [5], "bn2.bias": [5]}
    # Silenced: the planted channels now output exactly zero after their norms.
    with torch.no_grad():
        assert torch.equal(pruned.bn2(pruned.conv2(torch.rand(1, 16, 8, 8)))[:, 5], torch.zeros(1, 8, 8))


def test_clp_bound_is_the_spectral_norm_times_the_batch_norm_scale():
    model = _small()
    unit = next(u for u in find_units(model, (1, 3, 16, 16)) if u.conv is model.conv2)
    assert unit.norm is model.bn2
    expected = torch.stack([torch.linalg.svdvals(model.conv2.weight[c].reshape(16, 9).double())[0]
                            for c in range(16)])
    scale = (model.bn2.weight / torch.sqrt(model.bn2.running_var + model.bn2.eps)).abs().double()
    torch.testing.assert_close(channel_lipschitz_bounds(unit), expected * scale)


def test_lower_u_prunes_more(kit):
    owner = _owner()
    counts = [sum(map(len, _silent_channels(ATTACKS.get("clp")().apply(owner, kit, u, seed=0),
                                            kit.data.images).values())) for u in (3.0, 2.0, 1.0)]
    assert counts[0] <= counts[1] < counts[2]


def test_zeroing_the_filter_alone_would_not_silence_a_batch_normed_channel():
    model = _small()
    with torch.no_grad():
        model.bn2.running_mean[3], model.bn2.bias[3] = 0.7, 0.4
        model.conv2.weight[3] = 0
        model.conv2.bias[3] = 0
        out = model.bn2(model.conv2(torch.rand(1, 16, 8, 8)))[:, 3]
    assert out.abs().min() > 0.1  # beta - gamma * mean / std: a constant, not a zero


# -- ANP -----------------------------------------------------------------------------------------------


def test_anp_masks_are_deterministic_and_the_smallest_fraction_is_pruned(kit):
    owner = _owner()
    attack = _attack("anp")
    names, masks = attack.masks(owner, kit, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(masks, attack.masks(owner, kit, seed=0)[1]))
    values = torch.cat(masks)
    assert 0 <= values.min() and values.max() <= 1 and values.min() < 1, "the masks moved, within [0, 1]"
    fraction = 0.1
    silent = _silent_channels(attack.apply(owner, kit, fraction, seed=0), kit.data.images * 5 - 2)
    offsets = dict(zip(names, torch.tensor([0] + [len(m) for m in masks]).cumsum(0).tolist()))
    pruned = {offsets[name] + c for name, channels in silent.items() for c in channels}
    assert len(pruned) == round(fraction * len(values))
    assert pruned == set(torch.argsort(values, stable=True)[: len(pruned)].tolist())


class _Planted(nn.Module):
    """A hand-made segmenter: the mask is "red > 0.5"; channel 3 is a backdoor that fires on cyan.

    Channels 0 and 1 carry the task (red above and below 0.5; the logit is
    20 (red - 0.5)). Channel 2 is a weak, harmless copy of green. Channel 3
    sums green and blue; its batch norm maps that sum t to 16 (t - 1) - 11.2,
    above zero only for t > 1.7, where the head's weight of 20 forces the pixel
    into the mask: a trigger (green and blue near 1) that clean data, whose
    colours stay below 0.8, never shows. Perturbed by 0.4 as ANP does, the
    same channel fires from t > 1.3 on (7 % of clean pixels, whatever their
    red): the sensitivity ANP looks for. The perturbation bound is the paper's
    0.4: within the plugin's default of 0.1 this channel does not fire on clean
    data, and no mask moves.
    """

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Conv2d(4, 1, 1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0] = 1.0
            self.conv.weight[1, 0] = -1.0
            self.conv.weight[2, 1] = 1.0
            self.conv.weight[3, 1:] = 1.0
            self.bn.running_mean.copy_(torch.tensor([0.5, -0.5, 0.5, 1.0]))
            self.bn.running_var.copy_(torch.tensor([0.04, 0.04, 0.04, 0.25]) - self.bn.eps)
            self.bn.weight.copy_(torch.tensor([1.0, 1.0, 1.0, 8.0]))
            self.bn.bias.copy_(torch.tensor([0.0, 0.0, 0.0, -11.2]))
            self.head.weight.copy_(torch.tensor([4.0, -4.0, 0.05, 20.0]).view(1, 4, 1, 1))
            self.head.bias.zero_()
        self.eval()

    def forward(self, x):
        return self.head(torch.relu(self.bn(self.conv(x))))


def test_anp_prunes_the_planted_backdoor_channel():
    generator = torch.Generator().manual_seed(7)
    images = torch.rand(32, 3, 16, 16, generator=generator) * 0.8
    model = _Planted()
    kit = AttackerKit(Split(images, (images[:, :1] > 0.5).float()), "planted", get_preset("smoke"))
    cyan = torch.zeros(1, 3, 16, 16)
    cyan[:, 1:] = 1.0
    assert (_outputs(model, cyan) > 5).all(), "the backdoor fires on cyan (red 0: background)"
    attack = ATTACKS.get("anp")(iterations=30, eps=0.4, batch_size=8)
    names, masks = attack.masks(model, kit, seed=0)
    assert names == ["conv"] and int(masks[0].argmin()) == 3
    pruned = attack.apply(model, kit, 0.25, seed=0)  # one neuron of four
    assert pruned.bn.weight[3] == 0 and pruned.bn.bias[3] == 0
    assert torch.equal(pruned.bn.weight[:3], model.bn.weight[:3])
    assert (_outputs(pruned, cyan) < 0).all(), "the trigger no longer forces the mask"


# -- the shared units ------------------------------------------------------------------------------------


def test_units_pair_each_convolution_with_the_norm_it_feeds():
    basic = _owner("basic-unet")
    units = find_units(basic, (1, 3, 32, 32))
    paired = [u for u in units if u.norm is not None]
    assert all(isinstance(u.norm, nn.BatchNorm2d) for u in paired)
    assert {type(u.conv) for u in units if u.norm is None} == {nn.ConvTranspose2d}  # up-sampling feeds a concat
    assert all(u.conv.out_channels > 1 for u in units), "the logit layer is never a unit"
    # MONAI's residual UNet: the shortcut convolution is registered just before the next block's
    # layers, but feeds an addition; its units are read at the convolution.
    unet = build_model("unet", "smoke").eval()
    names = {u.name: u for u in find_units(unet, (1, 3, 32, 32))}
    assert names["net.model.0.residual"].norm is None
    assert isinstance(names["net.model.0.conv.unit0.conv"].norm, nn.InstanceNorm2d)


def test_a_convolution_whose_output_also_bypasses_the_norm_is_read_at_the_convolution():
    class PreActivation(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.norm = nn.BatchNorm2d(8)
            self.inner = nn.Conv2d(8, 8, 3, padding=1)
            self.head = nn.Conv2d(8, 1, 1)

        def forward(self, x):
            x = self.conv(x)
            return self.head(x + self.inner(torch.relu(self.norm(x))))

    units = {u.name: u for u in find_units(PreActivation().eval(), (1, 3, 8, 8))}
    assert units["conv"].norm is None and units["inner"].norm is None


@pytest.mark.parametrize("model_name", ["unet", "segresnet"])
def test_silencing_is_exact_on_other_norms(model_name, probe):
    model = build_model(model_name, "smoke").eval()
    units = find_units(model, (1, 3, 32, 32))
    for unit in units:
        unit.silence([0])
    silent = _silent_channels(model, probe)
    assert all(0 in silent[u.name] for u in units)


def test_a_model_with_only_an_output_layer_is_refused(kit):
    with pytest.raises(HarnessError, match="no convolution channels"):
        ATTACKS.get("clp")().apply(nn.Sequential(nn.Conv2d(3, 1, 1)), kit, 3.0, seed=0)
