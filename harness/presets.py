"""Named run sizes. Every number here was chosen by measurement, not by guess.

``tiny`` is the laptop default: 48x48 images, a 0.5M-parameter UNet and 665
Adam steps per model (35 epochs of 300 images, cosine-decayed from 3e-3). At
20 epochs the clean model reached Dice 0.71 and at 35 0.77 on the synthetic
polyps; StealthMark's 0.2 floor was learned at both (README, "Measurements").
``paper`` follows the paper: 256x256 and the paper's training length; it needs
a GPU. ``smoke`` only checks that the pipeline runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from harness.registry import look_up


@dataclass(frozen=True)
class TrainConfig:
    """How one segmentation model is trained (Adam, BCE on soft targets)."""

    epochs: int
    batch_size: int
    lr: float

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Preset:
    name: str
    image_size: int
    owner_train: int  # images the owner trains on
    owner_verify: int  # half fits the detector, half are the verification queries
    attacker: int  # the thief's own images; disjoint from the owner's
    test: int  # held-out utility evaluation
    train: TrainConfig = field(default_factory=lambda: TrainConfig(40, 16, 2e-3))
    explain_samples: int = 1000  # perturbations per attribution
    eval_batch_size: int = 64
    architecture: str = ""  # which size of each model to build (default: the preset's own name)

    @property
    def model_size(self) -> str:
        return self.architecture or self.name

    @property
    def queries(self) -> int:
        """M: triggered queries (and as many benign ones) sent to a suspect model."""
        return self.owner_verify // 2

    def as_dict(self) -> dict:
        """Every field that decides a trained model (part of cache keys). ``architecture`` only
        when set: presets that build their own size keep the keys they always had."""
        out = asdict(self)
        if not out["architecture"]:
            del out["architecture"]
        return out


PRESETS = {
    "tiny": Preset("tiny", image_size=48, owner_train=300, owner_verify=120, attacker=100, test=100,
                   train=TrainConfig(epochs=35, batch_size=16, lr=3e-3)),
    # Seconds, not minutes: exercises every code path; the numbers mean nothing.
    "smoke": Preset("smoke", image_size=32, owner_train=32, owner_verify=24, attacker=8, test=8,
                    train=TrainConfig(epochs=1, batch_size=16, lr=2e-3), explain_samples=64),
    "paper": Preset("paper", image_size=256, owner_train=2000, owner_verify=400, attacker=600, test=500,
                    train=TrainConfig(epochs=100, batch_size=48, lr=1e-4), explain_samples=2000),
    # The paper's images, models and splits with a short schedule (8 epochs at a higher rate), so one
    # GPU can run embed -> attack -> verify for UNet and the SAM encoder in minutes. Its numbers
    # check the path and the throughput; they are not the paper's.
    "paper-short": Preset("paper-short", image_size=256, owner_train=2000, owner_verify=400, attacker=600, test=500,
                          train=TrainConfig(epochs=8, batch_size=48, lr=1e-3), explain_samples=2000,
                          architecture="paper"),
}


def get_preset(name: str) -> Preset:
    return look_up(name, PRESETS, "preset")


def require_known_preset(name: str, table: dict) -> None:
    look_up(name, table, "preset")
