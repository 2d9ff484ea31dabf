"""StealthMark-QR: the QR code is a property of the model (EaaW-style explanation watermark).

In StealthMark (``watermarks/stealthmark.py``) the verifier chooses the QR
picture once its detector has fired; the model carries one bit per query.
Here, following "Explanation as a Watermark" (EaaW, Shao et al., NDSS 2025),
the model itself is fine-tuned so that the linear surrogate of ONE trigger
image has weights whose signs spell the owner's QR code, while its
segmentation does not change.

* Payload (``code``). ``linear`` (default): 4 characters as a codeword of
  ``harness.payload_code``, one parity of the 24-bit message per patch,
  decoded by maximum likelihood over every message, so it survives one
  patch in seven read wrong; the certificate is the decoded payload
  rendered as a QR code (version 1-H) and read back by a QR decoder.
  ``qr``: the modules of the payload's QR symbol themselves (``qr_type``
  "M1".."M4" Micro QR, "1".."40" regular; EaaW's picture), which decodes
  only when about 96% of the modules read right. Bit of patch p: b_p = +1
  ("dark": blacking it out must move the explained scalar more), -1 light.
* Features: the trigger image (one of the owner's verification images with
  the watermark's trigger applied, stored in the key) split into a G x G
  grid (``qr.grid_feature_mask``; at 48 px and 13 x 13, 3-4 px patches).
  An "off" patch is black, as every explainer in ``harness.explainer``
  perturbs.
* Scalar explained: a named reduction (default ``background-mean``) of the
  segmentation answer, over the region the model calls background on the
  unperturbed trigger image (``ModelForward.for_image``).
* Embedding: a fine-tune of the owner's clean model (trained here with the
  owner's recipe unless passed as ``clean=``) with batch norm frozen, on:
  the EaaW hinge mean_p max(0, margin - b_p (E_p - c) / tau), c the light
  share's quantile of E; a hinge keeping the trigger image's mask; and BCE
  on the owner's images to the clean model's own probabilities
  (``seg_target="clean"``, weight ``seg_weight``: distillation keeps what
  the model answered, so its Dice moves little) or to the ground truth.
  E, each patch's effect (``signal``): ``occlusion`` (default) toggles each
  patch alone at one random base keep-mask per step (full, half or nearly
  empty: what occlusion, LIME and Kernel SHAP perturb around), P + 1
  forwards, exact at that base; ``ridge`` is EaaW's closed-form ridge fit
  of ``masks_per_step`` random keep-masks, a noisy estimate that needed
  512 masks and 3.5 CPU hours to learn the mark.
* Verification: any registered explainer on the suspect with the key's
  trigger image and grid, ``reads`` times (explainer seeds seed, seed + 1,
  ...); each read's weights become ranks in [-1, 1] (blacking out any patch
  shifts every model's weights by a common offset, which ranks ignore) and
  are summed; the code decodes the sum. Bits: the code's number of dark
  patches goes to the largest summed ranks.

With ``code="qr"``, modules that every QR code of the chosen type shares (finder, separator,
timing patterns: found by encoding random payloads) say nothing about the
payload; an other owner's mark embedded in the same trigger image would
match them. The statistical test therefore counts only the payload-dependent
modules; the bit accuracy over all modules is reported too.

Verification fields (what the runner reads):

* ``asr``: bit accuracy over ALL modules (read module == code module).
* ``fpr``: None (no benign queries in this scheme).
* ``p_value``: one-sided binomial test (scipy.stats.binomtest, p = 0.5) of
  the bit accuracy on the payload-dependent modules.
* ``score``: bit accuracy on the payload-dependent modules.
* ``null_threshold``, ``p_value_null_empirical``, ``p_value_null_parametric``:
  the key's null calibration of ``score`` for the explainer used
  (``harness.calibration``; the spread is the nulls' own, no binomial floor:
  neighbouring patches of one model are not independent bits).
* ``verified``: ``harness.calibration.decide``: p_value < alpha AND the score
  beyond every null and beyond the parametric bound, with the calibration of
  that explainer; a key without one never verifies.
* ``qr_decoded`` / ``payload_read``: the reading decodes to the owner's
  payload (linear code: the decoded payload's QR picture read back too).
  Model-dependent evidence (the verifier perturbs every patch, whatever the
  model), but ``verified`` does not require it. ``code_z`` / ``code_bound``
  / ``best_payload``: the linear code's best message, its z-score and the
  parametric bound it must clear (``harness.payload_code``).
* ``queries``: images the explainer sent to the model.
* ``tpr_at_1fpr``, ``asr_ci_*``: None / Wilson interval of ``asr``.
* ``certify=False`` changes nothing: the explanation IS the verification.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import binomtest

from harness import calibration as null_stats, payload_code, qr  # `calibration` names verify's argument
from harness.errors import HarnessError
from harness.io import spec_hash, weights_hash
from harness.explainer import ModelForward
from harness.metrics import Column
from harness.reductions import REDUCTIONS, get_reduction, region_for
from harness.registry import EXPLAINERS, TRIGGERS, WATERMARKS
from harness.segmenter import predict_proba
from harness.training import fit
from harness.watermark import Key, Verification, Watermark, judge, to_uint8, trigger_from_spec

DEFAULT_REDUCTION = "background-mean"


# -- the closed-form surrogate -----------------------------------------------------------------------
def ridge_weights(z: torch.Tensor, y: torch.Tensor, lam: float) -> torch.Tensor:
    """(P,) weights of the ridge fit of ``y`` (K,) on keep-masks ``z`` (K, P) with an intercept
    (both centred), differentiable with respect to ``y``."""
    zc = z - z.mean(0, keepdim=True)
    yc = y - y.mean()
    gram = zc.T @ zc + lam * torch.eye(z.shape[1], dtype=z.dtype, device=z.device)
    return torch.linalg.solve(gram, zc.T @ yc)


def centred(weights, light_fraction: float = 0.5):
    """Weights minus their ``light_fraction`` quantile: the read-out's zero (see ``read_bits``)."""
    return weights - torch.quantile(weights, light_fraction)


