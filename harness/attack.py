"""What a removal attack is: a configured map from a model to a new model.

An attack is created with its parameters and applied to a model at a
strength; it may use the attacker's data only (never the owner's), and it
must not modify the model it is given: the owner's copy stays bit-identical.
Input-transform attacks return the model wrapped with their preprocessing,
so every attack is model -> model.
"""

from __future__ import annotations

from torch import nn

from harness.data import Split
from harness.errors import HarnessError


class Attack:
    family: str = ""
    strength_name: str = "strength"
    strength_range: tuple[float, float] = (0.0, 1.0)  # inclusive bounds
    default_strengths: tuple[float, ...] = ()

    def apply(self, model: nn.Module, attacker_data: Split, strength: float, seed: int) -> nn.Module:
        raise NotImplementedError

    def params(self) -> dict:
        return {}

    def check_strength(self, strength: float) -> float:
        low, high = self.strength_range
        if not low <= strength <= high:
            raise HarnessError(
                f"strength {strength:g} is out of range for attack {self.registered_name!r}: "
                f"{self.strength_name} must be in [{low:g}, {high:g}]")
        return float(strength)


def weight_layers(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """(module, "weight") for every convolution and linear layer: what pruning targets."""
    kinds = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
    return [(m, "weight") for m in model.modules() if isinstance(m, kinds)]
