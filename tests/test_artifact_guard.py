"""The explainer-artifact guard on small hand-made models (fast); the tiny-preset check is in tests/claims."""

import numpy as np
import pytest
import torch
from torch import nn

from harness.artifact_guard import artifact_check, distance, save_figure
from harness.registry import EXPLAINERS

SIDE = 16


class _PixelWeighted(nn.Module):
    """Logit = a seeded pixel weighting of the image, minus 2 (so every pixel is background):
    two seeds give two models that depend on different pixels."""

    def __init__(self, seed: int):
        super().__init__()
        self.weights = nn.Parameter(torch.randn(1, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(seed)))

    def forward(self, x):
        score = (x * self.weights).mean(dim=(1, 2, 3))
        return (score - 2.0)[:, None, None, None].expand(-1, 1, SIDE, SIDE)


@pytest.fixture(scope="module")
def setting():
    image = torch.rand(3, SIDE, SIDE, generator=torch.Generator().manual_seed(9))
    return _PixelWeighted(0), {f"null{i}": _PixelWeighted(i) for i in (1, 2, 3)}, image


@pytest.mark.parametrize("explainer", ["lime", "captum-lime", "kernelshap", "captum-occlusion"])
def test_model_dependent_explainers_are_not_flagged(setting, explainer):
    marked, nulls, image = setting
    result = artifact_check(explainer, marked, nulls, image, mask="grid:4", n_samples=400)
    assert not result.flagged, result.line()
    assert result.between_models > result.within_model


def test_the_public_codes_explainer_is_flagged(setting):
    marked, nulls, image = setting
    result = artifact_check("reference-grid-lime", marked, nulls, image, mask="grid:4", n_samples=400)
    assert result.flagged and result.between_models == 0.0, result.line()
    for picture in result.nulls.values():
        np.testing.assert_array_equal(picture, result.marked)


def test_distance_ignores_scale_and_sees_direction():
    assert distance(np.array([1.0, 2.0]), np.array([2.0, 4.0])) == 0.0
    assert distance(np.zeros(2), np.zeros(2)) == 0.0
    assert distance(np.array([1.0, 0.0]), np.array([-1.0, 0.0])) == 2.0


def test_the_check_needs_null_models(setting):
    marked, _, image = setting
    with pytest.raises(ValueError, match="null model"):
        artifact_check("lime", marked, {}, image, mask="grid:4", n_samples=50)


def test_figure_is_written_atomically(tmp_path, setting):
    marked, nulls, image = setting
    result = artifact_check("lime", marked, nulls, image, mask="grid:4", n_samples=100)
    path = tmp_path / "fig" / "guard.png"
    save_figure([("lime", result.marked, result.nulls["null1"])], "null1", path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not list(path.parent.glob("*.tmp.png"))


def test_every_registered_explainer_declares_whether_it_is_model_dependent():
    flags = {name: EXPLAINERS.get(name).model_dependent_by_design for name in EXPLAINERS.names()}
    assert flags["reference-grid-lime"] is False and sum(not f for f in flags.values()) == 1
