"""What a removal attack is: a configured map from a model to a new model.

An attack is created with its parameters (``Attack(**params)``) and applied
to a model at a strength. It may use the thief's kit only: their own images
(never the owner's), the architecture name and the run's training recipe.
It must not modify the model it is given: the owner's copy stays
bit-identical. Input-transform attacks return the model wrapped with their
preprocessing, so every attack is model -> model.

Named presets give memorable cells: ``--attack prune.l1_50`` is ``prune`` at
strength 0.5.

Every attack declares what the thief spends (``budget``): how many of their own
images it uses, whether it needs their masks, and how many queries it sends
to the suspect. With the wall-clock seconds a cell measures, that puts each
attack in a budget class (``harness.verdicts.budget_class``: no data,
unlabelled data, labelled data), and the worst-case table names the cheapest
removal in each class: a thief tries the free moves first.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from harness.data import Split
from harness.errors import HarnessError
from harness.presets import Preset, TrainConfig
from harness.training import fit


@dataclass
class AttackerKit:
    """What the thief has besides the stolen model."""

    data: Split  # the attacker's own images and masks; disjoint from the owner's
    model_name: str  # registered architecture of the stolen model
    preset: Preset  # the run's size and training recipe
    # Clean models anyone can train (the null population); a thief who wants their own
    # mark to hold up calibrates it against them exactly as the owner does.
    null_models: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Budget:
    """What one application of an attack spends, besides compute time."""

    images: int = 0  # the thief's own images it uses
    labels: bool = False  # whether it needs their masks too
    queries: int = 0  # queries sent to the suspect (a query is one image)


class Attack:
    family: str = ""
    version = 1  # bump when a change alters what the attack does: it is part of every run id
    columns = ()  # harness.metrics.Column of each metric ``report`` returns
    strength_name: str = "strength"
    strength_range: tuple[float, float] = (0.0, 1.0)  # inclusive bounds
    default_strengths: tuple[float, ...] = ()
    presets: dict[str, float] = {}  # name -> strength, used as "<attack>.<preset>"
    integer_strength = False  # True: the strength counts something (epochs, bits, pixels)
    # True: the attack trains. Calibrating an attacked suspect needs nulls under the same attack, and
    # a training attack costs a training run per null, so fewer of them are attacked (harness.nulls).
    trains = False

    def apply(self, model: nn.Module, kit: AttackerKit, strength: float, seed: int) -> nn.Module:
        raise NotImplementedError

    @property
    def label(self) -> str:
        """What the leaderboard's ``attack`` column says: the registered name (a chain: its steps)."""
        return self.registered_name

    def budget(self, kit: AttackerKit, strength: float) -> Budget:
        """What the thief spends at ``strength`` (a subclass that uses data or queries says so)."""
        return Budget()

    def report(self, attacked: nn.Module, kit: AttackerKit, seed: int) -> dict[str, float | None]:
        """Extra metrics about the attack itself (e.g. whether a thief's own mark verifies)."""
        return {}

    def params(self) -> dict:
        return {}

    def spec(self) -> dict:
        """Everything that decides what the attack does (part of every run id): name, version, parameters."""
        return {"name": self.registered_name, "version": self.version, **self.params()}

    def check_strength(self, strength: float) -> float:
        low, high = self.strength_range
        if not low <= strength <= high:
            raise HarnessError(
                f"strength {strength:g} is out of range for attack {self.registered_name!r}: "
                f"{self.strength_name} must be in [{low:g}, {high:g}]")
        if self.integer_strength and not float(strength).is_integer():
            raise self.invalid_strength(strength, "a whole number")
        return float(strength)

    def invalid_strength(self, strength: float, must_be: str) -> HarnessError:
        """The one-line error for a strength in range that the attack still cannot take."""
        return HarnessError(f"strength {strength:g} is not valid for attack {self.registered_name!r}: "
                            f"{self.strength_name} must be {must_be}")


def weight_layers(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """(module, "weight") for every convolution and linear layer: what pruning targets."""
    kinds = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
    return [(m, "weight") for m in model.modules() if isinstance(m, kinds)]


def output_layer(model: nn.Module) -> nn.Module:
    """The last convolution/linear layer in registration order: the one producing the logits."""
    layers = [m for m, _ in weight_layers(model)]
    if not layers:
        raise HarnessError("the model has no convolution or linear layer to attack")
    return layers[-1]


def subset_size(kit: AttackerKit, fraction: float) -> int:
    """How many of the attacker's images ``attacker_subset`` takes for ``fraction`` (at least one)."""
    if not 0 < fraction <= 1:
        raise HarnessError(f"attacker data fraction must be in (0, 1], got {fraction}")
    return max(1, round(fraction * len(kit.data)))


def attacker_subset(kit: AttackerKit, fraction: float, seed: int) -> Split:
    """A seeded ``fraction`` of the attacker's images (at least one)."""
    count = subset_size(kit, fraction)
    order = torch.randperm(len(kit.data), generator=torch.Generator().manual_seed(seed))[:count]
    return Split(kit.data.images[order], kit.data.masks[order])


def fine_tune(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, kit: AttackerKit, epochs: int,
              lr: float, seed: int, parameters=None, desc: str = "attack") -> nn.Module:
    """Train a deep copy of ``model`` with the run's batch size; the original is untouched."""
    tuned = copy.deepcopy(model)
    config = TrainConfig(epochs=int(epochs), batch_size=kit.preset.train.batch_size, lr=lr)
    chosen = None if parameters is None else parameters(tuned)
    return fit(tuned, images, targets, config, seed, desc=desc, parameters=chosen)
