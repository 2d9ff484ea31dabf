"""Contracts shared by every watermark and baseline: the owner's ``Key``, a ``Verification``,
and ``BackdoorWatermark``, the train-time trigger-and-target scheme both StealthMark and
the backdoor baselines are instances of.

A backdoor watermark is two independent choices: a trigger (from the core's
trigger registry) and a target design for triggered images. Verification is
black box: send M triggered and M benign queries (the same M images, with and
without the trigger), score each answer, and test whether the trigger moves
this model's answers (a paired test per image) more than it moves innocent
models' answers (the null calibration). ``harness.calibration`` states the rule.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from harness import calibration as null_stats  # `calibration` names verify's argument
from harness.data import Split, Splits
from harness.errors import HarnessError
from harness.presets import Preset
from harness.registry import TRIGGERS
from harness.segmenter import predict_proba
from harness.training import fit

KEY_FORMAT = "harness-key/1"


@dataclass
class Key:
    """Everything an owner keeps to verify a suspect model, stored as one NPZ file (no pickle).

    ``meta`` is plain JSON (trigger spec, detector weights, payload, thresholds);
    ``arrays`` hold the owner's verification queries.
    """

    meta: dict
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = json.dumps({"format": KEY_FORMAT, **self.meta}, sort_keys=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
        with os.fdopen(fd, "wb") as handle:
            np.savez_compressed(handle, meta=np.array(meta), **self.arrays)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Key":
        path = Path(path)
        if not path.is_file():
            raise HarnessError(f"key file not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
            meta = json.loads(str(arrays.pop("meta")))
        except (ValueError, OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
            raise HarnessError(f"key file {path} is not a valid harness key ({type(exc).__name__}: {exc})") from None
        if meta.pop("format", None) != KEY_FORMAT:
            raise HarnessError(f"key file {path} is not a {KEY_FORMAT} key")
        return cls(meta, arrays)

    def queries(self) -> Split:
        images = torch.from_numpy(self.arrays["query_images"].astype(np.float32) / 255.0)
        return Split(images, torch.from_numpy(self.arrays["query_masks"].astype(np.float32)))


@dataclass
class Verification:
    """The outcome of querying one suspect model with one key.

    ``verified`` needs both tests of ``harness.calibration.decide``: the paired
    test (``p_value < alpha``) and the calibrated one (beyond every null score and
    beyond the parametric bound). A key without a calibration never verifies: the
    paired test alone compares the suspect only with itself.
    """

    asr: float  # fraction of triggered queries flagged (higher = mark present)
    fpr: float | None  # fraction of benign queries flagged (None: a scheme without benign queries)
    p_value: float  # the scheme's own test (backdoors: paired Wilcoxon, triggered vs benign per image)
    verified: bool  # both tests passed (see above)
    queries: int  # M triggered + M benign
    score: float | None = None  # separation score: mean per-answer score, triggered minus benign
    sampling_error: float | None = None  # standard error of ``score`` from the answers' own spread
    asr_ci_low: float | None = None  # Wilson 95% interval on asr over the M triggered queries
    asr_ci_high: float | None = None
    null_threshold: float | None = None  # separation score a clean model exceeds with probability `level`
    p_value_null_empirical: float | None = None  # (1 + #{null scores >= score}) / (K + 1)
    p_value_null_parametric: float | None = None  # Student-t prediction model of the null scores
    null_count: int | None = None  # K: the null models the verdict was calibrated against
    null_normality_p: float | None = None  # Shapiro-Wilk p of those K null scores
    paired_verified: bool | None = None  # the paired test alone passed
    calibrated_verified: bool | None = None  # the calibrated test alone passed
    tpr_at_1fpr: float | None = None  # share of triggered answers above the cut flagging 1% of null answers
    qr_decoded: bool | None = None  # certificate decoded to the owner's payload (gated: see README)
    payload_read: str | None = None
    certificate: np.ndarray | None = field(default=None, repr=False)  # attribution weights (G, G)

    def as_record(self) -> dict:
        out = asdict(self)
        out.pop("certificate")
        return out

    def extra_metrics(self) -> dict[str, float | None]:
        """Metrics a scheme reports beyond the common ones (declared in its watermark's ``columns``)."""
        return {}


def trigger_from_spec(spec: dict):
    params = {k: v for k, v in spec.items() if k != "name"}
    return TRIGGERS.get(spec["name"])(**params)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


class Watermark:
    """An ownership watermark: ``embed`` at training time, ``verify`` a suspect as a black box."""

    role = "watermark"  # "baseline" for backdoor-watermark baselines
    version = 1  # bump when a change alters what embed/verify compute: stale models and records are not reused
    columns = ()  # harness.metrics.Column of each extra metric its Verification reports (``extra_metrics``)

    def params(self) -> dict:
        """Plain-data parameters; part of every cache hash and key."""
        raise NotImplementedError

    def spec(self) -> dict:
        return {"name": self.registered_name, "version": self.version, **self.params()}

    def embed(self, model: nn.Module, splits: Splits, preset: Preset, seed: int) -> nn.Module:
        """Train (or fine-tune) ``model`` so that it carries the mark; returns it."""
        raise NotImplementedError

    def make_key(self, model: nn.Module, splits: Splits, preset: Preset, seed: int) -> Key:
        """What the owner keeps (queries, trigger, detector, payload, thresholds), from the embedded model."""
        raise NotImplementedError

    def verify(self, model: nn.Module, key: Key, explainer: str | None = None, seed: int = 0,
               certify: bool = True, calibration: dict | None = None) -> Verification:
        """Query ``model`` as a black box with the key's queries. ``certify``: also run the
        certificate step (attribution), where the watermark has one; it costs forward passes.
        ``calibration``: judge against this null calibration (e.g. nulls under the same attack)
        instead of the one stored in the key."""
        raise NotImplementedError

    def null_calibration(self, key: Key, null_models: dict[str, nn.Module], level: float,
                         explainer: str | None = None, seed: int = 0) -> dict:
        """The calibration of ``key`` against ``null_models`` (plain JSON), without storing it."""
        raise NotImplementedError


class BackdoorWatermark(Watermark):
    """Train with a trigger on a fraction of the owner's images and a designed target for them."""

    def __init__(self, trigger: str = "patch", poison_ratio: float = 0.5, alpha: float = 0.01):
        if not 0 < poison_ratio < 1:
            raise HarnessError(f"poison_ratio must be in (0, 1), got {poison_ratio}")
        if not 0 < alpha < 1:
            raise HarnessError(f"alpha must be in (0, 1), got {alpha}")
        self.trigger = TRIGGERS.get(trigger)()
        self.poison_ratio, self.alpha = float(poison_ratio), float(alpha)

    def params(self) -> dict:
        return {"trigger": self.trigger.spec(), "poison_ratio": self.poison_ratio, "alpha": self.alpha}

    # -- what a subclass decides -------------------------------------------
    def triggered_target(self, masks: torch.Tensor) -> torch.Tensor:
        """Training target (N, 1, H, W) in [0, 1] for triggered images with ground truth ``masks``."""
        raise NotImplementedError

    def answer_scores(self, probs: torch.Tensor, masks: torch.Tensor, key: Key) -> torch.Tensor:
        """Float (M,): how strongly each answer shows the watermark's behaviour (continuous)."""
        raise NotImplementedError

    def flag_threshold(self, key: Key) -> float:
        """An answer is flagged when its score is at least this."""
        raise NotImplementedError

    def flag(self, probs: torch.Tensor, masks: torch.Tensor, key: Key) -> torch.Tensor:
        """Bool (M,): does each answer show the watermark's behaviour?"""
        return self.answer_scores(probs, masks, key) >= self.flag_threshold(key)

    def key_meta(self, model: nn.Module, splits: Splits, preset: Preset) -> dict:
        """Extra key content (e.g. a fitted detector); called with the freshly embedded model."""
        return {}

    # -- shared machinery -----------------------------------------------------
    def poisoned_indices(self, count: int, seed: int) -> torch.Tensor:
        """Bool (count,): which training images carry the trigger; fixed by ``seed``."""
        chosen = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
        poisoned = torch.zeros(count, dtype=torch.bool)
        poisoned[chosen[: round(self.poison_ratio * count)]] = True
        return poisoned

    def poisoned_training_set(self, split: Split, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Images, targets and the bool poisoned-index mask (poisoned images replace benign ones)."""
        poisoned = self.poisoned_indices(len(split), seed)
        images, targets = split.images.clone(), split.masks.clone()
        images[poisoned] = self.trigger.apply(split.images[poisoned])
        targets[poisoned] = self.triggered_target(self.trigger.apply_to_mask(split.masks[poisoned]))
        return images, targets, poisoned

    def embed(self, model, splits, preset, seed):
        images, targets, _ = self.poisoned_training_set(splits.owner_train, seed)
        return fit(model, images, targets, preset.train, seed, desc=f"embed {self.registered_name}")

    def make_key(self, model, splits, preset, seed):
        queries = splits.queries
        meta = {"watermark": self.spec(), "preset": preset.name, "image_size": preset.image_size,
                "alpha": self.alpha, "seed": seed, **self.key_meta(model, splits, preset)}
        arrays = {"query_images": to_uint8(queries.images), "query_masks": queries.masks.to(torch.uint8).numpy()}
        return Key(meta, arrays)

    def answers(self, model: nn.Module, key: Key) -> tuple[torch.Tensor, torch.Tensor, Split]:
        """The suspect's probability maps on benign and on triggered queries."""
        queries = key.queries()
        trigger = trigger_from_spec(key.meta["watermark"]["trigger"])
        return predict_proba(model, queries.images), predict_proba(model, trigger.apply(queries.images)), queries

    def scored_answers(self, model: nn.Module, key: Key) -> tuple[np.ndarray, np.ndarray]:
        """Per-answer scores (M,) on triggered and on benign queries: what calibration compares."""
        benign, triggered, queries = self.answers(model, key)
        trigger = trigger_from_spec(key.meta["watermark"]["trigger"])
        on_triggered = self.answer_scores(triggered, trigger.apply_to_mask(queries.masks), key)
        on_benign = self.answer_scores(benign, queries.masks, key)
        return on_triggered.double().numpy(), on_benign.double().numpy()

    def verify(self, model, key, explainer=None, seed=0, certify=True, calibration=None):
        on_triggered, on_benign = self.scored_answers(model, key)
        cut = self.flag_threshold(key)
        hits, false_hits, m = int((on_triggered >= cut).sum()), int((on_benign >= cut).sum()), len(on_triggered)
        score = null_stats.separation_score(on_triggered, on_benign)
        low, high = null_stats.wilson_interval(hits, m)
        result = Verification(asr=hits / m, fpr=false_hits / m,
                              p_value=null_stats.paired_p_value(on_triggered, on_benign), verified=False,
                              queries=2 * m, score=score, asr_ci_low=low, asr_ci_high=high,
                              sampling_error=null_stats.sampling_error(on_triggered, on_benign))
        return judge(result, key.meta["alpha"], calibration or key.meta.get("null_calibration"), on_triggered)

    def null_calibration(self, key, null_models, level=null_stats.DEFAULT_LEVEL, explainer=None, seed=0):
        scores, errors, pooled = [], [], []
        for model in null_models.values():
            on_triggered, on_benign = self.scored_answers(model, key)
            scores.append(null_stats.separation_score(on_triggered, on_benign))
            errors.append(null_stats.sampling_error(on_triggered, on_benign))
            pooled.append(on_triggered)
        return null_stats.calibration_from_null_scores(scores, np.concatenate(pooled), list(null_models),
                                                         level, errors)

    def calibrate(self, key: Key, null_models: dict[str, nn.Module],
                  level: float = null_stats.DEFAULT_LEVEL) -> Key:
        """Score ``key`` on each clean model and store the null calibration in the key (returned)."""
        key.meta["null_calibration"] = self.null_calibration(key, null_models, level)
        return key


def judge(result: Verification, alpha: float, cal: dict | None, triggered_answers=None) -> Verification:
    """Fill in ``result``'s calibrated fields and verdict from ``cal`` (``harness.calibration.decide``);
    without a calibration it stays unverified."""
    if cal is None:
        return result
    decision = null_stats.decide(result.p_value, alpha, result.score, cal)
    result.null_threshold = cal["threshold"]
    result.null_count = len(cal["null_scores"])
    result.null_normality_p = cal.get("normality_p")
    result.p_value_null_empirical = decision["p_value_empirical"]
    result.p_value_null_parametric = decision["p_value_parametric"]
    result.paired_verified, result.calibrated_verified = decision["paired_verified"], decision["calibrated_verified"]
    result.verified = decision["verified"]
    if triggered_answers is not None:
        result.tpr_at_1fpr = null_stats.tpr_at_answer_cut(triggered_answers, cal)
    return result
