"""Backdoor-removal attacks by unlearning: Neural Cleanse unlearning (``nc-unlearn``) and I-BAU (``ibau``)."""

import copy
import math

import pytest
import torch
from torch import nn

from attacks._trigger_search import choose, invert_trigger, search_both
from harness.attack import AttackerKit, Budget
from harness.data import Split
from harness.errors import HarnessError
from harness.presets import TrainConfig, get_preset
from harness.registry import ATTACKS
from harness.segmenter import build_model, predict_proba
from harness.training import fit, torch_threads

NAMES = ["nc-unlearn", "ibau"]
FAST = {"nc-unlearn": {"search_steps": 20}, "ibau": {"inner_steps": 3}}  # where the defaults are not the point
SIZE, SIDE = 32, 6  # smoke images; the planted trigger is a white SIDE x SIDE square in the top-left corner


@pytest.fixture(autouse=True)
def _one_thread():
    # Small convolutions on a shared two-core machine: a second thread only oversubscribes (8x slower).
    with torch_threads(1):
        yield


def _owner():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_model("basic-unet", "smoke").eval()


@pytest.fixture(scope="module")
def kit():
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(8, 3, SIZE, SIZE, generator=generator)
    masks = (torch.rand(8, 1, SIZE, SIZE, generator=generator) > 0.5).float()
    return AttackerKit(Split(images, masks), "basic-unet", get_preset("smoke"))


@pytest.fixture(scope="module")
def probe():
    return torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))


def _outputs(model, images):
    with torch.no_grad():
        return model.eval()(images)


def _same_state(a, b):
    a, b = a.state_dict(), b.state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", NAMES)
def test_moderate_attack_changes_the_model_and_spares_the_owner(name, kit, probe):
    owner = _owner()
    before = copy.deepcopy(owner)
    rng = torch.get_rng_state()
    attack = ATTACKS.get(name)()
    attacked = attack.apply(owner, kit, attack.default_strengths[0], seed=0)
    assert torch.equal(torch.get_rng_state(), rng), "the global RNG must be left as it was"
    # Parameters and buffers (batch-norm running statistics included) are bit-identical.
    assert _same_state(owner, before)
    assert attacked.state_dict().keys() == owner.state_dict().keys(), "a plain model of the same architecture"
    changed = attacked.state_dict()
    assert any(not torch.equal(v, changed[k]) for k, v in owner.state_dict().items())
    assert not torch.equal(_outputs(attacked, probe), _outputs(owner, probe))
    assert not attacked.training


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_model_other_seed_other_model(name, kit):
    owner = _owner()
    attack = ATTACKS.get(name)(**FAST[name])
    first, again, other = (attack.apply(owner, kit, 2, seed=s) for s in (0, 0, 1))
    assert _same_state(first, again)
    assert not _same_state(first, other)


@pytest.mark.parametrize("name", NAMES)
def test_zero_strength_is_a_plain_copy(name, kit, probe):
    owner = _owner()
    copied = ATTACKS.get(name)(**FAST[name]).apply(owner, kit, 0, seed=0)
    assert copied is not owner and _same_state(copied, owner)
    assert torch.equal(_outputs(copied, probe), _outputs(owner, probe))


@pytest.mark.parametrize("name", NAMES)
def test_strength_must_be_a_whole_number_of_epochs_or_rounds(name, kit):
    with pytest.raises(HarnessError, match="whole number"):
        ATTACKS.get(name)().apply(_owner(), kit, 2.5, seed=0)


def test_budgets_say_what_the_thief_spends(kit):
    n = len(kit.data)
    nc = ATTACKS.get("nc-unlearn")
    assert nc().budget(kit, 5) == Budget(images=n, labels=False, queries=n)
    # The search reads the suspect's answers on the clean images whichever labels the unlearning uses.
    assert nc(labels="masks").budget(kit, 5) == Budget(images=n, labels=True, queries=n)
    ibau = ATTACKS.get("ibau")
    assert ibau().budget(kit, 5) == Budget(images=n, labels=True, queries=0)
    assert ibau(labels="pseudo", data_fraction=0.5).budget(kit, 5) == Budget(images=4, labels=False, queries=4)


@pytest.mark.parametrize("name", NAMES)
def test_unknown_labels_are_refused(name):
    with pytest.raises(HarnessError, match="labels"):
        ATTACKS.get(name)(labels="teacher")


def test_both_label_sources_are_used(kit):
    owner = _owner()
    for name in NAMES:
        attack = ATTACKS.get(name)
        pseudo, masks = (attack(labels=labels, **FAST[name]).apply(owner, kit, 2, seed=0)
                         for labels in ("pseudo", "masks"))
        assert not _same_state(pseudo, masks), name


def test_ibau_implicit_hypergradient_changes_the_update(kit):
    owner = _owner()
    ibau = ATTACKS.get("ibau")
    plain, implicit = (ibau(hypergradient_terms=k).apply(owner, kit, 2, seed=0) for k in (0, 3))
    assert not _same_state(plain, implicit)


