"""Is an explanation a property of the model, or of the explainer?

The public StealthMark code's "watermark" picture is the same for every model
(``reference-grid-lime``): a certificate read from such an explainer proves
nothing. The guard runs an explainer with the same image, grid, samples and
seed on the watermarked model and on clean null models, and asks whether the
model makes a difference: it flags the explainer when the watermarked model's
explanation is no further from the null models' than two runs of the explainer
on the watermarked model itself (seed s vs seed s+1) are from each other.

Distances are between unit-normalised weight vectors (the scale of a score
says nothing about which patches matter); an all-zero explanation has no
direction and counts as the zero vector.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from harness.errors import HarnessError
from harness.cache import ArtifactCache
from harness.calibration import DEFAULT_LEVEL
from harness.data import make_splits
from harness.explainer import ModelForward
from harness.feature_masks import make_feature_mask
from harness.nulls import null_population, population_spec
from harness.presets import get_preset
from harness.registry import DATASETS, EXPLAINERS, MODELS, find_watermark
from harness.registry import resolve_explainers
from harness.tasks import embedded_model_and_key
from harness.training import DEFAULT_THREADS, torch_threads
from harness.watermark import trigger_from_spec

DEFAULT_MASK = "grid:16"  # the public code's 16 x 16 grid


@dataclass
class GuardResult:
    explainer: str
    flagged: bool  # True: the explanation does not depend on the model
    between_models: float  # mean distance, watermarked vs each null model
    within_model: float  # distance between two seeds on the watermarked model
    distances: dict[str, float]  # per null model
    marked: np.ndarray = field(repr=False)  # (H, W): each pixel shows its feature's weight, watermarked model
    nulls: dict[str, np.ndarray] = field(repr=False, default_factory=dict)  # the same per null model

    def line(self) -> str:
        verdict = "FLAGGED: not model-dependent" if self.flagged else "ok: model-dependent"
        return (f"{self.explainer:<20} {verdict:<30} distance to nulls {self.between_models:.3f} "
                f"vs seed-to-seed {self.within_model:.3f}")


def _unit(weights: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(weights)
    return weights / norm if norm > 0 else np.zeros_like(weights)


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between the unit-normalised weight vectors, in [0, 2].

    >>> distance(np.array([1.0, 0.0]), np.array([3.0, 0.0]))
    0.0
    >>> round(distance(np.array([1.0, 0.0]), np.array([0.0, 1.0])), 3)
    1.414
    """
    return float(np.linalg.norm(_unit(np.ravel(a)) - _unit(np.ravel(b))))


def explain(model: torch.nn.Module, image: torch.Tensor, explainer: str, feature_mask: np.ndarray,
            n_samples: int = 500, seed: int = 0, reduction: str = "background-mean",
            batch_size: int = 64) -> np.ndarray:
    """Weights (P,) of ``explainer`` for ``model`` on ``image`` (3, H, W), one per feature of ``feature_mask``."""
    forward = ModelForward.for_image(model, image, reduction, batch_size)
    return np.asarray(EXPLAINERS.get(explainer)().attribute(
        forward, image.permute(1, 2, 0).numpy(), feature_mask, n_samples=n_samples, batch_size=batch_size,
        seed=seed))


def artifact_check(explainer: str, marked: torch.nn.Module, nulls: dict[str, torch.nn.Module],
                   image: torch.Tensor, mask: str = DEFAULT_MASK, n_samples: int = 500, seed: int = 0,
                   reduction: str = "background-mean") -> GuardResult:
    """Run ``explainer`` on the watermarked model (two seeds) and on each null model; compare.

    ``mask``: the features, e.g. "grid:16" or "slic:50" (``harness.feature_masks``), the same for every model.
    """
    EXPLAINERS.get(explainer)
    if not nulls:
        raise ValueError("the artifact check needs at least one null model")
    feature_mask = make_feature_mask(mask, image.permute(1, 2, 0).numpy())
    kwargs = dict(feature_mask=feature_mask, n_samples=n_samples, reduction=reduction)
    on_marked = explain(marked, image, explainer, seed=seed, **kwargs)
    again = explain(marked, image, explainer, seed=seed + 1, **kwargs)
    on_nulls = {name: explain(model, image, explainer, seed=seed, **kwargs) for name, model in nulls.items()}
    distances = {name: distance(on_marked, weights) for name, weights in on_nulls.items()}
    between, within = float(np.mean(list(distances.values()))), distance(on_marked, again)
    return GuardResult(explainer, flagged=between <= within, between_models=between, within_model=within,
                       distances=distances, marked=on_marked[feature_mask],
                       nulls={name: weights[feature_mask] for name, weights in on_nulls.items()})


