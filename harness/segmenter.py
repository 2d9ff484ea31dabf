"""The model object the harness passes around: a registered network plus its input normalisation.

Images travel through the harness in [0, 1]; ImageNet normalisation (as in the
StealthMark code) lives here, inside ``forward``, so an attack that wraps the
model with preprocessing, a verifier and a trainer all see the same contract:
images in, one channel of logits out. Checkpoints hold ``net``'s state dict
only, so a network trained outside the harness loads as long as its
architecture is a registered model.
"""

from __future__ import annotations

import torch
from torch import nn

from harness.device import as_input, autocast, model_device
from harness.registry import MODELS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Segmenter(nn.Module):
    """Binary segmentation model: images (N, 3, H, W) in [0, 1] -> logits (N, 1, H, W)."""

    def __init__(self, net: nn.Module, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        self.net = net
        # Not persistent: normalisation is part of the contract, not of the checkpoint.
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # Callers may hand over CPU images (a key's queries, an input transform's output):
        # they follow the model, wherever it lives.
        images = images.to(self.mean.device, non_blocking=True)
        return self.net((images - self.mean) / self.std)


def build_model(name: str, preset: str) -> Segmenter:
    """A freshly initialised registered network at ``preset``'s model size (seed the global RNG first)."""
    from harness.presets import PRESETS

    size = PRESETS[preset].model_size if preset in PRESETS else preset
    return Segmenter(MODELS.get(name)(size))


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int = 64, to_cpu: bool = True) -> torch.Tensor:
    """Float32 logits (N, 1, H, W) in evaluation mode, batched on the model's device; on the CPU unless
    ``to_cpu`` is False."""
    device = model_device(model)
    was_training = model.training
    model.eval()
    chunks = []
    for i in range(0, len(images), batch_size):
        with autocast(device):
            logits = model(as_input(images[i : i + batch_size], device)).float()
        chunks.append(logits.cpu() if to_cpu else logits)
    model.train(was_training)
    return torch.cat(chunks)


def predict_proba(model: nn.Module, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Sigmoid probabilities (N, 1, H, W) on the CPU, in evaluation mode, batched on the model's device."""
    return torch.sigmoid(predict_logits(model, images, batch_size))
