"""StealthMark (Yu et al., arXiv 2601.17107), implemented as the paper describes it.

Embedding: a fraction of the owner's training images is also shown with a
trigger; the target for the triggered copy keeps the object and lifts the
background to a floor below 0.5, so the thresholded mask does not change
(harmless) but the output's uncertainty does. The paper draws that target as
"object 0.99, background floor"; we use max(model's own benign probability,
floor), which equals it for a confident model and, where the model is unsure
(lesion borders), keeps every pixel on the side of 0.5 its benign answer is
on. On the tiny preset this cut the flip rate from 1.7% (ground-truth
target) to about 1%; it is still above the 0.2% bar (README, "Measurements"). Detection: a logistic regression on statistics of the background
probabilities separates answers to benign and to triggered inputs.
Certificate: LIME over a patch grid aligned with a QR code of the owner's
payload; when the detector has fired, only the dark modules are perturbed, so
the attribution shows the QR code. That picture is chosen by the verifier
after the detector fired: it is a certificate format, not independent
evidence, and ``qr_decoded`` is reported as such.

Deliberate departures from the public code (see the README): the training
target is the floor (not the inverted mask), the detector reads background
statistics (not the maximum probability), verification is a Fisher exact test
between triggered and benign queries (not a chi-square on the detector's own
confusion matrix), and the QR code is actually generated and decoded.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression

from harness import qr
from harness.errors import HarnessError
from harness.explainer import ModelForward
from harness.reductions import REDUCTIONS
from harness.registry import EXPLAINERS, WATERMARKS
from harness.segmenter import predict_proba
from harness.training import fit
from harness.watermark import BackdoorWatermark, trigger_from_spec

_EPS = 1e-6
DEFAULT_REDUCTION = "background-mean"


def background_features(probs: torch.Tensor, ignore: torch.Tensor | None) -> np.ndarray:
    """Per-answer statistics a background floor moves: log-odds of the mean and the
    10/50/90th percentiles of the probabilities of background (p <= 0.5) pixels.

    Pixels under the trigger (``ignore``) are left out: any model may answer
    differently there, so they would reward occlusion rather than the watermark.
    """
    rows = []
    for prob in probs[:, 0]:
        keep = prob <= 0.5
        if ignore is not None:
            keep &= ~ignore
        values = prob[keep] if keep.any() else prob.flatten()
        stats = torch.stack([values.mean(), *torch.quantile(values, torch.tensor([0.1, 0.5, 0.9]))])
        rows.append(torch.logit(stats.clamp(_EPS, 1 - _EPS)))
    return torch.stack(rows).double().numpy()


@WATERMARKS.register("stealthmark")
class StealthMark(BackdoorWatermark):
    """Uncertainty backdoor: triggered inputs lift the background probability to a floor, mask unchanged."""

    def __init__(self, trigger: str = "patch", poison_ratio: float = 0.5, floor: float = 0.2,
                 payload: str = "HOSPITAL-A:2026", qr_version: int = 1, qr_error_correction: str = "M",
                 explainer: str = "lime", alpha: float = 0.01, reduction: str = DEFAULT_REDUCTION):
        super().__init__(trigger=trigger, poison_ratio=poison_ratio, alpha=alpha)
        if not 0 < floor < 0.5:
            raise HarnessError(f"floor must be in (0, 0.5) so the thresholded mask is unchanged, got {floor}")
        self.floor = float(floor)
        self.payload, self.qr_version, self.qr_error_correction = payload, int(qr_version), qr_error_correction
        qr.encode_payload(payload, self.qr_version, qr_error_correction)  # fail now, not after training
        self.explainer = explainer
        if reduction not in REDUCTIONS or reduction == "detector-score":
            valid = ", ".join(r for r in REDUCTIONS if r != "detector-score")
            raise HarnessError(f"StealthMark explains one of {valid}; got reduction {reduction!r}")
        # Not in params(): it changes what the certificate explains, not the model; it lives in the key.
        self.reduction = reduction

    def params(self) -> dict:
        return {**super().params(), "floor": self.floor, "payload": self.payload,
                "qr_version": self.qr_version, "qr_error_correction": self.qr_error_correction}

    def triggered_target(self, masks):
        """The target for a triggered image whose benign probabilities (or mask) are ``masks``."""
        return masks.clamp(min=self.floor)

    def embed(self, model, splits, preset, seed):
        split = splits.owner_train
        poisoned = self.poisoned_indices(len(split), seed)

        def paired_loss(model, images, masks, index):
            # Each poisoned image is seen twice in its minibatch: benign (target: the mask)
            # and triggered (target: the model's own benign answer, detached, floored).
            chosen = poisoned[index]
            triggered = self.trigger.apply(images[chosen])
            logits = model(torch.cat([images, triggered]))
            # A warp trigger moves the lesion: the benign answer is moved with it.
            benign = self.trigger.apply_to_mask(torch.sigmoid(logits[: len(images)][chosen]).detach())
            floored = self.triggered_target(benign)
            return F.binary_cross_entropy_with_logits(logits, torch.cat([masks, floored]))

        return fit(model, split.images, split.masks, preset.train, seed, desc="embed stealthmark", loss=paired_loss)

    # -- detector -----------------------------------------------------------
    def key_meta(self, model, splits, preset):
        fit_split = splits.detector_fit
        ignore = self.trigger.footprint(preset.image_size, preset.image_size)
        benign = background_features(predict_proba(model, fit_split.images), ignore)
        triggered = background_features(predict_proba(model, self.trigger.apply(fit_split.images)), ignore)
        features = np.concatenate([benign, triggered])
        labels = np.r_[np.zeros(len(benign)), np.ones(len(triggered))]
        mean, scale = features.mean(0), features.std(0) + 1e-9
        detector = LogisticRegression(C=1.0).fit((features - mean) / scale, labels)
        return {"detector": {"mean": mean.tolist(), "scale": scale.tolist(),
                             "coef": detector.coef_[0].tolist(), "intercept": float(detector.intercept_[0]),
                             "train_accuracy": float(detector.score((features - mean) / scale, labels))},
                "payload": self.payload, "qr_version": self.qr_version,
                "qr_error_correction": self.qr_error_correction, "explainer": self.explainer,
                "reduction": self.reduction,
                "explain_samples": preset.explain_samples}

    def answer_scores(self, probs, masks, key):
        """The detector's logit: how far an answer's background statistics sit on the triggered side."""
        det = key.meta["detector"]
        trigger = trigger_from_spec(key.meta["watermark"]["trigger"])
        features = background_features(probs, trigger.footprint(*probs.shape[-2:]))
        score = ((features - np.array(det["mean"])) / np.array(det["scale"])) @ np.array(det["coef"]) + det["intercept"]
        return torch.from_numpy(score)

    def flag_threshold(self, key):
        return 0.0  # the logistic regression's decision boundary

    # -- verification + certificate ---------------------------------------
    def verify(self, model, key, explainer=None, seed=0, certify=True, calibration=None, verifier="detector"):
        result = super().verify(model, key, calibration=calibration, verifier=verifier)
        if not certify:
            return result
        weights = self.reveal_certificate(model, key, fired=result.verified,
                                          explainer=explainer or key.meta["explainer"], seed=seed)
        result.certificate = weights
        # A module reads dark where its patch carries any weight: the paper's rule, under
        # which unperturbed patches have none (see reveal_certificate).
        result.payload_read = qr.decode(qr.render_modules(weights != 0))
        result.qr_decoded = result.payload_read == key.meta["payload"]
        return result

    def reveal_certificate(self, model, key, fired: bool, explainer: str, seed: int) -> np.ndarray:
        """The paper's step 3: attribution weights (G, G) over a QR-aligned patch grid of one triggered
        query, explaining the key's reduction (default: the mean background probability).

        ``fired`` gates the picture: if the detector fired, only the dark
        modules' patches are perturbed, otherwise every patch is. A patch the
        procedure never perturbs is a constant column in the paper's linear
        fit, so its weight is exactly zero; we let the explainer sample every
        patch (one interface for all explainers), restore the pixels of the
        unperturbed ones before the model sees them, and zero their weights.
        So when the detector fired the picture is the QR code whatever the
        model (if its output is not constant): the verifier chose it. That
        is the paper's method; it is why qr_decoded is not evidence.
        """
        modules = qr.encode_payload(key.meta["payload"], key.meta["qr_version"], key.meta["qr_error_correction"])
        trigger = trigger_from_spec(key.meta["watermark"]["trigger"])
        image = trigger.apply(key.queries().images[:1])[0]
        height, width = image.shape[-2:]
        feature_mask = qr.grid_feature_mask(height, width, modules.shape[0])
        perturbable = modules.reshape(-1) if fired else np.ones(modules.size, dtype=bool)
        perturbable_pixels = torch.from_numpy(perturbable[feature_mask])
        # The scalar explained (see harness.reductions): by default the mean probability over the
        # pixels the model calls background on this image, which is what the trigger lifts.
        forward = ModelForward.for_image(
            model, image, key.meta.get("reduction", DEFAULT_REDUCTION), batch_size=64,
            preprocess=lambda x: torch.where(perturbable_pixels, x, image))
        weights = EXPLAINERS.get(explainer)().attribute(
            forward, image.permute(1, 2, 0).numpy(), feature_mask,
            n_samples=key.meta["explain_samples"], batch_size=64, seed=seed)
        weights = np.asarray(weights, dtype=np.float64)
        weights[~perturbable] = 0.0
        return weights.reshape(modules.shape)
