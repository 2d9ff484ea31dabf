"""Input-transform attacks: the stolen model deployed behind preprocessing.

The base of the input-transform plugins (underscore: not a plugin itself).

A thief need not touch the weights: serving the model behind JPEG
re-encoding, a blur or a flip may already break a trigger. Such an attack
returns the model wrapped with its transform (``TransformedModel``), so every
attack stays model -> model and the owner's copy is never modified. The
transform is applied to every query, benign and triggered alike, exactly as a
deployed preprocessing would be: the verifier cannot tell which queries to
spare.

Image operations are albumentations transforms. Images cross into
albumentations as 8-bit HWC arrays, the format a deployed pipeline decodes
to, and come back as floats in [0, 1].
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import torch
from torch import nn

from harness.attack import Attack
from harness.errors import HarnessError

# Albumentations asks PyPI for a newer version of itself on import: a benchmark must not phone home (nor stall
# on an offline GPU node), so the check is off unless the user switched it on. Plugins take ``A`` from this
# module rather than importing albumentations themselves, so this line always runs first.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
import albumentations as A

__all__ = ["A", "InputTransformAttack", "TransformedModel"]


def _to_hwc(tensor: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) tensor -> (N, H, W, C) float32 array, the layout albumentations expects."""
    return tensor.detach().to("cpu", torch.float32).permute(0, 2, 3, 1).contiguous().numpy()


def _to_nchw(arrays: list[np.ndarray], like: torch.Tensor) -> torch.Tensor:
    """Per-image (H, W, C) arrays -> one (N, C, H, W) tensor on ``like``'s device and dtype."""
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).to(like.device, like.dtype)


class TransformedModel(nn.Module):
    """A model behind a per-image albumentations transform: images (N, 3, H, W) in [0, 1] -> the model's output.

    Randomness (e.g. noise) is seeded per image from ``seed`` and the image's
    own bytes, so the wrapper is a deterministic function of each image: the
    same query gets the same answer whatever its batch, position or order,
    and two wrappers built with the same seed agree. Distinct images still
    get independent draws, as fresh noise per query would give.

    ``output_transform`` maps the model's output back into the input's frame
    (e.g. flips a mask back after a flipped input); it must be deterministic.

    Inference only: images pass through numpy, so no gradient reaches them.
    """

    def __init__(self, model: nn.Module, transform: A.BasicTransform, seed: int,
                 output_transform: A.BasicTransform | None = None):
        super().__init__()
        for step in (transform, output_transform):
            # A transform's p defaults to 0.5: it would silently spare half of the queries.
            if step is not None and step.p != 1:
                raise HarnessError(f"{type(step).__name__} has p={step.p:g}; a deployed preprocessing needs p=1")
        self.model = model
        self.seed = int(seed)
        self.transform = A.Compose([A.FromFloat(dtype="uint8", max_value=255), transform, A.ToFloat(max_value=255)])
        self.output_transform = None if output_transform is None else A.Compose([output_transform])

    def _preprocess(self, image: np.ndarray) -> np.ndarray:
        digest = hashlib.blake2b(self.seed.to_bytes(8, "little", signed=True) + image.tobytes(), digest_size=8)
        self.transform.set_random_seed(int.from_bytes(digest.digest(), "little"))
        return self.transform(image=image)["image"]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        inputs = _to_nchw([self._preprocess(image) for image in _to_hwc(images)], like=images)
        outputs = self.model(inputs)
        if self.output_transform is None:
            return outputs
        return _to_nchw([self.output_transform(image=out)["image"] for out in _to_hwc(outputs)], like=outputs)


class InputTransformAttack(Attack):
    """Base of the input-transform attacks: the model is served behind ``transform(strength)``.

    A subclass defines ``transform`` (an albumentations transform with p=1,
    its parameters pinned to ``strength`` so that only declared randomness
    such as noise remains) and, when the transform moves pixels, an
    ``output_transform`` that moves the output back. Set
    ``integer_strength`` when the strength is a count or a quality level.
    """

    family = "input-transform"

    def transform(self, strength: float) -> A.BasicTransform:
        raise NotImplementedError

    def output_transform(self, strength: float) -> A.BasicTransform | None:
        return None

    def apply(self, model, kit, strength, seed):
        strength = self.check_strength(strength)
        return TransformedModel(model, self.transform(strength), seed, self.output_transform(strength))
