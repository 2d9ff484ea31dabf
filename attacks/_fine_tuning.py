"""Fine-tuning removal attacks (Adi et al. 2018): FTLL, FTAL, RTLL and RTAL share one routine.

The base of the ``ftll``, ``ftal``, ``rtll`` and ``rtal`` plugins (underscore: not a plugin itself).

Each is ``retrain`` with two switches: whether the output layer is first
re-initialised (RT*) and whether only it is trained (*LL). The thief trains on
their own images against the ground-truth masks, with the run's batch size.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from harness.attack import Attack, AttackerKit, Budget, attacker_subset, output_layer, subset_size
from harness.errors import HarnessError
from harness.presets import TrainConfig
from harness.training import fit


class _FrozenBody(nn.Module):
    """Wraps a model so that ``train()`` switches only its output layer to training mode.

    ``fit`` puts whatever it trains in training mode. A thief who tunes only the
    head treats the rest as a fixed feature extractor, so batch norm there must
    keep normalising with (and not update) the owner's running statistics.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def train(self, mode: bool = True) -> "_FrozenBody":
        super().train(False)
        output_layer(self.model).train(mode)
        return self


def retrain(model: nn.Module, kit: AttackerKit, epochs: float, lr: float, data_fraction: float, seed: int,
            reinit_last: bool = False, last_only: bool = False) -> nn.Module:
    """A copy of ``model`` trained ``epochs`` epochs on the attacker's data; ``model`` is untouched.

    ``reinit_last`` re-initialises the output layer first (seeded by ``seed``;
    the global RNG is left as it was). ``last_only`` trains the output layer
    alone and keeps every other parameter and buffer bit-identical. Zero epochs
    return a plain copy (re-initialised if asked).
    """
    if epochs < 0 or not float(epochs).is_integer():
        raise HarnessError(f"fine-tuning epochs must be a whole number >= 0, got {epochs}")
    data = attacker_subset(kit, data_fraction, seed)
    tuned = copy.deepcopy(model)
    head = output_layer(tuned)
    if reinit_last:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            head.reset_parameters()
    config = TrainConfig(epochs=int(epochs), batch_size=kit.preset.train.batch_size, lr=lr)
    if not last_only:
        return fit(tuned, data.images, data.masks, config, seed, desc="fine-tune")
    # Frozen, not merely left out of the optimiser: no gradients are computed or kept for the body.
    trainable = [p.requires_grad for p in tuned.parameters()]
    tuned.requires_grad_(False)
    head.requires_grad_(True)
    fit(_FrozenBody(tuned), data.images, data.masks, config, seed, desc="fine-tune last layer")
    for parameter, flag in zip(tuned.parameters(), trainable):
        parameter.requires_grad_(flag)
    return tuned.eval()


class FineTuningAttack(Attack):
    """Base of the four fine-tuning attacks; subclasses set ``reinit_last`` and ``last_only``."""

    trains = True
    family = "fine-tuning"
    strength_name = "fine-tuning epochs"
    strength_range = (0.0, 500.0)
    default_strengths = (5.0, 20.0)
    presets = {"e5": 5.0, "e20": 20.0, "e50": 50.0}
    reinit_last = False
    last_only = False

    def __init__(self, lr: float = 1e-3, data_fraction: float = 1.0):
        self.lr, self.data_fraction = float(lr), float(data_fraction)

    def params(self) -> dict:
        return {"lr": self.lr, "data_fraction": self.data_fraction}

    def budget(self, kit, strength):
        return Budget(images=subset_size(kit, self.data_fraction), labels=True)

    def apply(self, model, kit, strength, seed):
        return retrain(model, kit, strength, self.lr, self.data_fraction, seed,
                       reinit_last=self.reinit_last, last_only=self.last_only)
