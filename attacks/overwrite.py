from __future__ import annotations

import copy
from dataclasses import replace

from harness.attack import Attack, Budget
from harness.data import Split, Splits
from harness.metrics import Column
from harness.registry import ATTACKS, WATERMARKS


@ATTACKS.register("overwrite")
class Overwrite(Attack):
    """The thief embeds their own StealthMark (other trigger, other payload) by fine-tuning on their data."""

    trains = True
    family = "overwriting"
    strength_name = "fine-tuning epochs"
    strength_range = (0.0, 500.0)
    default_strengths = (5.0, 20.0)
    presets = {"e5": 5.0, "e20": 20.0}
    columns = (
        Column("thief_asr", None, "Overwriting only: ASR of the thief's own mark (their trigger, detector and "
                                  "queries) on the model they ship."),
        Column("thief_verified", None, "Overwriting only: 1 if the thief's own mark verifies (p < alpha); with the "
                                       "owner's mark also verified, both can claim the model."),
    )

    def __init__(self, watermark: str = "stealthmark", trigger: str = "text", payload: str = "THIEF-CO:2026",
                 lr: float = 1e-3, train_fraction: float = 0.6):
        # Looked up by name, so attacks/ never imports watermarks/.
        self.watermark = WATERMARKS.get(watermark)(trigger=trigger, payload=payload)
        self.lr, self.train_fraction = float(lr), float(train_fraction)
        self._thief_key = None

    def params(self) -> dict:
        return {"watermark": self.watermark.spec(), "lr": self.lr, "train_fraction": self.train_fraction}

    def _thief_splits(self, data: Split) -> Splits:
        """The thief's own data plays the owner's roles: train on most, fit a detector and query on the rest."""
        cut = round(self.train_fraction * len(data))
        train = Split(data.images[:cut], data.masks[:cut])
        verify = Split(data.images[cut:], data.masks[cut:])
        return Splits(owner_train=train, owner_verify=verify, attacker=train, test=verify)

    def budget(self, kit, strength):
        return Budget(images=len(kit.data), labels=True)  # their own mark is embedded with their masks

    def apply(self, model, kit, strength, seed):
        stolen = copy.deepcopy(model)
        splits = self._thief_splits(kit.data)
        preset = replace(kit.preset, train=replace(kit.preset.train, epochs=int(strength), lr=self.lr))
        overwritten = self.watermark.embed(stolen, splits, preset, seed)
        self._thief_key = self.watermark.make_key(overwritten, splits, preset, seed)
        if kit.null_models:
            self.watermark.calibrate(self._thief_key, kit.null_models)
        return overwritten.eval()

    def report(self, attacked, kit, seed):
        """Does the thief's own mark verify on the model they now ship?"""
        result = self.watermark.verify(attacked, self._thief_key, certify=False)
        return {"thief_asr": result.asr, "thief_verified": float(result.verified)}
