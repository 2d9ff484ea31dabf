from __future__ import annotations

import copy

import torch
from torch import nn

from harness.attack import Attack, weight_layers
from harness.registry import ATTACKS


def output_channel_dim(module: nn.Module) -> int:
    """The weight dimension that indexes output channels (transposed convolutions store (in, out, ...))."""
    return 1 if isinstance(module, nn.ConvTranspose2d) else 0


def fake_quantize(weight: torch.Tensor, bits: int, channel_dim: int) -> torch.Tensor:
    """Round ``weight`` to a symmetric grid of 2^(bits-1)-1 steps per side, one scale per output channel."""
    levels = 2 ** (bits - 1) - 1
    reduce = [d for d in range(weight.dim()) if d != channel_dim]
    scale = weight.abs().amax(dim=reduce, keepdim=True) / levels
    # An all-zero channel has no range; any scale reproduces its zeros.
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return (weight / scale).round().clamp(-levels, levels) * scale


@ATTACKS.register("quantize")
class Quantize(Attack):
    """Symmetric per-output-channel weight quantization of every conv/linear layer (simulated: stored as float)."""

    # Simulated ("fake") quantization: every weight is replaced by the float value
    # its integer code stands for. A watermark verifier only sees the model's
    # outputs, and an int8 kernel computes the same products of the same
    # dequantized numbers, so real integer kernels would add nothing to the
    # measurement but a backend dependency. Per-output-channel symmetric scales
    # also commute with folding a following batch norm into the convolution
    # (that multiplies each output channel by a constant), so quantizing the
    # unfolded weights yields what a deployment toolchain would. Biases and
    # activations stay in float, as in weight-only quantization.

    family = "quantization"
    strength_name = "bits per weight"
    strength_range = (2, 16)
    default_strengths = (8, 4)
    presets = {"int8": 8, "int4": 4}
    integer_strength = True

    def apply(self, model, kit, strength, seed):
        bits = int(self.check_strength(strength))
        quantized = copy.deepcopy(model)
        with torch.no_grad():
            for module, name in weight_layers(quantized):
                weight = getattr(module, name)
                weight.copy_(fake_quantize(weight, bits, output_channel_dim(module)))
        return quantized.eval()
