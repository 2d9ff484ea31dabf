"""Output channels of convolutions as prunable neurons: the core that ``clp`` and ``anp`` share.

The leading underscore keeps the registry from importing this file as a plugin.

A *unit* is one convolution together with the normalisation layer it feeds
directly, if any (conv -> batch norm in MONAI's BasicUNet, conv -> instance
norm in its UNet). A neuron is one output channel of a unit, read where the
unit ends: after the norm when there is one, else at the convolution.

Pairs are found from the data flow, not from the order in which modules are
registered: one forward pass of an all-zero input (no data: its values do not
matter, only which tensor goes where) with hooks that note which tensor each
convolution returns and which tensor each norm receives. CLP's own code pairs
each batch norm with the last convolution registered before it; in MONAI's
SegResNet that pairs a block's pre-activation norm with the previous block's
convolution, whose output also bypasses the norm through the block's identity
shortcut, so zeroing the norm's channel would not silence it.

Layers that produce the logit channels are never units: zeroing one of them
would remove a part of the model's output, not a feature.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from harness.attack import output_layer
from harness.device import model_device
from harness.errors import HarnessError

CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_BATCH_NORMS = nn.modules.batchnorm._BatchNorm
_INSTANCE_NORMS = nn.modules.instancenorm._InstanceNorm


def _is_transposed(conv: nn.Module) -> bool:
    return isinstance(conv, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d))


def _affine(norm: nn.Module) -> bool:
    return getattr(norm, "weight", None) is not None and getattr(norm, "bias", None) is not None


def _silenceable(norm: nn.Module) -> bool:
    """Whether a channel of this norm's output can be made exactly zero by per-channel edits.

    Batch and instance norm treat each channel alone; group norm pools a group's
    channels into its statistics, so only its per-channel affine stage can
    silence one channel without moving the others.
    """
    if isinstance(norm, (_BATCH_NORMS, _INSTANCE_NORMS)):
        return True
    return isinstance(norm, nn.GroupNorm) and _affine(norm)


@dataclass
class Unit:
    """A convolution's output channels, with the per-channel norm it feeds directly (``norm`` None: none)."""

    name: str
    conv: nn.Module
    norm: nn.Module | None = None

    @property
    def channels(self) -> int:
        return int(self.conv.out_channels)

    @property
    def tap(self) -> nn.Module:
        """The module whose output is the neurons' output."""
        return self.norm if self.norm is not None else self.conv

    def tap_bias(self) -> torch.Tensor | None:
        """The additive per-channel term of ``tap``'s output (None: there is none)."""
        if self.norm is not None:
            return self.norm.bias if _affine(self.norm) else None
        return self.conv.bias

    def kernels(self) -> torch.Tensor:
        """(channels, in_channels per group, kernel positions): each output channel's kernel as a matrix."""
        weight = self.conv.weight.detach()
        if not _is_transposed(self.conv):
            return weight.reshape(weight.shape[0], weight.shape[1], -1)
        # A transposed convolution stores (in, out / groups, ...): output channel c of group g reads
        # input channels g * in_per_group ... (g + 1) * in_per_group - 1 through column c % out_per_group.
        groups = self.conv.groups
        in_per_group, out_per_group = weight.shape[0] // groups, weight.shape[1]
        grouped = weight.reshape(groups, in_per_group, out_per_group, -1)
        return grouped.permute(0, 2, 1, 3).reshape(groups * out_per_group, in_per_group, -1)

    def batch_norm_scale(self) -> torch.Tensor | None:
        """|gamma| / sqrt(running_var + eps) of a batch norm fed by the unit, per channel (None: no such norm).

        In evaluation mode a batch norm is a fixed per-channel affine map, so its
        scale folds into the convolution; instance and group norm divide by
        statistics of the input and have no fixed scale to fold.
        """
        norm = self.norm
        if not isinstance(norm, _BATCH_NORMS) or norm.running_var is None:
            return None
        scale = torch.rsqrt(norm.running_var.detach() + norm.eps)
        return scale * norm.weight.detach().abs() if norm.weight is not None else scale

    @torch.no_grad()
    def silence(self, channels: torch.Tensor | list[int]) -> None:
        """Make the output of ``channels`` exactly zero for every input.

        With an affine norm, its gamma and beta of those channels are zeroed:
        0 * x_hat + 0 is 0 whatever reaches the norm. Zeroing the convolution's
        filter alone would not silence a channel there: the norm maps the
        resulting constant 0 to beta - gamma * running_mean / sqrt(running_var + eps),
        a constant the following layers still see (and, for a channel that had a
        large beta, a large one). Without an affine norm the convolution's filter
        and bias are zeroed: the channel is then 0 at the convolution, an
        instance norm maps a constant channel to 0, and a batch norm without
        affine does so once its running mean for the channel is 0 as well.
        """
        index = torch.as_tensor(channels, dtype=torch.long).flatten()
        if index.numel() == 0:
            return
        if self.norm is not None and _affine(self.norm):
            self.norm.weight[index] = 0.0
            self.norm.bias[index] = 0.0
            return
        self._zero_filters(index)
        running_mean = getattr(self.norm, "running_mean", None) if self.norm is not None else None
        if running_mean is not None:
            running_mean[index.to(running_mean.device)] = 0.0

    def _zero_filters(self, index: torch.Tensor) -> None:
        weight = self.conv.weight
        index = index.to(weight.device)
        if not _is_transposed(self.conv):
            weight[index] = 0.0
        else:
            out_per_group = weight.shape[1]
            in_per_group = weight.shape[0] // self.conv.groups
            for channel in index.tolist():
                group, column = divmod(channel, out_per_group)
                weight[group * in_per_group:(group + 1) * in_per_group, column] = 0.0
        if self.conv.bias is not None:
            self.conv.bias[index] = 0.0


