"""Model extraction by distillation: the core that the ``distill-*`` attacks share.

The leading underscore keeps the registry from importing this file as a plugin.

The thief treats the stolen model as a black box: they send their own images
and train a freshly initialised student on what comes back. Their own masks
are deliberately not used, so a student's utility measures what the teacher
leaks and nothing else. Whether the teacher's soft probabilities or only
thresholded masks come back decides whether a mark that lives in the soft
outputs (StealthMark's background floor) can survive at all.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness.attack import Attack, AttackerKit, Budget
from harness.presets import TrainConfig
from harness.segmenter import Segmenter, build_model, predict_proba
from harness.training import fit, seed_everything


def distill(teacher: nn.Module, kit: AttackerKit, student_name: str, epochs: int, lr: float, hard: bool,
            seed: int) -> Segmenter:
    """A new ``student_name`` network trained to imitate ``teacher`` on the attacker's images.

    Targets are the teacher's sigmoid probabilities, or its thresholded masks
    when ``hard`` (what a deployed API that returns masks gives away). The
    teacher is only queried, in eval mode and without gradients, so it is left
    bit-identical. The student uses the run's batch size; ``seed`` fixes both
    its initialisation and its minibatch order, and the global RNG is left as it was.
    """
    probs = predict_proba(teacher, kit.data.images, kit.preset.eval_batch_size)
    targets = (probs > 0.5).float() if hard else probs
    # Seeded initialisation without moving the global RNG, so what runs after the attack does not depend on it.
    with torch.random.fork_rng(devices=[]):
        seed_everything(seed)
        student = build_model(student_name, kit.preset.name)
    config = TrainConfig(epochs=int(epochs), batch_size=kit.preset.train.batch_size, lr=lr)
    return fit(student, kit.data.images, targets, config, seed, desc=f"distill {student_name}",
               loss=flipping_loss(seed))


def flipping_loss(seed: int):
    """BCE-with-logits on minibatches in which a seeded random half of the (image, target) pairs is mirrored.

    A thief has few images of their own (100 at tiny); mirroring them lifted a
    same-architecture student from Dice 0.61 to 0.68 at 150 epochs (teacher
    0.77). The target is mirrored with its image, so the teacher is still
    queried once per image. The generator is separate from ``fit``'s
    minibatch order, so flips and order stay independent of each other.
    """
    generator = torch.Generator().manual_seed(seed + 1)

    def loss(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        flip = (torch.rand(len(images), generator=generator) < 0.5).view(-1, 1, 1, 1)
        images = torch.where(flip, images.flip(-1), images)
        targets = torch.where(flip, targets.flip(-1), targets)
        return F.binary_cross_entropy_with_logits(model(images), targets)

    return loss


class DistillationAttack(Attack):
    """Base of the ``distill-*`` plugins: strength is the student's training epochs.

    A plugin sets ``hard`` (thresholded targets) and ``default_student`` (None:
    the stolen model's own architecture); ``student`` overrides the latter.
    """

    trains = True
    family = "distillation"
    strength_name = "student training epochs"
    strength_range = (1, 1000)
    integer_strength = True
    hard: bool = False
    default_student: str | None = None

    def __init__(self, lr: float | None = None, student: str | None = None):
        self.lr = lr  # None: the run's own training rate
        self.student = student if student is not None else self.default_student

    def params(self) -> dict:
        return {"lr": self.lr, "student": self.student}

    def budget(self, kit, strength):
        # The teacher answers each of the thief's images once; the thief's own masks are never read.
        return Budget(images=len(kit.data), labels=False, queries=len(kit.data))

    def apply(self, model, kit, strength, seed):
        epochs = int(self.check_strength(strength))
        lr = kit.preset.train.lr if self.lr is None else self.lr
        return distill(model, kit, self.student or kit.model_name, epochs, lr, self.hard, seed)