def draw_pairs(panels: list[tuple[str, np.ndarray, np.ndarray]], null_name: str):
    """One row per (title, weights on the watermarked model, weights on a null model), side by side.

    Each picture is shown as the procedure reads it: weight > 0 dark (a QR module), as rendered
    by ``qr.render_modules`` for certificates; colour scales are per picture, because only the
    pattern matters. Returns the matplotlib figure (the report draws its gallery with it too).
    """
    import matplotlib  # here, not at the top: only the figure needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 2, figsize=(6, 3 * len(panels)), squeeze=False)
    for row, (title, on_marked, on_null) in enumerate(panels):
        for col, (weights, who) in enumerate(((on_marked, "watermarked model"), (on_null, f"null model {null_name}"))):
            ax = axes[row][col]
            ax.imshow(-np.asarray(weights, float), cmap="gray", interpolation="nearest")
            ax.set_title(f"{title}\n{who}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    return fig


def save_figure(panels: list[tuple[str, np.ndarray, np.ndarray]], null_name: str, path) -> None:
    """``draw_pairs`` written atomically to the PNG ``path``."""
    import matplotlib.pyplot as plt

    fig = draw_pairs(panels, null_name)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def guard(watermark: str = "stealthmark", explainers=("lime", "reference-grid-lime"), model: str = "basic-unet",
          dataset: str = "synthetic-polyp", preset: str = "tiny", seed: int = 0, mask: str = DEFAULT_MASK,
          n_samples: int = 1000, results="results", figure=None, null_seeds=None,
          null_level: float = DEFAULT_LEVEL, log=print):
    """``harness guard``: check each explainer on the watermarked model against the null population,
    and draw the watermark's certificate and each explainer's picture, watermarked next to null.

    Models and keys come from (or go to) ``results``'s cache, exactly as ``run`` makes them.
    Returns (one GuardResult per explainer, the figure's path).
    """
    explainers = resolve_explainers(",".join(explainers))
    wm = find_watermark(watermark)()
    preset_obj = get_preset(preset)
    MODELS.get(model)
    DATASETS.get(dataset)
    if n_samples < 2:
        raise HarnessError(f"samples must be at least 2, got {n_samples}")
    spec = population_spec(preset, model, null_seeds)
    make_feature_mask(mask, np.zeros((preset_obj.image_size, preset_obj.image_size, 3), np.float32))  # fail early
    cache = ArtifactCache(Path(results) / "cache")
    splits = make_splits(dataset, preset_obj, seed)
    nulls = null_population(cache, dataset, preset_obj, seed, spec, log=log)
    with torch_threads(DEFAULT_THREADS):  # as a run trains it: the same cache entry
        marked, key = embedded_model_and_key(cache, wm, model, dataset, preset_obj, seed, splits, nulls, null_level)
    image = trigger_from_spec(key.meta["watermark"]["trigger"]).apply(key.queries().images[:1])[0]
    null_name = next(iter(nulls))
    panels = []
    if hasattr(wm, "reveal_certificate"):
        # The certificate as the decoder reads it: a module is dark where its patch has any weight.
        pictures = []
        for suspect in (marked, nulls[null_name]):
            fired = wm.verify(suspect, key, certify=False).verified
            weights = wm.reveal_certificate(suspect, key, fired=fired, explainer=key.meta["explainer"], seed=seed)
            pictures.append((weights != 0).astype(float))
        panels.append((f"{watermark} QR certificate ({key.meta['explainer']}, gated)", *pictures))
    checked = []
    for name in explainers:
        result = artifact_check(name, marked, nulls, image, mask=mask, n_samples=n_samples, seed=seed)
        checked.append(result)
        panels.append((f"{name}, {mask}, ungated", result.marked, result.nulls[null_name]))
    path = Path(figure) if figure else Path(results) / "figures" / "artifact_guard.png"
    save_figure(panels, null_name, path)
    return checked, path