def _consumers(root) -> dict:
    """How many edges of the autograd graph below ``root`` lead into each node."""
    counts: dict = {}
    seen, stack = {root}, [root]
    while stack:
        node = stack.pop()
        for child, _ in node.next_functions:
            if child is None:
                continue
            counts[child] = counts.get(child, 0) + 1
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return counts


def find_units(model: nn.Module, input_shape: tuple[int, ...]) -> list[Unit]:
    """Every prunable unit of ``model`` in registration order, found by one forward pass of zeros.

    ``input_shape`` is the probe's shape, e.g. (1, 3, H, W). The model is run in
    evaluation mode (batch-norm running statistics are read, not updated) and
    its mode is restored; no hook is left behind and no gradient is stored.
    Excluded: the output layer (``harness.attack.output_layer``) and any
    convolution with as many output channels as the model has logit channels.

    A norm is a convolution's partner only when it receives exactly that
    convolution's output tensor, unmodified, on every call, and nothing else
    reads that tensor (counted in the probe's autograd graph). The second condition keeps
    pre-activation blocks honest: in MONAI's SegResNet a convolution's output
    feeds the next block's norm *and* its identity shortcut, so silencing that
    norm would not silence the channel; such a convolution is read (and
    pruned) at its own output instead.
    """
    convs = {id(m): m for m in model.modules() if isinstance(m, CONVOLUTIONS)}
    norms = {id(m): m for m in model.modules() if isinstance(m, (_BATCH_NORMS, _INSTANCE_NORMS, nn.GroupNorm))}
    produced: dict[int, tuple] = {}  # id of an output tensor -> (the convolution that returned it, its version)
    nodes: dict[int, list] = {}  # id of a convolution -> the autograd nodes of its outputs
    keep_alive: list[torch.Tensor] = []  # so that no tensor id is reused while the probe runs
    fed: dict[int, set] = {}  # id of a norm -> ids of the convolutions whose output it received (None: other)

    def after_conv(module, inputs, output):
        keep_alive.append(output)
        produced[id(output)] = (module, output._version)
        nodes.setdefault(id(module), []).append(output.grad_fn)

    def before_norm(module, inputs):
        source, version = produced.get(id(inputs[0]), (None, None))
        # The same tensor object modified in place since (a residual "x += identity") is no longer the
        # convolution's output.
        fresh = source is not None and inputs[0]._version == version
        fed.setdefault(id(module), set()).add(id(source) if fresh else None)

    handles = [m.register_forward_hook(after_conv) for m in convs.values()]
    handles += [m.register_forward_pre_hook(before_norm) for m in norms.values()]
    was_training = model.training
    model.eval()
    # The input requires a gradient so that the graph exists even for a model with frozen parameters;
    # the graph is only walked, never differentiated.
    probe = torch.zeros(input_shape, device=model_device(model), requires_grad=True)
    try:
        with torch.enable_grad():
            logits = model(probe)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    consumers = _consumers(logits.grad_fn) if logits.grad_fn is not None else {}
    logit_channels = logits.shape[1] if logits.dim() > 1 else 1

    partner: dict[int, list] = {}
    for norm_id, sources in fed.items():
        if len(sources) == 1 and None not in sources and _silenceable(norms[norm_id]):
            partner.setdefault(next(iter(sources)), []).append(norms[norm_id])
    head = output_layer(model)
    units = []
    for name, module in model.named_modules():
        if id(module) not in convs or module is head or module.out_channels == logit_channels:
            continue
        candidates = partner.get(id(module), [])
        norm = candidates[0] if len(candidates) == 1 else None
        only_reader = all(node is not None and consumers.get(node, 0) == 1 for node in nodes.get(id(module), [None]))
        if norm is not None and (not only_reader or _channel_count(norm) != module.out_channels):
            norm = None
        units.append(Unit(name, module, norm))
    del keep_alive, logits
    if not units:
        raise HarnessError("the model has no convolution channels to prune besides its output layer")
    return units


def _channel_count(norm: nn.Module) -> int:
    return int(norm.num_channels if isinstance(norm, nn.GroupNorm) else norm.num_features)
