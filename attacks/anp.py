from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from attacks._channels import find_units
from harness.attack import Attack, Budget, attacker_subset, subset_size
from harness.device import as_input, model_device
from harness.errors import HarnessError
from harness.registry import ATTACKS
from harness.training import epoch_batches


class _NeuronGates:
    """Per-channel masks and adversarial perturbations, applied by forward hooks on each unit's output.

    A neuron's output y = w(x) + b (b: the norm's beta, or the convolution's
    bias where no affine norm follows; none after a norm without affine) becomes,
    as in the paper, ((m + delta) w)(x) + (1 + xi) b, i.e.

        clean:      m * (y - b) + b
        perturbed:  (m + delta) * (y - b) + (1 + xi) * b

    The tensors live here, not in the model, so removing the hooks leaves a plain model.
    """

    def __init__(self, units, device):
        self.units = units
        self.masks = [torch.ones(u.channels, device=device, requires_grad=True) for u in units]
        self.delta = [torch.zeros(u.channels, device=device) for u in units]
        self.xi = [torch.zeros(u.channels, device=device) for u in units]
        self.perturbed = False
        self.handles = [u.tap.register_forward_hook(self._gate(i)) for i, u in enumerate(units)]

    def _gate(self, index):
        unit = self.units[index]

        def gate(module, inputs, output):
            shape = (1, -1) + (1,) * (output.dim() - 2)
            scale = self.masks[index].view(shape)
            if self.perturbed:
                scale = scale + self.delta[index].view(shape)
            bias = unit.tap_bias()
            if bias is None:
                return scale * output
            bias = bias.view(shape)
            shift = 1 + self.xi[index].view(shape) if self.perturbed else 1
            return scale * (output - bias) + shift * bias

        return gate

    def draw(self, eps: float, generator: torch.Generator, device) -> None:
        """Fresh perturbations, uniform in [-eps, eps], that require a gradient."""
        for i, unit in enumerate(self.units):
            draws = torch.rand(2, unit.channels, generator=generator) * (2 * eps) - eps
            self.delta[i] = draws[0].to(device).requires_grad_(True)
            self.xi[i] = draws[1].to(device).requires_grad_(True)

    @torch.no_grad()
    def ascend(self, grads, eps: float) -> None:
        """One signed-gradient step of size eps on every perturbation, kept in [-eps, eps] and detached."""
        for noises, noise_grads in ((self.delta, grads[: len(self.units)]), (self.xi, grads[len(self.units):])):
            for i, grad in enumerate(noise_grads):
                step = torch.zeros_like(noises[i]) if grad is None else grad.sign()  # None: the unit has no bias
                noises[i] = (noises[i] + eps * step).clamp_(-eps, eps).detach()

    def remove(self):
        for handle in self.handles:
            handle.remove()


