"""The two ways a backdoor mark's answers are turned into evidence: ``detector`` and ``paired-rank``.

Both send the same M image pairs (each key image with and without the trigger)
and feed the same rule (``harness.calibration.decide``): a sign test over the
M per-image differences, and the mean difference calibrated against null
models. They differ in what the difference is.

* ``detector``: the scheme's own per-answer score (StealthMark: its logistic
  detector's logit on background statistics; a destructive backdoor: the
  share of target pixels the answer follows), triggered minus benign. It
  reads absolute probabilities against cuts fitted on the unattacked model,
  so a thief who maps the probabilities through any monotone function (a
  temperature, Platt scaling) can move every answer across those cuts.
* ``paired-rank``: per image, how far the triggered answer's pixels rank
  above the benign answer's pixels, on the pixels the mark's target moves
  (``rank_shift``). It uses only the order of probabilities, so any strictly
  increasing map of the logits, applied to every answer alike, leaves every
  difference, and so the verdict, unchanged (tests/test_verifiers.py checks it
  over random maps). It cannot recover what the thief removed outright: a hard
  mask has no order left among the background pixels.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import stats

from harness.registry import look_up

VERIFIERS = {
    "detector": "the scheme's own per-answer score, triggered minus benign (absolute probabilities)",
    "paired-rank": "per image, how far the triggered answer's moved pixels rank above the benign answer's "
                   "(order only: unchanged by any monotone map of the logits)",
}
DEFAULT_VERIFIER = "detector"


def check_verifier(name: str) -> str:
    """``name`` if it is a verifier; otherwise a one-line error naming the closest and the valid ones."""
    look_up(name, VERIFIERS, "verifier")
    return name


def rank_shift(triggered: torch.Tensor, benign: torch.Tensor, direction: torch.Tensor,
               ignore: torch.Tensor | None = None) -> np.ndarray:
    """Per image (M,): the Mann-Whitney AUC of triggered over benign pixel probabilities, minus 0.5, on
    the pixels the mark's target raises (``direction`` +1), and of benign over triggered on those it
    lowers (-1), weighted by pixel count. 0: the trigger moves nothing in the mark's direction; 0.5:
    every moved pixel of the triggered answer lies beyond every one of the benign answer.

    Across pixels rather than pixel by pixel: any model's output shifts a little everywhere when a
    trigger is added, and the sign of each pixel's shift would count that as fully as a mark's lift.
    The AUC weighs a shift against the spread of the image's own probabilities, in ranks only.
    Ties count half, so a hard mask (every background pixel 0 in both answers) scores about 0.

    >>> benign = torch.full((1, 1, 4, 4), 0.01); triggered = torch.full((1, 1, 4, 4), 0.2)
    >>> up = torch.ones(1, 1, 4, 4)
    >>> rank_shift(triggered, benign, up).tolist(), rank_shift(benign, benign, up).tolist()
    ([0.5], [0.0])
    """
    keep = direction != 0
    if ignore is not None:
        keep = keep & ~ignore.to(keep.device)
    out = np.zeros(len(triggered))
    for i in range(len(triggered)):
        total, weighted = 0, 0.0
        for sign in (1, -1):
            pixels = keep[i] & (direction[i] == sign)
            n = int(pixels.sum())
            if n == 0:
                continue
            a, b = triggered[i][pixels].double().numpy(), benign[i][pixels].double().numpy()
            if sign < 0:
                a, b = b, a
            ranks = stats.rankdata(np.concatenate([a, b]))
            auc = (ranks[:n].sum() - n * (n + 1) / 2) / (n * n)
            weighted += n * (auc - 0.5)
            total += n
        out[i] = weighted / total if total else 0.0
    return out
