"""Serving move: the stolen model's answer averaged with a clean model the thief trained themselves."""

from __future__ import annotations

import torch
from torch import nn

from attacks._serving import ServedModel, ServingAttack, full_precision, logits_of
from harness.attack import AttackerKit, Budget
from harness.data import Split
from harness.device import model_device, to_device
from harness.registry import ATTACKS
from harness.segmenter import build_model
from harness.training import fit, seed_everything


# The thief's own seed: the run seed would give their model the owner's initialisation and minibatch order
# (owner B uses seed + 1000 and null member k seed + 1 + k; this clashes with neither).
THIEF_SEED_OFFSET = 2000


class EnsembledAnswers(ServedModel):
    """Answers ``(1 - weight) * stolen + weight * thief`` probabilities; ``thief`` is the thief's own model."""

    def __init__(self, model: nn.Module, thief: nn.Module, weight: float):
        super().__init__(model)
        self.thief = thief
        self.weight = float(weight)

    def forward(self, images):
        stolen = torch.sigmoid(self.stolen_logits(images))
        own = torch.sigmoid(self.thief(images).float())
        with full_precision(stolen):
            return logits_of((1 - self.weight) * stolen + self.weight * own)


def _data_fingerprint(data: Split) -> tuple:
    """Tells two attacker splits apart without hashing their bytes (sums in float64, no copy)."""
    return (tuple(data.images.shape), torch.sum(data.images, dtype=torch.float64).item(),
            torch.sum(data.masks, dtype=torch.float64).item())


@ATTACKS.register("ensemble")
class Ensemble(ServingAttack):
    """The stolen model's probabilities averaged with a clean model the thief trains on their labelled images.

    The thief's model is trained with the run's recipe on their own images and
    masks; it carries no mark, so a trigger's response is diluted by the
    weight of the thief's model, while the mask stays close to both models'.
    The mask is not kept exactly. The thief trains their model once: every
    model this attack serves (the suspect, then each null) shares the same one.
    """

    strength_name = "weight of the thief's own model"
    strength_range = (0.01, 0.99)
    default_strengths = (0.5,)
    presets = {"w25": 0.25, "w50": 0.5}
    version = 1

    def __init__(self):
        self._thief_models: dict[tuple, nn.Module] = {}

    def thief_model(self, kit: AttackerKit, seed: int, device: torch.device) -> nn.Module:
        """The thief's own model for this kit and seed, trained on first use."""
        key = (seed, _data_fingerprint(kit.data), kit.model_name, kit.preset.name, str(device))
        if key not in self._thief_models:
            # Seeded initialisation without moving the global RNG, as for a distillation student.
            own_seed = seed + THIEF_SEED_OFFSET
            with torch.random.fork_rng(devices=[]):
                seed_everything(own_seed)
                fresh = build_model(kit.model_name, kit.preset.name)
            # A caller may serve under no_grad; the thief's training needs gradients all the same.
            with torch.enable_grad():
                self._thief_models[key] = fit(to_device(fresh, device), kit.data.images, kit.data.masks,
                                              kit.preset.train, own_seed, desc="thief's own model")
        return self._thief_models[key]

    def serve(self, model, kit, strength, seed):
        return EnsembledAnswers(model, self.thief_model(kit, seed, model_device(model)), strength)

    def budget(self, kit, strength):
        """All of the thief's images, with their masks: they train a model on them."""
        return Budget(images=len(kit.data), labels=True)
