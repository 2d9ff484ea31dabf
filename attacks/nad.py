from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from harness.attack import Attack, Budget, attacker_subset, output_layer, subset_size
from harness.device import model_device
from harness.errors import HarnessError
from harness.presets import TrainConfig
from harness.registry import ATTACKS
from harness.training import fit

# NAD's p: attention is the channel mean of |F|^2 (Zagoruyko & Komodakis's activation-based attention).
POWER = 2
# Salt of the teacher's minibatch order, so it is not the student's order replayed.
_TEACHER_SALT = 0x7EAC


def attention(features: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, H*W): channel mean of |F|^p, flattened and L2-normalised per image (float32)."""
    maps = features.float().abs().pow(POWER).mean(dim=1).flatten(1)
    return F.normalize(maps, dim=1, eps=1e-6)


def _contains_convolution(module: nn.Module) -> bool:
    return any(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in module.modules())


def attention_layers(model: nn.Module, probe: torch.Tensor) -> list[str]:
    """Names of the modules whose outputs NAD distils: the bottleneck and each decoder stage of a U-Net.

    Found from one forward pass of ``probe`` (eval mode, no gradients, so nothing in
    ``model`` changes). Candidates are the modules that contain a convolution, do not
    contain the output layer, run exactly once and finish before the output layer runs,
    with a multi-channel (N, C, H, W) output. In the order they finish they fall into
    runs of equal spatial size; a run is one stage of the network and its last module to
    finish is that stage's output (a whole block, residual additions and skip
    concatenations included). The stages from the first one at the smallest resolution
    on are the bottleneck and the decoder; they must grow in size stage by stage, or the
    model is refused.
    """
    head = output_layer(model)
    holders = {id(m) for m in model.modules() if any(sub is head for sub in m.modules())}
    names = {id(m): name for name, m in model.named_modules()}
    finished, calls, head_done = [], {}, []

    def record(module, inputs, output):
        calls[id(module)] = calls.get(id(module), 0) + 1
        if not head_done and isinstance(output, torch.Tensor) and output.dim() == 4 and output.shape[1] > 1:
            finished.append((id(module), tuple(output.shape[-2:])))

    handles = [m.register_forward_hook(record) for m in model.modules()
               if id(m) not in holders and _contains_convolution(m)]
    handles.append(head.register_forward_hook(lambda *_: head_done.append(True)))
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(probe)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    finished = [(key, size) for key, size in finished if calls[key] == 1]
    stages: list[list] = []
    for key, size in finished:
        if stages and stages[-1][1] == size:
            stages[-1][0] = key
        else:
            stages.append([key, size])
    if not stages:
        raise HarnessError("attack 'nad': found no convolutional feature maps to distil in this model")
    smallest = min(h * w for _, (h, w) in stages)
    deepest = next(i for i, (_, (h, w)) in enumerate(stages) if h * w == smallest)
    decoder = [h * w for _, (h, w) in stages[deepest:]]
    # A decoder upsamples stage after stage; anything else (a ViT's token maps reshaped back and forth,
    # as in UNETR or SAM) has no bottleneck-and-decoder to distil.
    if len(decoder) < 2 or any(later <= earlier for earlier, later in zip(decoder, decoder[1:])):
        raise HarnessError("attack 'nad' needs an encoder-decoder network whose feature maps shrink to a "
                           "bottleneck and then grow stage by stage; this model's do not")
    return [names[key] for key, _ in stages[deepest:]]


class _Capture:
    """Forward hooks that store the attention map of each named module's latest output."""

    def __init__(self, model: nn.Module, names: list[str]):
        modules = dict(model.named_modules())
        self.maps: list[torch.Tensor | None] = [None] * len(names)
        self.handles = [modules[name].register_forward_hook(self._hook(i)) for i, name in enumerate(names)]

    def _hook(self, position: int):
        def store(module, inputs, output):
            # Computed at once: a later in-place operation on ``output`` cannot alter the map.
            self.maps[position] = attention(output)
        return store

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _teacher_maps(teacher: nn.Module, names: list[str], images: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """The teacher's attention maps of every image at every layer, in eval mode without gradients, on the CPU."""
    capture = _Capture(teacher, names)
    chunks: list[list[torch.Tensor]] = [[] for _ in names]
    device = model_device(teacher)
    try:
        teacher.eval()
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                teacher(images[start : start + batch_size].to(device))
                for chunk, latest in zip(chunks, capture.maps):
                    chunk.append(latest.cpu())
    finally:
        capture.remove()
    return [torch.cat(chunk) for chunk in chunks]


@ATTACKS.register("nad")
class NeuralAttentionDistillation(Attack):
    """NAD: fine-tune a teacher on clean data, then train the suspect to match the teacher's attention maps.

    Li, Lyu, Koren, Lyu, Li and Ma, "Neural Attention Distillation: Erasing Backdoor
    Triggers from Deep Neural Networks", ICLR 2021. Step 1: the teacher is a copy of
    the suspect fine-tuned ``teacher_epochs`` epochs on the thief's clean labelled
    images. Step 2: the student, another copy of the suspect, is trained ``strength``
    epochs with the task loss plus ``beta`` times, summed over the distilled layers,
    the attention distillation loss of NAD's Eq. 2: mean over images of
    ``||A_s - A_t||_2`` with ``A`` the channel mean of ``|F|^2``, flattened and
    L2-normalised per image. The teacher is fixed (eval mode, no gradients), so its
    maps are computed once per image before the student trains.

    Segmentation: the task loss is per-pixel BCE against the thief's masks (NAD's
    cross-entropy). NAD distils the outputs of a WideResNet's last residual groups,
    its deepest features. A U-Net's deepest features are its bottleneck, and what
    follows it are the decoder stages, which carry the spatial layout that a
    segmentation backdoor acts on; the outputs of the bottleneck and of every decoder
    stage are distilled (``attention_layers``: basic-unet's ``down_4`` and
    ``upcat_4`` .. ``upcat_1``; MONAI UNet's skip connections at the bottleneck and the two levels above it; a
    full-resolution single-channel stage is not a feature map and is left out).
    They are found with forward hooks from one probe pass, for any encoder-decoder
    convolutional network, and a model without one is refused.

    Defaults: ``beta`` 10. NAD's betas (up to 5000) go with its code's loss, the mean
    squared difference of the normalised maps (Eq. 2 squared and divided by H*W); with
    Eq. 2 itself the distillation term dominates from beta ~1 on (at tiny the suspect's
    BCE is ~0.17 and its five distances to a 5-epoch teacher sum to ~1.6). Measured at
    tiny (seed 0, 5 epochs): beta 1, 10, 100 and 1000 gave the same Dice drop
    (0.02 on StealthMark, 0.06-0.07 on BadNets; beta 0: 0.00 and 0.03), because Adam
    normalises the gradient's scale once the distillation term dominates; at 20 epochs
    beta 10 and 1000 reached the same verdicts. ``teacher_epochs`` 5: NAD fine-tunes its
    teacher briefly. ``data_fraction`` 1.0: all of the thief's images (100 at tiny);
    NAD used 5% of the training set, which at tiny's 300 owner images would be 15.
    ``lr`` 1e-3 for teacher and student, as ``ftal``.
    """

    trains = True
    family = "backdoor-removal"
    strength_name = "student training epochs"
    strength_range = (0.0, 500.0)
    default_strengths = (5.0, 20.0)
    presets = {"e5": 5.0, "e20": 20.0}
    integer_strength = True

    def __init__(self, beta: float = 10.0, teacher_epochs: int = 5, lr: float = 1e-3, data_fraction: float = 1.0):
        if beta < 0:
            raise HarnessError(f"attack 'nad': beta must be >= 0, got {beta}")
        if teacher_epochs < 0 or not float(teacher_epochs).is_integer():
            raise HarnessError(f"attack 'nad': teacher_epochs must be a whole number >= 0, got {teacher_epochs}")
        if lr <= 0:
            raise HarnessError(f"attack 'nad': lr must be > 0, got {lr}")
        self.beta, self.teacher_epochs = float(beta), int(teacher_epochs)
        self.lr, self.data_fraction = float(lr), float(data_fraction)

    def params(self) -> dict:
        return {"beta": self.beta, "teacher_epochs": self.teacher_epochs, "lr": self.lr,
                "data_fraction": self.data_fraction}

    def budget(self, kit, strength):
        return Budget(images=subset_size(kit, self.data_fraction), labels=True)

    def apply(self, model, kit, strength, seed):
        epochs = int(self.check_strength(strength))
        data = attacker_subset(kit, self.data_fraction, seed)
        batch_size = kit.preset.train.batch_size
        student = copy.deepcopy(model)
        names = attention_layers(student, data.images[:1])  # refuses an unsuitable model even at 0 epochs
        if epochs == 0:
            return student.eval()  # no student step: a teacher would have nothing to teach

        teacher = copy.deepcopy(model)
        teacher_config = TrainConfig(epochs=self.teacher_epochs, batch_size=batch_size, lr=self.lr)
        fit(teacher, data.images, data.masks, teacher_config, seed + _TEACHER_SALT, desc="NAD teacher")
        targets = _teacher_maps(teacher, names, data.images, kit.preset.eval_batch_size)
        del teacher

        capture = _Capture(student, names)

        def loss(net, images, masks, index):
            value = F.binary_cross_entropy_with_logits(net(images), masks)
            distance = sum((latest - target[index].to(latest.device)).norm(dim=1).mean()
                           for latest, target in zip(capture.maps, targets))
            return value + self.beta * distance

        try:
            fit(student, data.images, data.masks, TrainConfig(epochs=epochs, batch_size=batch_size, lr=self.lr), seed,
                desc="NAD student", loss=loss)
        finally:
            capture.remove()
        return student.eval()