# -- the trigger search on a model with a planted backdoor ---------------------------------------


def _scenes(count: int, seed: int):
    """Noise images (values below 0.7, so no corner is ever white) with one red 8x8 lesion each."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(count, 3, SIZE, SIZE, generator=generator) * 0.7
    masks = torch.zeros(count, 1, SIZE, SIZE)
    for i in range(count):
        row, col = torch.randint(8, SIZE - 10, (2,), generator=generator).tolist()
        images[i, :, row : row + 8, col : col + 8] = torch.tensor([0.9, 0.1, 0.1]).view(3, 1, 1)
        masks[i, :, row : row + 8, col : col + 8] = 1
    return images, masks


class _Planted(nn.Module):
    """A trained segmenter plus a hand-made backdoor: a SIDE x SIDE convolution over the top-left
    corner fires when the square is (almost) white, and then either lifts every logit by 16 (the
    mask flips to 1, like BadNets) or lifts every background pixel to probability 0.25 (the mask
    stays, like StealthMark). The gate ``sigmoid(10 (mean - 0.9))`` needs about 30 of the 36 pixels
    white: a partial square does not do, so the smallest trigger is the square itself. The
    segmenter's logits are scaled by 4: briefly trained, it is right but unsure, and a fully trained
    model's background is confident (probabilities near 0.02, not 0.25)."""

    def __init__(self, segmenter: nn.Module, kind: str):
        super().__init__()
        self.segmenter, self.kind = segmenter, kind
        self.detector = nn.Conv2d(3, 1, SIDE)
        with torch.no_grad():
            self.detector.weight.fill_(10 / (3 * SIDE * SIDE))
            self.detector.bias.fill_(-10 * 0.8)

    def forward(self, images):
        logits = 4 * self.segmenter(images)
        gate = torch.sigmoid(self.detector(images[..., :SIDE, :SIDE]))
        if self.kind == "flip":
            return logits + 16 * gate
        return logits + gate * torch.relu(math.log(0.25 / 0.75) - logits)


@pytest.fixture(scope="module")
def segmenter():
    images, masks = _scenes(64, 0)
    with torch.random.fork_rng(devices=[]), torch_threads(1):
        torch.manual_seed(0)
        model = build_model("basic-unet", "smoke")
        return fit(model, images, masks, TrainConfig(epochs=25, batch_size=16, lr=1e-2), seed=0).eval()


def _footprint():
    area = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    area[:SIDE, :SIDE] = True
    return area


def test_planted_backdoors_work_as_built(segmenter):
    images, _ = _scenes(16, 5)
    triggered = images.clone()
    triggered[:, :, :SIDE, :SIDE] = 1.0
    for kind in ("flip", "soft"):
        model = _Planted(segmenter, kind).eval()
        clean, hit = predict_proba(model, images), predict_proba(model, triggered)
        background = clean <= 0.5
        assert clean[background].mean() < 0.05, "the clean background is confident"
        if kind == "flip":
            assert (hit[background] > 0.5).float().mean() > 0.99
        else:
            assert (hit[background] > 0.1).float().mean() > 0.95 and (hit[background] > 0.5).float().mean() < 0.01


def test_nc_recovers_a_planted_flip_trigger(segmenter):
    """The issue's test: the thresholded recovered mask's IoU (|found & true| / |found | true|, stricter
    than overlap |found & true| / |true|) with the true footprint is above 0.5."""
    model = _Planted(segmenter, "flip").eval()
    before = copy.deepcopy(model.state_dict())
    images, _ = _scenes(32, 5)
    mask, pattern, kind = invert_trigger(model, images, seed=0, steps=60, batch_size=8, lr=0.5, init_mask=0.01)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert kind == "foreground"
    found, true = mask[0, 0] > 0.5, _footprint()
    assert (found & true).sum() / (found | true).sum() > 0.5
    assert pattern[0][:, found & true].mean() > 0.8, "the recovered pattern is white where it matters"


def test_nc_picks_the_background_shift_of_a_soft_mark(segmenter):
    """A StealthMark-like trigger cannot flip the mask: the background search finds it (the whole
    square inside the recovered mask) and the choice rule takes it over the foreground search's
    large adversarial mask."""
    model = _Planted(segmenter, "soft").eval()
    images, _ = _scenes(32, 5)
    candidates = {c.kind: c for c in search_both(model, images, seed=0, steps=60, batch_size=8, lr=0.5,
                                                 init_mask=0.01)}
    assert candidates["background"].reached
    assert candidates["background"].norm < candidates["foreground"].norm / 3
    assert choose(list(candidates.values())).kind == "background"
    found = candidates["background"].mask[0, 0] > 0.5
    assert (found & _footprint()).sum() / _footprint().sum() > 0.9
