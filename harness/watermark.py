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

import itertools
import json
import os
import tempfile
import weakref
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
from harness.verifiers import DEFAULT_VERIFIER, VERIFIERS, check_verifier, rank_shift

KEY_FORMAT = "harness-key/1"

# The last answers of each model to a key. A cell asks every null the same key's queries up to four
# times (calibration and leave-one-out, for each verifier): one forward pass each is enough. Entries go
# with their model, and are recomputed when the key changes or any of its tensors is modified in place.
_ANSWERS: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()


def _weights_state(model: nn.Module) -> tuple:
    """Changes whenever a parameter or buffer is replaced or modified in place (torch's version counter)."""
    return tuple((id(t), t._version) for t in itertools.chain(model.parameters(), model.buffers()))


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


def calibration_field(verifier: str) -> str:
    """Where a key stores its null calibration for ``verifier`` (the detector's keeps its old name)."""
    return "null_calibration" if verifier == DEFAULT_VERIFIER else f"null_calibration_{verifier.replace('-', '_')}"


def stored_calibration(key: Key, verifier: str = DEFAULT_VERIFIER) -> dict | None:
    return key.meta.get(calibration_field(verifier))


def trigger_from_spec(spec: dict):
    params = {k: v for k, v in spec.items() if k != "name"}
    return TRIGGERS.get(spec["name"])(**params)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


class Watermark:
    """An ownership watermark: ``embed`` at training time, ``verify`` a suspect as a black box."""

    role = "watermark"  # "baseline" for backdoor-watermark baselines, "fingerprint" for harness.fingerprint
    modifies_model = True  # False: ``embed`` returns the model it is given, and the runner gives it the clean one
    verifiers: tuple[str, ...] = (DEFAULT_VERIFIER,)  # harness.verifiers this scheme's answers support
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
               certify: bool = True, calibration: dict | None = None,
               verifier: str = DEFAULT_VERIFIER) -> Verification:
        """Query ``model`` as a black box with the key's queries. ``certify``: also run the
        certificate step (attribution), where the watermark has one; it costs forward passes.
        ``calibration``: judge against this null calibration (e.g. nulls under the same attack)
        instead of the one stored in the key. ``verifier``: one of ``self.verifiers``."""
        raise NotImplementedError

    def null_calibration(self, key: Key, null_models: dict[str, nn.Module], level: float,
                         explainer: str | None = None, seed: int = 0, verifier: str = DEFAULT_VERIFIER) -> dict:
        """The calibration of ``key`` against ``null_models`` (plain JSON), without storing it."""
        raise NotImplementedError

    def check_verifier(self, verifier: str) -> str:
        check_verifier(verifier)
        if verifier not in self.verifiers:
            raise HarnessError(f"watermark {self.registered_name!r} cannot be verified with {verifier!r}; "
                               f"its verifiers: {', '.join(self.verifiers)}")
        return verifier


class BackdoorWatermark(Watermark):
    """Train with a trigger on a fraction of the owner's images and a designed target for them."""

    verifiers = tuple(VERIFIERS)

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
        state = _weights_state(model)
        memo = _ANSWERS.get(model)
        if memo is not None and memo[0]() is key and memo[1] == state:
            return memo[2]
        queries = key.queries()
        trigger = trigger_from_spec(key.meta["watermark"]["trigger"])
        out = predict_proba(model, queries.images), predict_proba(model, trigger.apply(queries.images)), queries
        _ANSWERS[model] = (weakref.ref(key), state, out)
        return out

    def scored_answers(self, model: nn.Module, key: Key,
                       verifier: str = DEFAULT_VERIFIER) -> tuple[np.ndarray, np.ndarray]:
        """Per-image scores (M,) on triggered and on benign queries, whose differences the verdict tests.
        ``detector``: the scheme's per-answer score of each answer. ``paired-rank``: the pair's rank
        shift (``harness.verifiers.rank_shift``) against zero."""
        benign, triggered, queries = self.answers(model, key)
        trigger = trigger_from_spec(key.meta["watermark"]["trigger"])
        moved_masks = trigger.apply_to_mask(queries.masks)
        if verifier == "paired-rank":
            # Pixels compared where they lie after the trigger (a warp moves the lesion; its bilinear
            # resampling of the benign answer is the one step not exactly invariant to a monotone map).
            direction = torch.sign(self.triggered_target(moved_masks) - moved_masks)
            shift = rank_shift(triggered, trigger.apply_to_mask(benign), direction,
                               trigger.footprint(*triggered.shape[-2:]))
            return shift, np.zeros_like(shift)
        on_triggered = self.answer_scores(triggered, moved_masks, key)
        on_benign = self.answer_scores(benign, queries.masks, key)
        return on_triggered.double().numpy(), on_benign.double().numpy()

    def verify(self, model, key, explainer=None, seed=0, certify=True, calibration=None, verifier=DEFAULT_VERIFIER):
        self.check_verifier(verifier)
        on_triggered, on_benign = self.scored_answers(model, key, verifier)
        m = len(on_triggered)
        if verifier == "detector":
            cut = self.flag_threshold(key)
            hits, false_hits = int((on_triggered >= cut).sum()), int((on_benign >= cut).sum())
        else:  # a pair is "flagged" when its triggered answer ranks above its benign one; no benign-only flag
            hits, false_hits = int((on_triggered > on_benign).sum()), None
        low, high = null_stats.wilson_interval(hits, m)
        result = Verification(asr=hits / m, fpr=None if false_hits is None else false_hits / m,
                              p_value=null_stats.paired_p_value(on_triggered, on_benign), verified=False,
                              queries=2 * m, score=null_stats.separation_score(on_triggered, on_benign),
                              asr_ci_low=low, asr_ci_high=high,
                              sampling_error=null_stats.sampling_error(on_triggered, on_benign))
        return judge(result, key.meta["alpha"], calibration or stored_calibration(key, verifier),
                     on_triggered if verifier == "detector" else None)

    def null_calibration(self, key, null_models, level=null_stats.DEFAULT_LEVEL, explainer=None, seed=0,
                         verifier=DEFAULT_VERIFIER):
        scores, errors, pooled = [], [], []
        for model in null_models.values():
            on_triggered, on_benign = self.scored_answers(model, key, verifier)
            scores.append(null_stats.separation_score(on_triggered, on_benign))
            errors.append(null_stats.sampling_error(on_triggered, on_benign))
            pooled.append(on_triggered)
        return null_stats.calibration_from_null_scores(scores, np.concatenate(pooled), list(null_models),
                                                         level, errors)

    def calibrate(self, key: Key, null_models: dict[str, nn.Module],
                  level: float = null_stats.DEFAULT_LEVEL) -> Key:
        """Score ``key`` on each clean model and store one null calibration per verifier in the key (returned)."""
        for verifier in self.verifiers:
            key.meta[calibration_field(verifier)] = self.null_calibration(key, null_models, level, verifier=verifier)
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
