"""Glue shared by the Captum-backed plugins (underscore: not a plugin itself)."""

from __future__ import annotations

import numpy as np
import torch


def numpy_forward_for_captum(forward):
    """Captum hands (B, 3, H, W) tensors; the harness's black-box forward takes (B, H, W, 3) numpy batches."""

    def torch_forward(batch: torch.Tensor) -> torch.Tensor:
        channels_last = np.ascontiguousarray(batch.detach().permute(0, 2, 3, 1).numpy())
        return torch.from_numpy(forward(channels_last))

    return torch_forward


def image_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) numpy image -> contiguous (1, 3, H, W) tensor, the one input Captum explains."""
    return torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).contiguous()
