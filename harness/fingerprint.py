"""Fingerprints: verification schemes with nothing to embed, the owner's alternative to a watermark.

Without a watermark the owner can still compare a suspect's answers with their own model's answers
on images neither model trained on (DeepJudge, S&P 2022; ModelDiff; IPGuard). A fingerprint is
registered beside the watermarks (``FINGERPRINTS``, role ``fingerprint``) so that every attack, null
population, seed and report view covers it unchanged:

* ``embed`` returns the model it is given, unchanged: the runner gives it the owner's clean model
  (the clean recipe's cache entry, so the "watermarked" model *is* the clean reference and the Dice
  cost is exactly zero);
* the key holds the owner's verification images, their ground-truth masks and the owner's model's
  answers (probability maps), plus whatever the scheme derives from the owner's model (adversarial
  inputs);
* ``verify`` queries the suspect on the key's images and reduces its answers to two numbers per key
  image (``paired_scores``): how close the answer is to the owner's (``s_i``) and the same closeness
  to a reference the owner did not produce (``r_i``: the ground truth, or the suspect's own answer to
  the unperturbed image). The verdict is ``harness.calibration.decide``'s, as for every scheme:

  1. paired test: an exact sign test over the M images that the suspect is closer to the owner's
     answer than to the reference (a model that merely segments well is as close to the truth as to
     the owner; a copy reproduces the owner's errors);
  2. calibrated test: the score (mean of ``per_image``, a scheme's own statistic) against the null
     population of the suspect's architecture, after an attack against nulls under the same attack.

``asr`` is the share of key images on which ``s_i > r_i`` (the paired test's hits); there is no
benign query, so ``fpr`` is None. The ``detector`` verifier names the scheme's own score here: a
fingerprint has no trigger, so the paired-rank verifier does not apply.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from harness import calibration as null_stats
from harness.errors import HarnessError
from harness.segmenter import predict_proba
from harness.trigger import Trigger
from harness.verifiers import DEFAULT_VERIFIER
from harness.watermark import Key, Verification, Watermark, calibration_field, judge, to_uint8


class NoTrigger(Trigger):
    """What a fingerprint's ``trigger`` is: nothing is added to any image (not a registered trigger)."""

    registered_name = "none"

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        return images.clone()

    def footprint(self, height: int, width: int) -> None:
        return None


class Fingerprint(Watermark):
    """Base of every fingerprint: the key, the verdict and the calibration; a subclass scores answers."""

    role = "fingerprint"
    modifies_model = False  # the runner hands ``embed`` the owner's clean model, and keeps what it returns
    verifiers = (DEFAULT_VERIFIER,)

    def __init__(self, trigger: str | None = None, alpha: float = 0.01):
        if trigger not in (None, NoTrigger.registered_name):
            raise HarnessError(f"fingerprint {self.registered_name!r} adds no trigger to any image; "
                               f"--trigger {trigger} does not apply to it")
        if not 0 < alpha < 1:
            raise HarnessError(f"alpha must be in (0, 1), got {alpha}")
        self.trigger = NoTrigger()
        self.alpha = float(alpha)

    def params(self) -> dict:
        return {"alpha": self.alpha, **self.scheme_params()}

    def scheme_params(self) -> dict:
        """A subclass's own plain-data parameters (part of every cache hash and key)."""
        return {}

    # -- what a subclass decides -------------------------------------------------------------------------
    def paired_scores(self, model: nn.Module, key: Key) -> tuple[np.ndarray, np.ndarray]:
        """Per key image (M,) each: closeness of the suspect's answer to the owner's (``s``), and the same
        closeness to the scheme's reference (``r``). Higher is closer."""
        raise NotImplementedError

    def per_image(self, s: np.ndarray, r: np.ndarray) -> np.ndarray:
        """The per-image statistic whose mean is the score the nulls calibrate (default: ``s`` itself)."""
        return s

    def key_arrays(self, model: nn.Module, queries, seed: int) -> dict[str, np.ndarray]:
        """Extra arrays the scheme derives from the owner's model (e.g. adversarial inputs)."""
        return {}

    # -- shared machinery ----------------------------------------------------------------------------------
    def embed(self, model, splits, preset, seed):
        """Nothing to embed: ``model`` (the owner's clean model) is returned as it is."""
        return model

    def make_key(self, model, splits, preset, seed):
        stored = to_uint8(splits.queries.images)
        queries = Key({}, {"query_images": stored, "query_masks": splits.queries.masks.to(torch.uint8).numpy()}).queries()
        arrays = {"query_images": stored, "query_masks": splits.queries.masks.to(torch.uint8).numpy(),
                  # The owner's answers to exactly the images the key stores (after uint8 rounding).
                  "owner_probs": predict_proba(model, queries.images).numpy().astype(np.float32),
                  **self.key_arrays(model, queries, seed)}
        meta = {"watermark": self.spec(), "preset": preset.name, "image_size": preset.image_size,
                "alpha": self.alpha, "seed": seed}
        return Key(meta, arrays)

    @staticmethod
    def owner_probs(key: Key) -> torch.Tensor:
        return torch.from_numpy(key.arrays["owner_probs"])

    def scored(self, model: nn.Module, key: Key) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s, r = self.paired_scores(model, key)
        s, r = np.asarray(s, np.float64), np.asarray(r, np.float64)
        return s, r, np.asarray(self.per_image(s, r), np.float64)

    def verify(self, model, key, explainer=None, seed=0, certify=True, calibration=None, verifier=DEFAULT_VERIFIER):
        self.check_verifier(verifier)
        s, r, values = self.scored(model, key)
        m = len(values)
        hits = int((s > r).sum())
        low, high = null_stats.wilson_interval(hits, m)
        result = Verification(asr=hits / m, fpr=None, p_value=null_stats.paired_p_value(s, r), verified=False,
                              queries=self.queries_per_verification(key), score=float(values.mean()),
                              asr_ci_low=low, asr_ci_high=high, sampling_error=_standard_error(values))
        return judge(result, key.meta["alpha"], calibration or key.meta.get(calibration_field(verifier)), values)

    def queries_per_verification(self, key: Key) -> int:
        return len(key.arrays["query_images"])

    def null_calibration(self, key, null_models, level=null_stats.DEFAULT_LEVEL, explainer=None, seed=0,
                         verifier=DEFAULT_VERIFIER):
        self.check_verifier(verifier)
        scores, errors, pooled = [], [], []
        for model in null_models.values():
            values = self.scored(model, key)[2]
            scores.append(float(values.mean()))
            errors.append(_standard_error(values))
            pooled.append(values)
        return null_stats.calibration_from_null_scores(scores, np.concatenate(pooled), list(null_models), level,
                                                       errors)

    def calibrate(self, key: Key, null_models: dict, level: float = null_stats.DEFAULT_LEVEL) -> Key:
        key.meta[calibration_field(DEFAULT_VERIFIER)] = self.null_calibration(key, null_models, level)
        return key


def _standard_error(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0
