"""The shared call signature of explainer plugins (``harness/explainers/``).

An explainer answers "which patches does the model output depend on?" with one
weight per patch. A watermark's certificate (e.g. StealthMark's QR code) is read
from those weights, so every explainer takes the same inputs and returns the
same thing, whichever library does the work.

Two kinds of forward reach an explainer:

* a black-box ``Forward``: any function from a numpy batch of images to one
  scalar each. Perturbation explainers (LIME, Kernel SHAP, occlusion) need no more.
* a ``ModelForward``: a segmentation model plus a named reduction
  (``harness.reductions``). It is a ``Forward`` too, and it also has a
  differentiable ``.torch`` path, which white-box explainers (``white_box =
  True``, e.g. ``captum-ig``) require.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from harness.device import autocast, model_device
from harness.errors import HarnessError
from harness.reductions import ScoreFn, get_reduction, region_for

Forward = Callable[[np.ndarray], np.ndarray]
"""float32 batch (B, H, W, 3) in [0, 1] -> float array (B,): one scalar per perturbed image."""


@runtime_checkable
class DifferentiableForward(Protocol):
    """A ``Forward`` that also has a differentiable torch path (what white-box explainers need)."""

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...

    def torch(self, images: torch.Tensor) -> torch.Tensor:
        """float32 (B, 3, H, W) in [0, 1] -> (B,), differentiable with respect to ``images``."""
        ...


@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    """``model`` in evaluation mode for the block, restored after (no module walk if it already is)."""
    if not model.training:
        yield
        return
    model.eval()
    try:
        yield
    finally:
        model.train()


class ModelForward:
    """A segmentation model read as one scalar per image: ``reduction(sigmoid(model(x)), region)``.

    * ``forward(batch)``: black-box call on a numpy float32 batch (B, H, W, 3) in
      [0, 1] -> float64 (B,); runs under ``torch.inference_mode`` in chunks of
      ``batch_size`` images, in evaluation mode.
    * ``forward.torch(x)``: the same value for a tensor (B, 3, H, W), differentiable
      (for white-box explainers); also in evaluation mode.

    ``model``: a ``Segmenter`` (images in [0, 1] -> logits (B, 1, H, W)).
    ``reduction``: a name in ``harness.reductions.REDUCTIONS``; ``score`` is the
    callable that ``"detector-score"`` needs. ``region``: bool (H, W) pixels the
    reduction averages over, ``None`` for every pixel (``for_image`` picks it from
    the model's answer to the unperturbed image). ``preprocess``: an optional
    differentiable map applied to (B, 3, H, W) images before the model (e.g. to
    pin pixels that must not be perturbed). ``device``: where the images go
    (default: the device of the model's first parameter).
    """

    def __init__(
        self,
        model: nn.Module,
        reduction: str = "background-mean",
        region: torch.Tensor | np.ndarray | None = None,
        batch_size: int = 64,
        *,
        score: ScoreFn | None = None,
        preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
        device: str | torch.device | None = None,
    ):
        if not isinstance(model, nn.Module):
            raise HarnessError(f"ModelForward needs a torch model (nn.Module), got {type(model).__name__}")
        if batch_size < 1:
            raise HarnessError(f"batch_size must be at least 1, got {batch_size}")
        self.model = model
        self.reduction = reduction
        self._reduce = get_reduction(reduction, score)
        self.device = torch.device(model_device(model) if device is None else device)
        self.region = self._checked_region(region)
        self.batch_size = int(batch_size)
        self.preprocess = preprocess

    def _checked_region(self, region) -> torch.Tensor | None:
        if region is None:
            return None
        region = region if isinstance(region, torch.Tensor) else torch.from_numpy(np.asarray(region))
        if region.ndim != 2 or region.dtype != torch.bool:
            raise HarnessError(f"region must be a bool (H, W) pixel mask, got {region.dtype} {tuple(region.shape)}")
        if not region.any():
            raise HarnessError("region is empty: the reduction would average over no pixel")
        return region.to(self.device)

    @classmethod
    def for_image(cls, model: nn.Module, image: np.ndarray | torch.Tensor, reduction: str = "background-mean",
                  batch_size: int = 64, **kwargs) -> ModelForward:
        """A ``ModelForward`` whose region comes from the model's answer to the unperturbed ``image``
        (numpy (H, W, 3) or tensor (3, H, W)): the pixels it calls background for background-mean,
        object for foreground-mean, every pixel otherwise (``harness.reductions.region_for``)."""
        forward = cls(model, reduction, None, batch_size, **kwargs)
        x = torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1) \
            if not isinstance(image, torch.Tensor) else image.float()
        if x.ndim != 3 or x.shape[0] != 3:
            raise HarnessError(f"for_image needs one image, numpy (H, W, 3) or tensor (3, H, W); "
                               f"got shape {tuple(np.shape(image))}")
        with torch.inference_mode(), _eval_mode(model):
            probs = torch.sigmoid(model(forward._prepare(x[None])))
        forward.region = forward._checked_region(region_for(reduction, probs))
        return forward

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device)
        return self.preprocess(images) if self.preprocess is not None else images

    def _scalar(self, images: torch.Tensor) -> torch.Tensor:
        with autocast(self.device):
            logits = self.model(self._prepare(images))
        return self._reduce(torch.sigmoid(logits.float()), self.region)

    def torch(self, images: torch.Tensor) -> torch.Tensor:
        """float32 (B, 3, H, W) in [0, 1] -> (B,), differentiable; all B images in one model call."""
        with _eval_mode(self.model):
            return self._scalar(images)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """float32 (B, H, W, 3) in [0, 1] -> float64 (B,), without gradients, ``batch_size`` images per model call."""
        # contiguous NCHW: a channels-last view would send the convolutions down a different (slower) path.
        images = torch.from_numpy(np.ascontiguousarray(np.asarray(batch, dtype=np.float32).transpose(0, 3, 1, 2)))
        with torch.inference_mode(), _eval_mode(self.model):
            out = [self._scalar(images[i : i + self.batch_size]) for i in range(0, len(images), self.batch_size)]
            out = torch.cat(out) if out else torch.zeros(0)
        return out.double().cpu().numpy()


def perturbed_images(image: np.ndarray, feature_mask: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """float32 (n, H, W, 3): ``image`` with feature j kept where ``keep[i, j]`` and black (0) elsewhere.

    ``keep``: (n, P) of 0/1 or bool, one row per perturbation; ``feature_mask``: (H, W) ids 0..P-1.
    """
    pixels = np.asarray(keep, dtype=bool)[:, feature_mask]  # (n, H, W)
    return image[None] * pixels[..., None].astype(np.float32)


def forward_in_batches(forward: Forward, image: np.ndarray, feature_mask: np.ndarray, keep: np.ndarray,
                       batch_size: int) -> np.ndarray:
    """``forward`` of every perturbation in ``keep`` (n, P), built and sent ``batch_size`` at a time -> (n,)."""
    keep = np.asarray(keep)
    out = [forward(perturbed_images(image, feature_mask, keep[i : i + batch_size]))
           for i in range(0, len(keep), batch_size)]
    return np.concatenate(out) if out else np.zeros(0)


class Explainer:
    """Attribution over a feature mask: one weight per feature (patch).

    Perturbation convention: a feature that is "off" takes the baseline value 0
    (black) in all three channels; a feature that is "on" keeps the image's pixels.

    Subclasses implement ``_attribute``; ``attribute`` checks the inputs and the
    forward's outputs so that each plugin can trust them.
    """

    name: str
    # True: the weights come only from how forward's output changes, so a model
    # whose output ignores the image yields all-zero weights (no picture from nothing).
    model_dependent_by_design = True
    # True: needs the model's gradients, so ``forward`` must be a DifferentiableForward
    # (a ModelForward); a black-box function is refused. False: only calls forward.
    white_box = False
    # True: the seed changes the weights (sampled perturbations). False: a deterministic method.
    stochastic = True

    def attribute(
        self,
        forward: Forward,
        image: np.ndarray,
        feature_mask: np.ndarray,
        n_samples: int = 1000,
        batch_size: int = 64,
        seed: int = 0,
    ) -> np.ndarray:
        """float64 weights (P,), index = feature id of ``feature_mask`` (ids 0..P-1); deterministic per seed.

        ``forward`` is called with batches of at most ``batch_size`` perturbed images
        (a white-box explainer calls ``forward.torch`` with at most ``batch_size`` images).
        """
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3:
            raise HarnessError(f"explainer image must be (H, W, 3), got shape {image.shape}")
        image = image.astype(np.float32, copy=False)
        if image.size and (image.min() < 0 or image.max() > 1):
            raise HarnessError(f"explainer image must lie in [0, 1], got [{image.min():.3g}, {image.max():.3g}]")
        feature_mask = np.asarray(feature_mask)
        if feature_mask.shape != image.shape[:2] or not np.issubdtype(feature_mask.dtype, np.integer):
            raise HarnessError(
                f"feature mask must be an integer array of shape {image.shape[:2]}, "
                f"got {feature_mask.dtype} {feature_mask.shape}"
            )
        n_features = int(feature_mask.max()) + 1 if feature_mask.size else 0
        # LIME regresses on column j = feature id j, so a gap in the ids would shift every weight after it.
        if feature_mask.min(initial=0) < 0 or len(np.unique(feature_mask)) != n_features:
            raise HarnessError("feature mask ids must be exactly 0..P-1, each used by at least one pixel")
        if n_samples < 2:
            raise HarnessError(f"n_samples must be at least 2 to fit a surrogate, got {n_samples}")
        if batch_size < 1:
            raise HarnessError(f"batch_size must be at least 1, got {batch_size}")
        if self.white_box and not isinstance(forward, DifferentiableForward):
            raise HarnessError(
                f"{getattr(self, 'name', type(self).__name__)} is white-box: it needs the model's gradients, so "
                f"forward must be differentiable (a harness.explainer.ModelForward), not a black-box function")

        weights = self._attribute(
            _checked(forward), image, feature_mask.astype(np.int64, copy=False), n_features,
            int(n_samples), int(batch_size), int(seed),
        )
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != (n_features,):
            raise RuntimeError(f"{type(self).__name__} returned weights of shape {weights.shape}, "
                               f"expected ({n_features},)")
        return weights

    def _attribute(
        self,
        forward: Forward,
        image: np.ndarray,
        feature_mask: np.ndarray,
        n_features: int,
        n_samples: int,
        batch_size: int,
        seed: int,
    ) -> np.ndarray:
        """Weights (n_features,) for a checked forward, float32 image and int64 mask."""
        raise NotImplementedError


def _check_output(out, n: int):
    if tuple(out.shape) != (n,):
        raise HarnessError(f"explainer forward must return one scalar per image, shape ({n},); "
                           f"got shape {tuple(out.shape)}")


class _CheckedForward:
    """``forward`` that fails with a readable message instead of deep inside a library's regression.

    Keeps a differentiable ``.torch`` path when ``forward`` has one (checked the same way).
    """

    def __init__(self, forward: Forward):
        self._forward = forward
        if isinstance(forward, DifferentiableForward):
            self.torch = self._torch

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        out = np.asarray(self._forward(batch), dtype=np.float64)
        _check_output(out, len(batch))
        if not np.all(np.isfinite(out)):
            raise HarnessError("explainer forward returned NaN or infinity")
        return out

    def _torch(self, images: torch.Tensor) -> torch.Tensor:
        out = self._forward.torch(images)
        if not isinstance(out, torch.Tensor):
            raise HarnessError(f"forward.torch must return a tensor, got {type(out).__name__}")
        _check_output(out, len(images))
        return out


def _checked(forward: Forward) -> _CheckedForward:
    return _CheckedForward(forward)