def read_bits(weights: np.ndarray, dark_count: int | None = None) -> np.ndarray:
    """Dark for the ``dark_count`` largest weights (default: half). Blacking out any patch moves every
    model's output the same way on average (a global offset of all weights, of either sign); a rank
    read removes it, so the read is about which patches matter MORE, and a clean model's read has the
    code's share of dark modules whatever its offset. The key stores the count (it is the code's)."""
    weights = np.asarray(weights, dtype=np.float64).ravel()
    dark_count = len(weights) // 2 if dark_count is None else int(dark_count)
    read = np.zeros(len(weights), dtype=bool)
    read[np.argsort(-weights, kind="stable")[:dark_count]] = True
    return read


def sign_hinge(weights: torch.Tensor, bits: torch.Tensor, margin: float, tau: float) -> torch.Tensor:
    """EaaW's loss on centred weights: mean over modules of max(0, margin - b_p (W_p - c) / tau), c the
    light-share quantile of W (see ``read_bits``);
    0 once every module is on its side of c with a margin."""
    return F.relu(margin - bits * centred(weights, float((bits < 0).float().mean())) / tau).mean()


def sample_masks(k: int, p: int, generator: torch.Generator, mix=(0.5, 0.25, 0.25)) -> torch.Tensor:
    """Float (k, p) 0/1 keep-masks. Row densities: ``mix[0]`` of rows at 0.5 (LIME), ``mix[1]``
    near-full (keep density U(0.85, 1): a few patches off, as occlusion / Kernel SHAP), ``mix[2]``
    near-empty (U(0, 0.15): a few patches on, as Kernel SHAP)."""
    kind = torch.multinomial(torch.tensor(mix, dtype=torch.float64), k, replacement=True, generator=generator)
    u = torch.rand(k, generator=generator)
    density = torch.where(kind == 0, torch.full_like(u, 0.5), torch.where(kind == 1, 0.85 + 0.15 * u, 0.15 * u))
    return (torch.rand(k, p, generator=generator) < density[:, None]).float()


CODES = ("linear", "qr")
"""What the patches spell. ``linear``: the payload's codeword of ``harness.payload_code`` (4 characters,
decoded by maximum likelihood; the certificate is the decoded payload as a QR code). ``qr``: the modules
of the payload's QR symbol themselves (EaaW's picture; decodes only when nearly every module is read right)."""
SIGNALS = ("occlusion", "ridge")
"""How embedding measures each patch's effect. ``occlusion``: at one random base keep-mask per step, the
change of the explained scalar when each patch alone is toggled (P + 1 forwards, exact at that base).
``ridge``: the closed-form ridge surrogate of ``masks_per_step`` random keep-masks (EaaW; noisy per step)."""
SEG_TARGETS = ("clean", "truth")
"""What keeps segmentation while the mark is embedded: the clean model's own probabilities on the owner's
images (``clean``: distillation, keeps what the model answered) or the ground-truth masks (``truth``)."""


