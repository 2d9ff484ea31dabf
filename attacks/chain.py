"""Chained removal: the thief applies several attacks in turn, e.g. prune, then fine-tune to recover.

WRT (Lukas et al., "SoK: How Robust is Image Classification Deep Neural Network Watermarking?",
S&P 2022) found that no single removal attack beat every scheme, but combinations did: extract then
fine-tune, prune then fine-tune. ``--attack prune.l1_50+ftal.e5`` is one cell: each step is an
attack name with a preset (or a bare name: its first default strength), applied in order to the
previous step's output, every step seeded by the cell's seed. What the steps spend adds up; their
images are one pool, the thief's own, so the chain uses as many as its greediest step.
"""

from __future__ import annotations

from harness.attack import Attack, Budget
from harness.errors import HarnessError
from harness.registry import ATTACKS

# Steps that wrap the model in serving or preprocessing code rather than change its weights: a later
# step would train or prune the wrapper, which no thief ships, so they may only come last.
_WRAPPING_FAMILIES = ("serving", "input-transform")


def parse_steps(text: str) -> list[tuple[Attack, float]]:
    """``"prune.l1_50+ftal.e5"`` -> [(prune, 0.5), (ftal, 5.0)], each name and preset checked."""
    parts = [p.strip() for p in str(text).split("+")]
    if len(parts) < 2 or not all(parts):
        raise HarnessError(f"a chain needs two or more attacks joined by '+', e.g. prune.l1_50+ftal.e5; got {text!r}")
    steps = []
    for part in parts:
        name, _, preset = part.partition(".")
        if name == "chain":
            raise HarnessError(f"a chain cannot contain a chain: {text!r}")
        attack = ATTACKS.get(name)()
        if preset and preset not in attack.presets:
            valid = ", ".join(f"{name}.{p}" for p in attack.presets) or "(none)"
            raise HarnessError(f"unknown preset {part!r} in chain {text!r}; presets of {name!r}: {valid}")
        strength = attack.presets[preset] if preset else attack.default_strengths[0]
        steps.append((attack, attack.check_strength(strength)))
    for attack, _ in steps[:-1]:
        if attack.family in _WRAPPING_FAMILIES:
            raise HarnessError(f"{attack.registered_name!r} ({attack.family}) wraps the model, so it can only be "
                               f"the last step of a chain: {text!r}")
    return steps


@ATTACKS.register("chain")
class Chain(Attack):
    """Attacks applied in sequence (WRT, S&P 2022): default prune 50% then fine-tune all layers 5 epochs."""

    family = "chain"
    strength_name = "the whole chain (its steps carry their own strengths)"
    strength_range = (1.0, 1.0)
    default_strengths = (1.0,)
    integer_strength = True

    def __init__(self, steps: str = "prune.l1_50+ftal.e5"):
        self.steps = "+".join(p.strip() for p in str(steps).split("+"))
        self._steps = parse_steps(self.steps)
        self.trains = any(attack.trains for attack, _ in self._steps)

    @property
    def label(self) -> str:
        return self.steps

    def params(self) -> dict:
        # The steps' own specs too: a step whose recipe changes gives the chain a new run id.
        return {"steps": self.steps, "step_specs": [attack.spec() for attack, _ in self._steps]}

    def budget(self, kit, strength):
        spent = [attack.budget(kit, x) for attack, x in self._steps]
        return Budget(images=max(b.images for b in spent), labels=any(b.labels for b in spent),
                      queries=sum(b.queries for b in spent))

    def apply(self, model, kit, strength, seed):
        self.check_strength(strength)
        for attack, step_strength in self._steps:
            model = attack.apply(model, kit, step_strength, seed)
        return model
