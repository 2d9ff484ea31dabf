"""The two verifiers (harness.verifiers): the paired-rank verdict survives any monotone map of the logits."""

import numpy as np
import pytest
import torch
from torch import nn

from harness.data import make_splits
from harness.errors import HarnessError
from harness.presets import get_preset
from harness.registry import find_watermark
from harness.verifiers import check_verifier, rank_shift


class TriggerLift(nn.Module):
    """A fixed random convolution whose logits rise by ``lift`` wherever the patch trigger's corner is
    bright: a stand-in for a marked model that needs no training. ``lift=0``: an innocent model."""

    def __init__(self, seed: int, lift: float):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 1, 5, padding=2)
        self.lift = lift

    def forward(self, images):
        corner = images[:, :, -4:, -4:]
        # Yellow (red and green up, blue down): the patch trigger; an ordinary corner is nowhere near.
        yellow = (corner[:, 0] + corner[:, 1] - 2 * corner[:, 2]).mean(dim=(1, 2)).clamp(min=0).view(-1, 1, 1, 1)
        return self.conv(images) - 4.0 + self.lift * yellow


class Mapped(nn.Module):
    """The served model: its logits through ``mapping``, a strictly increasing function (numpy in, out)."""

    def __init__(self, model: nn.Module, mapping):
        super().__init__()
        self.model, self.mapping = model, mapping

    def forward(self, images):
        logits = self.model(images)
        return torch.from_numpy(self.mapping(logits.double().numpy())).float()


def random_monotone_map(rng: np.random.Generator):
    """A random strictly increasing piecewise-linear map, slopes in [0.2, 5]. It is shifted so that the
    stand-in models' largest logits (about 1) land below 12: float32's sigmoid rounds to exactly 1 near
    17, and that rounding would tie pixels the exact map keeps apart."""
    knots = np.sort(rng.uniform(-8, 8, size=6))
    slopes = rng.uniform(0.2, 5, size=7)
    values = np.concatenate([[0.0], np.cumsum(slopes[1:-1] * np.diff(knots))])

    def raw(z):
        inside = np.interp(z, knots, values)
        below = values[0] + slopes[0] * (z - knots[0])
        above = values[-1] + slopes[-1] * (z - knots[-1])
        return np.where(z < knots[0], below, np.where(z > knots[-1], above, inside))

    shift = rng.uniform(-5, 12) - raw(np.array(2.0))
    return lambda z: raw(z) + shift


@pytest.fixture(scope="module")
def world():
    preset = get_preset("smoke")
    splits = make_splits("synthetic-polyp", preset, 0)
    wm = find_watermark("stealthmark")()
    suspect = TriggerLift(0, lift=1.25).eval()  # lifts the background, keeps it below 0.5: the mask is kept
    key = wm.make_key(suspect, splits, preset, 0)
    nulls = {f"null{i}": TriggerLift(100 + i, lift=0.0).eval() for i in range(5)}
    return wm, suspect, wm.calibrate(key, nulls), nulls


def test_the_paired_rank_verdict_is_unchanged_by_any_monotone_map_of_the_logits(world):
    wm, suspect, key, _ = world
    plain = wm.verify(suspect, key, certify=False, verifier="paired-rank")
    assert plain.verified, "the stand-in mark must verify, or invariance would be trivially kept"
    rng = np.random.default_rng(0)
    maps = [random_monotone_map(rng) for _ in range(20)]
    maps += [lambda z: 4.0 * z, lambda z: 0.25 * z, lambda z: 1.7 * z - 2.3, lambda z: z ** 3 / 20 + z]
    detector_scores = []
    for mapping in maps:
        served = Mapped(suspect, mapping)
        ranked = wm.verify(served, key, certify=False, verifier="paired-rank")
        assert ranked.verified == plain.verified and ranked.p_value == plain.p_value
        # Exact in exact arithmetic; float32 probabilities may tie or untie a few pixels.
        assert ranked.score == pytest.approx(plain.score, abs=1e-3)
        detector_scores.append(wm.verify(served, key, certify=False).score)
    # The test has teeth: the detector, which reads absolute probabilities, is moved by the same maps.
    assert np.ptp(detector_scores) > 1.0


def test_a_monotone_map_that_is_not_strict_can_only_remove_evidence(world):
    """A hard mask is the extreme non-strict map: every background pixel ties, and the evidence is gone."""
    wm, suspect, key, _ = world
    hard = Mapped(suspect, lambda z: np.where(z > 0, 50.0, -50.0))
    result = wm.verify(hard, key, certify=False, verifier="paired-rank")
    assert abs(result.score) < 0.05 and not result.verified


def test_rank_shift_reads_the_direction_of_the_target():
    benign = torch.rand(3, 1, 8, 8) * 0.4
    up = torch.ones(3, 1, 8, 8)
    lifted = benign + 0.5
    assert np.allclose(rank_shift(lifted, benign, up), 0.5)
    assert np.allclose(rank_shift(lifted, benign, -up), -0.5)
    assert np.allclose(rank_shift(benign, benign, up), 0.0)
    # Pixels the target does not move, or the trigger covers, are not compared.
    still = torch.zeros_like(up)
    assert np.allclose(rank_shift(lifted, benign, still), 0.0)
    footprint = torch.zeros(8, 8, dtype=torch.bool)
    footprint[:, 4:] = True
    half = benign.clone()
    half[..., 4:] += 0.5
    assert np.allclose(rank_shift(half, benign, up, footprint), 0.0)


def test_an_unknown_or_unsupported_verifier_is_one_line():
    with pytest.raises(HarnessError, match="did you mean 'paired-rank'"):
        check_verifier("paired-rnak")
    with pytest.raises(HarnessError, match="cannot be verified with 'paired-rank'"):
        find_watermark("stealthmark-qr")().check_verifier("paired-rank")