def warmup_cosine(step: int, steps: int, warmup: int) -> float:
    """The learning-rate factor at ``step``: a linear ramp over ``warmup`` steps times a cosine decay to 0.

    >>> [round(warmup_cosine(t, 10, 4), 3) for t in (0, 3, 4, 9)]
    [0.2, 0.635, 0.655, 0.024]
    """
    return min(1.0, (step + 1) / (warmup + 1)) * 0.5 * (1 + math.cos(math.pi * step / steps))


def target_modules(payload: str, code: str, qr_type: str, error: str, grid: int) -> np.ndarray:
    """(G, G) bool: the patches whose effect must rank high ("dark") for ``payload`` under ``code``."""
    if code == "qr":
        return qr.encode_symbol(payload, qr_type, error)
    return (payload_code.codeword(payload, grid * grid) > 0).reshape(grid, grid)


def occlusion_effects(model, image, feature_mask, reduce, region, base: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(effects (P,), logits of the P + 1 perturbed images): effect_p = y(patch p kept) - y(patch p off),
    every other patch as in the keep-mask ``base``; differentiable through the model."""
    n = len(base)
    toggled = base[None].repeat(n, 1)
    index = torch.arange(n, device=base.device)
    toggled[index, index] = 1 - toggled[index, index]
    masks = torch.cat([base[None], toggled])
    logits = model(image[None] * masks[:, feature_mask][:, None])
    y = reduce(torch.sigmoid(logits), region)
    return (y[0] - y[1:]) * (2 * base - 1), logits


@dataclass
class QRVerification(Verification):
    """A Verification with the QR-specific numbers (they go into the record as extra fields)."""

    bit_accuracy: float | None = None  # all modules (== asr)
    bit_accuracy_payload: float | None = None  # payload-dependent modules (== score)
    p_value_all: float | None = None  # binomial test over all modules
    modules: int | None = None
    payload_modules: int | None = None
    explainer: str | None = None
    code_z: float | None = None  # linear code: z-score of the best message (decodes when >= code_bound)
    code_bound: float | None = None
    best_payload: str | None = None  # the best message, decoded or not

    def extra_metrics(self) -> dict:
        return {"bit_accuracy": self.bit_accuracy, "bit_accuracy_payload": self.bit_accuracy_payload,
                "p_value_bits": self.p_value_all}


def _bit_columns(suffix: str, what: str) -> list[Column]:
    return [Column(f"bit_accuracy_{suffix}", True, f"StealthMark-QR only: share of all QR modules whose sign the "
                                                   f"explainer read correctly from {what}."),
            Column(f"bit_accuracy_payload_{suffix}", True, f"StealthMark-QR only: the same over the modules that "
                                                           f"depend on the payload, on {what}."),
            Column(f"p_value_bits_{suffix}", False, f"StealthMark-QR only: binomial test of bit_accuracy_{suffix} "
                                                    "against chance (assumes independent modules; 3 of 50 null "
                                                    "readings left the 99% band, so it overstates the evidence).")]


@WATERMARKS.register("stealthmark-qr")
class StealthMarkQR(Watermark):
    """Explanation watermark: the trigger image's linear surrogate spells the owner's QR code in its signs."""

    role = "watermark"
    calibrates_per_explainer = True  # its verdict is an explanation: one null bound per explainer
    columns = (*_bit_columns("before", "the watermarked model before the attack"),
               *_bit_columns("after", "the attacked model"))

    # Defaults: the setting committed in results/stealthmark_qr (docs/stealthmark.md). Occlusion signal, 1200
    # steps at lr 1e-3 (100 warm-up steps, then cosine), hinge weight 3 at tau 2.5e-4, distillation from the
    # clean model at weight 60, bases 60% half / 20% full / 20% nearly empty (at 25/50/25 full-first, LIME read
    # 0.66 where occlusion read 0.92). At 900 steps, no warm-up and weight 30, seeds 0, 1, 2 decoded with 5, 1
    # and 3 of 5 explainers at Dice cost 0.003, 0.018, 0.043; this setting: 5, 3, 5 at 0.005, -0.000, 0.024.
    def __init__(self, trigger: str = "patch", payload: str = "OWNA", code: str = "linear", qr_type: str = "M2",
                 error: str = "L", grid: int = 13, reduction: str = DEFAULT_REDUCTION, trigger_index: int = 0,
                 signal: str = "occlusion", steps: int = 1200, masks_per_step: int = 64, ridge_lambda: float = 1.0,
                 margin: float = 1.0, tau: float = 2.5e-4, hinge_weight: float = 3.0, keep_weight: float = 1.0,
                 keep_margin: float = 1.5, lr: float = 1e-3, batch_size: int = 32, seg_target: str = "clean",
                 seg_weight: float = 60.0, mask_mix=(0.6, 0.2, 0.2), reads: int = 1, explainer: str = "lime",
                 alpha: float = 0.01, warmup: int = 100):
        self.trigger = TRIGGERS.get(trigger)()
        if reduction not in REDUCTIONS or reduction == "detector-score":
            raise HarnessError(f"stealthmark-qr explains a named reduction other than detector-score, got {reduction!r}")
        if not 0 < alpha < 1:
            raise HarnessError(f"alpha must be in (0, 1), got {alpha}")
        for name, value, valid in (("code", code, CODES), ("signal", signal, SIGNALS), ("seg_target", seg_target, SEG_TARGETS)):
            if value not in valid:
                raise HarnessError(f"stealthmark-qr {name} must be one of {', '.join(valid)}, got {value!r}")
        if len(tuple(mask_mix)) != 3 or min(mask_mix) < 0 or sum(mask_mix) <= 0:
            raise HarnessError(f"mask_mix must be 3 non-negative shares (half, full, nearly empty), got {mask_mix!r}")
        if int(warmup) < 0:
            raise HarnessError(f"warmup must be a number of steps >= 0, got {warmup}")
        if int(reads) < 1:
            raise HarnessError(f"reads must be at least 1, got {reads}")
        self.payload, self.code, self.qr_type, self.error = payload, code, str(qr_type).upper(), error
        self.modules = target_modules(payload, code, self.qr_type, error, int(grid))  # fail now, not after training
        self.reduction, self.trigger_index = reduction, int(trigger_index)
        self.signal, self.steps, self.masks_per_step, self.ridge_lambda = signal, int(steps), int(masks_per_step), float(ridge_lambda)
        self.margin, self.tau, self.hinge_weight, self.keep_weight = float(margin), float(tau), float(hinge_weight), float(keep_weight)
        self.keep_margin = float(keep_margin)
        self.lr, self.batch_size, self.mask_mix = float(lr), int(batch_size), tuple(float(m) for m in mask_mix)
        self.seg_target, self.seg_weight, self.reads = seg_target, float(seg_weight), int(reads)
        self.explainer, self.alpha, self.warmup = explainer, float(alpha), int(warmup)
        self.embed_seconds: float | None = None
        self._reads: dict = {}  # read()'s memo

    def params(self) -> dict:
        return {"trigger": self.trigger.spec(), "payload": self.payload, "code": self.code, "qr_type": self.qr_type,
                "error": self.error, "grid": int(self.modules.shape[0]), "reduction": self.reduction,
                "trigger_index": self.trigger_index, "signal": self.signal, "steps": self.steps,
                "masks_per_step": self.masks_per_step, "ridge_lambda": self.ridge_lambda, "margin": self.margin,
                "tau": self.tau, "hinge_weight": self.hinge_weight, "keep_weight": self.keep_weight, "keep_margin": self.keep_margin, "lr": self.lr,
                "batch_size": self.batch_size, "seg_target": self.seg_target, "seg_weight": self.seg_weight,
                "mask_mix": list(self.mask_mix), "reads": self.reads, "alpha": self.alpha, "warmup": self.warmup}

    # -- the owner's trigger image -----------------------------------------------------------------
    def trigger_image(self, splits) -> torch.Tensor:
        """(3, H, W): the owner's chosen image, one verification query with the trigger, as uint8 would store it."""
        image = self.trigger.apply(splits.queries.images[self.trigger_index : self.trigger_index + 1])
        return torch.from_numpy(to_uint8(image)[0].astype(np.float32) / 255.0)

    # -- embedding -----------------------------------------------------------------------------------
    def embed(self, model, splits, preset, seed, clean=None, log=None):
        """Fine-tune ``model`` (or a copy of ``clean``'s weights) to carry the mark; returns it (eval mode).

        The runner passes a freshly initialised model; without ``clean``, the owner's clean recipe
        (``fit`` on owner_train, ``preset.train``, ``seed``: what ``nulls.train_clean`` runs) trains it first.
        """
        tic = time.perf_counter()
        if clean is not None:
            model.load_state_dict(clean.state_dict())
        else:
            fit(model, splits.owner_train.images, splits.owner_train.masks, preset.train, seed, desc="owner's clean recipe")
        model.eval()  # batch norm frozen at the clean statistics: perturbed (black) images must not move them
        device = next(model.parameters()).device
        image = self.trigger_image(splits).to(device)
        height, width = image.shape[-2:]
        feature_mask = torch.from_numpy(qr.grid_feature_mask(height, width, self.modules.shape[0])).to(device)
        bits = torch.from_numpy(np.where(self.modules.reshape(-1), 1.0, -1.0)).float().to(device)
        with torch.no_grad():
            clean_probs = torch.sigmoid(model(image[None]))
        # +1 where the clean model says object, -1 background: the mask is kept while every logit stays on
        # its side with a margin (a hinge, not BCE to the hard mask, which would pin the background at 0,
        # where the sigmoid is flat and no patch can move it).
        keep_sign = torch.where(clean_probs > 0.5, 1.0, -1.0)
        region = region_for(self.reduction, clean_probs)
        reduce = get_reduction(self.reduction)
        gen = torch.Generator().manual_seed(seed + 7919)
        train_images, train_masks = splits.owner_train.images.to(device), splits.owner_train.masks.to(device)
        if self.seg_target == "clean":  # what the clean model answered, not the truth: keep its behaviour
            train_masks = predict_proba(model, train_images, 64).to(device)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=self.lr)
        # Linear warm-up, then cosine: Adam's first steps move every weight by about lr whatever its
        # gradient, and 3 full steps at lr 1e-3 cost the clean model 0.2 Dice before distillation pulls back.
        steps = max(1, self.steps)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: warmup_cosine(t, steps, self.warmup))
        k = self.masks_per_step
        light = float((bits < 0).float().mean())
        self.history = []
        for step in range(self.steps):
            index = torch.randint(len(train_images), (self.batch_size,), generator=gen).to(device)
            if self.signal == "occlusion":
                # base density, as ``sample_masks`` orders them: half (LIME's view), full (occlusion's and
                # Kernel SHAP's), nearly empty (Kernel SHAP's)
                density = (0.5, 1.0, 0.1)[int(torch.multinomial(torch.tensor(self.mask_mix), 1, generator=gen))]
                base = (torch.rand(len(bits), generator=gen) < density).float().to(device)
                weights, _ = occlusion_effects(model, image, feature_mask, reduce, region, base)
                logits = model(torch.cat([image[None], train_images[index]]))
            else:
                z = sample_masks(k, len(bits), gen, self.mask_mix).to(device)
                perturbed = image[None] * z[:, feature_mask][:, None]
                all_logits = model(torch.cat([perturbed, image[None], train_images[index]]))
                y = reduce(torch.sigmoid(all_logits[:k]), region)
                weights = ridge_weights(z.double(), y.double(), self.ridge_lambda).float()
                logits = all_logits[k:]
            hinge = sign_hinge(weights, bits, self.margin, self.tau)
            keep = F.relu(self.keep_margin - keep_sign * logits[:1]).mean()
            seg = F.binary_cross_entropy_with_logits(logits[1:], train_masks[index])
            loss = self.seg_weight * seg + self.keep_weight * keep + self.hinge_weight * hinge
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            w = centred(weights.detach(), light)
            agree = float(((w > 0).float() * 2 - 1 == bits).float().mean())
            corr = float(torch.corrcoef(torch.stack([w, bits]))[0, 1])
            self.history.append((seg.item(), keep.item(), hinge.item(), agree, corr))
            if log is not None and (step % 25 == 0 or step == self.steps - 1):
                log(f"step {step}: seg {seg.item():.4f} keep {keep.item():.4f} hinge {hinge.item():.4f} "
                    f"agreement ({self.signal}) {agree:.3f} corr {corr:.3f}")
        self.embed_seconds = time.perf_counter() - tic
        return model.eval()

    # -- key ---------------------------------------------------------------------------------------------
    def make_key(self, model, splits, preset, seed):
        image = self.trigger_image(splits)
        # A linear codeword has no function patterns: every patch depends on the payload.
        shared = (qr.shared_modules(self.payload, self.qr_type, self.error) if self.code == "qr"
                  else np.zeros_like(self.modules))
        meta = {"watermark": self.spec(), "preset": preset.name, "image_size": preset.image_size, "seed": seed,
                "payload": self.payload, "code": self.code, "reads": self.reads, "qr_type": self.qr_type,
                "error": self.error, "reduction": self.reduction,
                "explainer": self.explainer, "explain_samples": preset.explain_samples, "alpha": self.alpha,
                "grid": int(self.modules.shape[0])}
        arrays = {"trigger_image": to_uint8(image[None])[0], "modules": self.modules.astype(np.uint8),
                  "shared_modules": shared.astype(np.uint8)}
        return Key(meta, arrays)

    @staticmethod
    def key_image(key: Key) -> torch.Tensor:
        return torch.from_numpy(key.arrays["trigger_image"].astype(np.float32) / 255.0)

    # -- verification --------------------------------------------------------------------------------
    def read_weights(self, model, key: Key, explainer: str, seed: int = 0, n_samples: int | None = None):
        """(weights (P,), images sent to the model): ``explainer`` on the key's trigger image and grid."""
        image = self.key_image(key)
        feature_mask = qr.grid_feature_mask(image.shape[1], image.shape[2], key.meta["grid"])
        forward = ModelForward.for_image(model, image, key.meta["reduction"], batch_size=64)
        sent = [0]

        class Counting:  # counts what the model answered; keeps the differentiable path for white-box explainers
            def __call__(self, batch):
                sent[0] += len(batch)
                return forward(batch)

            def torch(self, images):
                sent[0] += len(images)
                return forward.torch(images)

        weights = EXPLAINERS.get(explainer)().attribute(
            Counting(), image.permute(1, 2, 0).numpy(), feature_mask,
            n_samples=n_samples or key.meta["explain_samples"], batch_size=64, seed=seed)
        return np.asarray(weights, dtype=np.float64), sent[0]

    @staticmethod
    def bit_scores(weights: np.ndarray, key: Key) -> dict:
        modules = key.arrays["modules"].astype(bool)
        payload_part = ~key.arrays["shared_modules"].astype(bool)
        read = read_bits(weights, int(modules.sum())).reshape(modules.shape)
        correct = read == modules
        n_all, n_pay = correct.size, int(payload_part.sum())
        hits_all, hits_pay = int(correct.sum()), int(correct[payload_part].sum())
        return {"read": read, "hits_all": hits_all, "n_all": n_all, "hits_payload": hits_pay, "n_payload": n_pay,
                "bit_accuracy": hits_all / n_all, "bit_accuracy_payload": hits_pay / n_pay,
                "p_value_all": float(binomtest(hits_all, n_all, 0.5, alternative="greater").pvalue),
                "p_value": float(binomtest(hits_pay, n_pay, 0.5, alternative="greater").pvalue)}

    def read(self, model, key: Key, explainer: str, seed: int = 0) -> tuple[np.ndarray, int]:
        """(soft reading (P,), images sent): the key's ``reads`` explanations (explainer seeds ``seed``,
        ``seed`` + 1, ...) as ranks in [-1, 1], summed: one noisy read is averaged before any bit is decided.

        Remembered per (weights, key, explainer, seed): a cell reads each null once to calibrate and again
        to judge it against the others, and a read is seconds while hashing the weights is milliseconds."""
        memo_key = (weights_hash(model), self._key_digest(key), explainer, seed)
        if memo_key not in self._reads:
            soft, sent = np.zeros(int(key.meta["grid"]) ** 2), 0
            for r in range(int(key.meta.get("reads", 1))):
                weights, queries = self.read_weights(model, key, explainer, seed + r)
                soft += payload_code.soft_read(weights)
                sent += queries
            self._reads[memo_key] = (soft, sent)
        soft, sent = self._reads[memo_key]
        return soft.copy(), sent

    @staticmethod
    def _key_digest(key: Key) -> str:
        """What a read depends on in the key: its trigger image and the reading settings."""
        settings = {k: key.meta.get(k) for k in ("grid", "reduction", "explain_samples", "reads")}
        return spec_hash({"image": hashlib.sha256(key.arrays["trigger_image"].tobytes()).hexdigest(), **settings})

    @staticmethod
    def decode_payload(soft: np.ndarray, key: Key) -> tuple[str | None, payload_code.Decoded | None]:
        """(payload read or None, the linear code's decoding or None for a QR code)."""
        if key.meta.get("code", "qr") == "qr":
            read = read_bits(soft, int(key.arrays["modules"].sum())).reshape(key.arrays["modules"].shape)
            return qr.decode_symbol(read, key.meta["qr_type"]), None
        decoded = payload_code.decode(soft)
        if decoded.payload is None:
            return None, decoded
        # The certificate: the decoded payload as a QR code, read back by a QR decoder as a person's phone would.
        return qr.decode(qr.render_modules(qr.encode_payload(decoded.payload, 1, "H"))), decoded

    def verify(self, model, key, explainer=None, seed=0, certify=True, calibration=None, verifier="detector"):
        self.check_verifier(verifier)  # its payload read-out is its one verifier
        explainer = explainer or key.meta["explainer"]
        soft, sent = self.read(model, key, explainer, seed)
        s = self.bit_scores(soft, key)
        low, high = null_stats.wilson_interval(s["hits_all"], s["n_all"])
        payload_read, decoded = self.decode_payload(soft, key)
        result = QRVerification(
            asr=s["bit_accuracy"], fpr=None, p_value=s["p_value"], verified=False, queries=sent,
            score=s["bit_accuracy_payload"], asr_ci_low=low, asr_ci_high=high,
            qr_decoded=payload_read == key.meta["payload"], payload_read=payload_read,
            certificate=soft.reshape(key.arrays["modules"].shape),
            bit_accuracy=s["bit_accuracy"], bit_accuracy_payload=s["bit_accuracy_payload"],
            p_value_all=s["p_value_all"], modules=s["n_all"], payload_modules=s["n_payload"], explainer=explainer,
            code_z=None if decoded is None else decoded.z, code_bound=None if decoded is None else decoded.bound,
            best_payload=None if decoded is None else decoded.best)
        return judge(result, key.meta["alpha"], calibration or key.meta.get("null_calibrations", {}).get(explainer))

    def null_calibration(self, key, null_models, level=null_stats.DEFAULT_LEVEL, explainer=None, seed=0,
                         verifier="detector"):
        """Payload-module bit accuracy of each null model with one explainer (default the key's).

        The band is the nulls' own spread (no binomial floor: neighbouring patches of one model are not
        independent bits, and 3 of 50 null readings once left a binomial band)."""
        explainer = explainer or key.meta["explainer"]
        readings = [self.read(m, key, explainer, seed)[0] for m in null_models.values()]
        scores = [self.bit_scores(soft, key) for soft in readings]
        payload_acc = [s["bit_accuracy_payload"] for s in scores]
        cal = null_stats.calibration_from_null_scores(payload_acc, np.array(payload_acc), list(null_models), level)
        cal["bit_accuracy"] = [s["bit_accuracy"] for s in scores]
        cal["payload_read"] = [self.decode_payload(soft, key)[0] for soft in readings]
        return cal

    def calibrate(self, key: Key, null_models: dict, level: float = null_stats.DEFAULT_LEVEL,
                  explainers=None, seed: int = 0) -> Key:
        """Payload-module bit accuracy of each null model, per explainer, stored in the key (returned).

        ``explainers``: default every registered one, so any explainer a run asks for has its own null
        bound (a model-independent explainer gets a bound it cannot beat on a copy either)."""
        explainers = list(explainers or EXPLAINERS.names())
        key.meta.setdefault("null_calibrations", {})
        key.meta.setdefault("null_bit_accuracy", {})
        for name in explainers:
            cal = self.null_calibration(key, null_models, level, name, seed)
            key.meta["null_bit_accuracy"][name] = cal.pop("bit_accuracy")
            key.meta.setdefault("null_payload_read", {})[name] = cal.pop("payload_read")
            key.meta["null_calibrations"][name] = cal
        key.meta["null_calibration"] = key.meta["null_calibrations"].get(key.meta["explainer"])
        return key
