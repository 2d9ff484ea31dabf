"""Stacked training (``harness.stacked``): each member follows its lone twin.

The first steps are compared weight by weight; the claims test trains three
tiny-preset nulls both ways and compares their final Dice with the spread
between seeds.
"""

import copy

import pytest
import torch

from harness.errors import HarnessError
from harness.presets import TrainConfig, get_preset
from harness.segmenter import build_model
from harness.stacked import Stack, fit_stacked
from harness.training import fit, seed_everything, torch_threads


def _member(seed: int, preset: str = "smoke"):
    seed_everything(seed)
    model = build_model("basic-unet", preset)
    generator = torch.Generator().manual_seed(1000 + seed)
    side = get_preset(preset).image_size
    images = torch.rand(48, 3, side, side, generator=generator)
    masks = (torch.rand(48, 1, side, side, generator=generator) > 0.7).float()
    return model, images, masks


def _lone(seed, config):
    model, images, masks = _member(seed)
    return fit(model, images, masks, config, seed)


def test_each_member_gets_its_own_gradient_and_nothing_from_the_others():
    torch.set_num_threads(1)
    members = [_member(s) for s in (3, 4, 5)]
    stack = Stack([m for m, _, _ in members])
    stack.loss(torch.stack([x[:16] for _, x, _ in members]), torch.stack([y[:16] for _, _, y in members])).backward()
    for k, (model, x, y) in enumerate(members):
        model.train()
        torch.nn.functional.binary_cross_entropy_with_logits(model(x[:16]), y[:16]).backward()
        for name, parameter in model.named_parameters():
            if parameter.grad.norm() < 1e-6:  # zero but for rounding: a bias just before batch norm
                continue
            # Float rounding through a deep backward: about 1e-3 of the norm; another member's: about 1.
            error = (stack.params[name].grad[k] - parameter.grad).norm() / parameter.grad.norm()
            assert error < 1e-2, (k, name, float(error))


@pytest.mark.parametrize("steps", [1, 3])
def test_each_member_computes_what_its_lone_twin_computes_step_for_step(steps):
    """After the same first steps, the stacked member and ``fit`` on it alone compute the same function
    (training-mode outputs on a probe batch) to float tolerance. Adam's first steps are about
    lr * sign(gradient), so rounding in a tiny gradient element moves its weight by up to lr: the
    tolerance is measured, as the gap between two lone runs that differ only in rounding (one and two
    torch threads). Measured (seeds 3-5): the stacked gap equals that gap to 2%, both 0.003-0.016, while
    another member is 1.6-3.3 away."""
    config = TrainConfig(epochs=1, batch_size=48 // steps, lr=1e-3)
    seeds = [3, 4, 5]
    torch.set_num_threads(1)
    members = [_member(s) for s in seeds]
    stacked = fit_stacked([m for m, _, _ in members], [x for _, x, _ in members], [y for _, _, y in members],
                          config, seeds)
    probe = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(9))

    def outputs(model):
        with torch.no_grad():
            return copy.deepcopy(model).train()(probe)

    for seed, model in zip(seeds, stacked):
        lone = outputs(_lone(seed, config))
        torch.set_num_threads(2)
        rounding = (outputs(_lone(seed, config)) - lone).abs().max()
        torch.set_num_threads(1)
        another = (outputs(_lone(seed + 10, config)) - lone).abs().max()
        gap = (outputs(model) - lone).abs().max()
        assert gap <= 2 * rounding + 1e-6 and gap < another / 20, (seed, float(gap), float(rounding), float(another))
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), _lone(seed, config).state_dict().values())
                   if not a.is_floating_point())  # num_batches_tracked: batch norm saw every step


def test_members_differ_and_each_learns():
    config = TrainConfig(epochs=2, batch_size=16, lr=3e-3)
    seeds = [1, 2]
    members = [_member(s) for s in seeds]
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m, _, _ in members]
    stacked = fit_stacked([m for m, _, _ in members], [x for _, x, _ in members], [y for _, _, y in members],
                          config, seeds)
    after = [m.state_dict() for m in stacked]
    weight = next(k for k in after[0] if k.endswith("weight"))
    assert not torch.equal(after[0][weight], after[1][weight])
    for old, new in zip(before, after):
        assert not torch.equal(old[weight], new[weight])
        tracked = [k for k in new if k.endswith("num_batches_tracked")]
        assert tracked and all(int(new[k]) == 2 * 3 for k in tracked)  # batch norm saw every step


def test_stacking_refuses_what_it_cannot_do():
    config = TrainConfig(epochs=1, batch_size=16, lr=1e-3)
    a, x, y = _member(0)
    other = build_model("unet", "smoke")
    with pytest.raises(HarnessError, match="one architecture"):
        fit_stacked([a, other], [x, x], [y, y], config, [0, 1])
    with pytest.raises(HarnessError, match="as many training images"):
        fit_stacked([a, _member(1)[0]], [x, x[:10]], [y, y[:10]], config, [0, 1])
    with pytest.raises(HarnessError, match="one model, image set"):
        fit_stacked([a], [x, x], [y], config, [0])


@pytest.mark.claims
def test_stacked_nulls_match_lone_nulls_in_final_dice_within_seed_noise():
    """Three tiny-preset null recipes trained both ways: the stacked-minus-lone Dice difference of
    each member is smaller than the spread of Dice across the seeds."""
    from harness import scoring
    from harness.data import make_splits, null_training_set
    from harness.segmenter import predict_proba

    preset = get_preset("tiny")
    test = make_splits("synthetic-polyp", preset, 0).test
    seeds = [1, 2, 3]
    data = [null_training_set("synthetic-polyp", preset, s, k) for k, s in enumerate(seeds)]

    def built(seed):
        seed_everything(seed)
        return build_model("basic-unet", "tiny")

    def dice(model):
        return scoring.summarize(scoring.dice(predict_proba(model, test.images), test.masks))

    with torch_threads(2):  # both ways on the same threads: the comparison is fair, and CI has 2 cores
        lone = [dice(fit(built(s), d.images, d.masks, preset.train, s)) for s, d in zip(seeds, data)]
        stacked = [dice(m) for m in fit_stacked([built(s) for s in seeds], [d.images for d in data],
                                                [d.masks for d in data], preset.train, seeds)]
    spread = max(lone) - min(lone)
    gaps = [abs(a - b) for a, b in zip(stacked, lone)]
    print(f"lone Dice {lone}, stacked Dice {stacked}, seed spread {spread:.4f}, gaps {gaps}")
    assert max(gaps) <= max(spread, 0.01), (lone, stacked)
