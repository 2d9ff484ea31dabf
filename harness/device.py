"""Where the tensors go: ``--device auto|cpu|cuda[:N]``, and what changes on a GPU.

On CUDA the harness trains and predicts under bf16 autocast with channels-last
activations (the fast path for convolutions on recent NVIDIA cards). On CPU
everything is float32 and deterministic under a seed; training (only) runs
channels-last there too, and predictions are contiguous.

Models are built and cached on the CPU; whoever computes with a model moves it
to ``model_device(model)``'s device or passes tensors to it, and every result
that leaves the harness's compute (probabilities, scores) comes back on the CPU.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from harness.errors import HarnessError


def resolve_device(name: str | None) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda`` without one is an input error.

    >>> resolve_device("cpu")
    'cpu'
    >>> resolve_device("tpu")
    Traceback (most recent call last):
    ...
    harness.errors.HarnessError: unknown device 'tpu'; valid devices: auto, cpu, cuda, cuda:N
    """
    name = (name or "cpu").strip().lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return "cpu"
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not torch.cuda.is_available():
            raise HarnessError(f"device {name!r} asked for, but torch sees no CUDA device (use --device auto or cpu)")
        index = int(name[5:]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise HarnessError(f"device {name!r} asked for, but torch sees only {torch.cuda.device_count()} GPU(s)")
        return name
    raise HarnessError(f"unknown device {name!r}; valid devices: auto, cpu, cuda, cuda:N")


def model_device(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    if first is None:
        first = next(model.buffers(), None)
    return first.device if first is not None else torch.device("cpu")


def on_gpu(device: torch.device | str) -> bool:
    return torch.device(device).type == "cuda"


def autocast(device: torch.device | str):
    """bf16 autocast on CUDA; a no-op on CPU (float32 keeps CPU runs bit-reproducible)."""
    if on_gpu(device):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(model: nn.Module, device: torch.device | str) -> nn.Module:
    """Move a model; on CUDA also to channels-last memory format."""
    model = model.to(device)
    if on_gpu(device):
        model = model.to(memory_format=torch.channels_last)
    return model


def as_input(images: torch.Tensor, device: torch.device | str, channels_last: bool = False) -> torch.Tensor:
    """A batch on ``device``; channels-last on CUDA (or when asked: training) to match the model."""
    images = images.to(device, non_blocking=True)
    if (channels_last or on_gpu(device)) and images.dim() == 4:
        images = images.contiguous(memory_format=torch.channels_last)
    return images


@contextlib.contextmanager
def gpu_speed(device: torch.device | str):
    """On CUDA: cuDNN autotuning on and deterministic algorithms off while training.

    Determinism is promised on CPU; on a GPU the deterministic kernels cost
    throughput and bf16 already changes the last digits.
    """
    if not on_gpu(device):
        yield
        return
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.benchmark = benchmark