@ATTACKS.register("anp")
class AdversarialNeuronPruning(Attack):
    """Adversarial Neuron Pruning (Wu & Wang, NeurIPS 2021): prune the channels most sensitive to adversarial perturbation.

    Wu and Wang, "Adversarial Neuron Pruning Purifies Backdoored Deep Models",
    NeurIPS 2021. Backdoor neurons are the ones whose small multiplicative
    perturbation most easily breaks the model on clean data. For every neuron
    (an output channel of a convolution, read after the per-channel norm it
    feeds: ``attacks._channels``) ANP learns a mask m in [0, 1] (start 1) on
    its weight, against adversarial perturbations delta of its weight and xi
    of its bias, both bounded by eps: the neuron computes ((m + delta) w)(x) +
    (1 + xi) b. Each iteration, on a minibatch of the thief's images:
    perturbations drawn uniformly in [-eps, eps], one signed-gradient step of
    size eps that increases the loss (clipped back to [-eps, eps], the paper's
    bound); then one SGD step (momentum 0.9) on m for
    alpha * L(m, no perturbation) + (1 - alpha) * L(m, perturbed), m clipped
    to [0, 1]. Then the fraction ``strength`` of all neurons with the smallest
    masks (ties: first registered first) is pruned. The output layer and any
    layer producing the logit channels are never masked or pruned.

    Segmentation: L is the pixel-wise BCE-with-logits against the thief's own
    masks (labels needed) where the paper uses cross-entropy on class labels;
    a minibatch is 4 images, each with H x W targets. Measured on ``tiny``
    (clean, BadNets and StealthMark basic-unet), what settles the masks is the
    number of steps, not the images per step: 300 steps of 4 pruned 2 % of
    the neurons for 0.01-0.07 Dice; 100 steps of 16 cost StealthMark 0.17
    where 300 of 4 cost it 0.05. Other departures, each tried there: the model
    runs in evaluation mode (the running batch-norm statistics it is deployed
    with; the authors' code uses batch statistics, which in trials pruned
    worse at equal steps); eps is 0.1, not 0.4: perturbing every channel of a
    22-layer U-Net by 0.4 with nothing to renormalise compounds through depth,
    and drove a fifth of all masks to 0 within 100 steps; and a pruned
    neuron's output is made exactly zero (``Unit.silence``, as ``clp`` does)
    where the authors zero the weight alone and leave it emitting its bias:
    at 5 % that cost the clean model 0.50 Dice, zeroing 0.04. 300 iterations
    (the paper: 2000 of 128 images) keep one apply at ``tiny`` near 20 s on
    one thread. Fractions 0.02 (moderate) and 0.05 (strong): at 0.05 the
    BadNets model was already destroyed, and at 0.2 every one was.
    """

    family = "backdoor-removal"
    trains = True
    strength_name = "fraction of conv output channels pruned (smallest ANP mask first)"
    strength_range = (0.0, 0.9)
    default_strengths = (0.02, 0.05)
    presets = {"p01": 0.01, "p02": 0.02, "p05": 0.05, "p10": 0.1}

    def __init__(self, iterations: int = 300, eps: float = 0.1, alpha: float = 0.2, mask_lr: float = 0.2,
                 batch_size: int = 4, data_fraction: float = 1.0):
        if int(iterations) != iterations or iterations < 1:
            raise HarnessError(f"ANP iterations must be a whole number >= 1, got {iterations}")
        if int(batch_size) != batch_size or batch_size < 1:
            raise HarnessError(f"ANP batch size must be a whole number >= 1, got {batch_size}")
        if not 0 <= eps <= 1:
            raise HarnessError(f"ANP eps must be in [0, 1], got {eps}")
        if not 0 <= alpha <= 1:
            raise HarnessError(f"ANP alpha must be in [0, 1], got {alpha}")
        self.iterations, self.batch_size = int(iterations), int(batch_size)
        self.eps, self.alpha, self.mask_lr = float(eps), float(alpha), float(mask_lr)
        self.data_fraction = float(data_fraction)

    def params(self) -> dict:
        return {"iterations": self.iterations, "eps": self.eps, "alpha": self.alpha, "mask_lr": self.mask_lr,
                "batch_size": self.batch_size, "data_fraction": self.data_fraction}

    def budget(self, kit, strength):
        return Budget(images=subset_size(kit, self.data_fraction), labels=True)

    def apply(self, model, kit, strength, seed):
        fraction = self.check_strength(strength)
        names, masks = self.masks(model, kit, seed)
        pruned = copy.deepcopy(model).eval()
        units = find_units(pruned, (1, *kit.data.images.shape[1:]))
        assert [u.name for u in units] == names, "a copy of the model must have the same units"
        values = torch.cat([m.cpu() for m in masks])
        chosen = torch.argsort(values, stable=True)[: round(fraction * len(values))]
        start = 0
        for unit in units:
            unit.silence(chosen[(chosen >= start) & (chosen < start + unit.channels)].sort().values - start)
            start += unit.channels
        return pruned.eval()

    def masks(self, model, kit, seed: int) -> tuple[list[str], list[torch.Tensor]]:
        """(unit names, learned mask of each unit's channels), learned on a throw-away copy of ``model``."""
        work = copy.deepcopy(model).eval()
        data = attacker_subset(kit, self.data_fraction, seed)
        device = model_device(work)
        units = find_units(work, (1, *data.images.shape[1:]))
        # Only masks and perturbations are optimised: the weights need no gradients.
        work.requires_grad_(False)
        # Channels-last, as ``fit`` trains: 1.4x the speed of NCHW for these convolutions on one CPU thread.
        work.to(memory_format=torch.channels_last)
        gates = _NeuronGates(units, device)
        draws = torch.Generator().manual_seed(seed + 1)
        order = torch.Generator().manual_seed(seed + 2)
        optimizer = torch.optim.SGD(gates.masks, lr=self.mask_lr, momentum=0.9)
        batches: list[torch.Tensor] = []
        for _ in range(self.iterations):
            if not batches:
                batches = epoch_batches(len(data), self.batch_size, order)
            batch = batches.pop(0)
            images = as_input(data.images[batch], device, channels_last=True)
            targets = data.masks[batch].to(device)
            loss = 0.0
            if self.eps > 0:
                gates.perturbed = True
                gates.draw(self.eps, draws, device)
                ascent = F.binary_cross_entropy_with_logits(work(images), targets)
                gates.ascend(torch.autograd.grad(ascent, gates.delta + gates.xi, allow_unused=True), self.eps)
                loss = (1 - self.alpha) * F.binary_cross_entropy_with_logits(work(images), targets)
            gates.perturbed = False
            loss = loss + self.alpha * F.binary_cross_entropy_with_logits(work(images), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                for mask in gates.masks:
                    mask.clamp_(0.0, 1.0)
        gates.remove()
        return [u.name for u in units], [m.detach().cpu() for m in gates.masks]
