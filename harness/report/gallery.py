"""The report's gallery: QR certificates and attribution maps, watermarked model next to a null model.

It reads the cached models and keys (``results/cache``) and never trains: when an artifact is missing
the mark gets a visible note in the report instead of a picture.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

import numpy as np

from harness.report.data import fmt
from harness.report.figures import Figure, plot_gallery, png


class _NotCached(Exception):
    """An artifact the gallery needs is not in the cache (the report never trains)."""


def _read_only_cache(root: Path):
    from harness.cache import ArtifactCache
    from harness.watermark import Key

    class ReadOnlyCache(ArtifactCache):
        def model(self, kind, spec, model, train):
            data, manifest = self._paths(kind, spec)
            if not self._intact(data, manifest):
                raise _NotCached(f"no cached {kind} model")
            return super().model(kind, spec, model, train)

        def key(self, spec, build):
            data, manifest = self._paths("keys", spec)
            if not self._intact(data.with_suffix(".npz"), manifest):
                raise _NotCached("no cached key")
            return Key.load(data.with_suffix(".npz"))

    return ReadOnlyCache(root)


# Innocents trained on the owner's own images only join the calibration; the watermarked model and the
# independent null pictured beside it are those of the population without them.
_SAME_DATA_SUFFIX = re.compile(r" \+ \d+ same-data$")


def _parse_nulls(label: str):
    """'10x basic-unet @ 0.05' -> (10, 'basic-unet', 0.05), with or without a ' + 5 same-data' suffix;
    a label of the older, mixed-architecture populations ('5x basic-unet,unet @ 0.05') is not one this
    harness can rebuild."""
    match = re.fullmatch(r"\s*(\d+)x ([^\s,]+) @ (\S+)\s*", _SAME_DATA_SUFFIX.sub("", label or ""))
    if not match:
        raise _NotCached(f"null population label {label!r} not understood")
    return int(match[1]), match[2], float(match[3])


@contextlib.contextmanager
def _threads_of_the_record(results: Path, row: dict):
    """Run at the torch thread count the mark's record was computed at: it is part of a trained
    model's cache key (it orders float sums), so any other count would find nothing cached."""
    import torch

    from harness.executors import DEFAULT_THREADS
    from harness.records import RUNS_DIR

    try:
        record = json.loads((results / RUNS_DIR / f"{row['run_id']}.json").read_text())
        wanted = int(record["versions"]["torch_threads"])
    except (OSError, ValueError, KeyError, TypeError):
        wanted = DEFAULT_THREADS
    before = torch.get_num_threads()
    torch.set_num_threads(wanted)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _gallery_panels(results: Path, row: dict, n_samples: int) -> tuple[list[tuple[str, np.ndarray, np.ndarray]], str]:
    """(title, picture on the watermarked model, picture on a null model) for one mark, from the cache only."""
    from harness.artifact_guard import DEFAULT_MASK, explain
    from harness.feature_masks import make_feature_mask
    from harness.nulls import members, population_spec, train_null
    from harness.presets import get_preset
    from harness.registry import find_watermark
    from harness.tasks import embedded_model_and_key
    from harness.watermark import trigger_from_spec

    cache = _read_only_cache(results / "cache")
    seed = int(row["seed"])
    preset = get_preset(row["preset"])
    count, model, level = _parse_nulls(row["nulls"])
    spec = population_spec(row["preset"], model, count)
    chosen = members(spec, seed)
    names = {member.name: None for member in chosen}  # the key's spec needs the names only
    null_name = chosen[0].name
    wm = find_watermark(row["watermark"])(trigger=row["trigger"])
    # splits=None: only a training run would use them, and the read-only cache never trains.
    marked, key = embedded_model_and_key(cache, wm, row["model"], row["dataset"], preset, seed, None, names, level)
    null = train_null(cache, next(m for m in chosen if m.name == null_name), row["dataset"], preset)
    panels = []
    explainer = key.meta.get("explainer") or row["explainer"]
    if hasattr(wm, "reveal_certificate"):
        pictures = []
        for suspect in (marked, null):
            fired = wm.verify(suspect, key, certify=False).verified
            weights = wm.reveal_certificate(suspect, key, fired=fired, explainer=explainer, seed=seed)
            pictures.append((np.asarray(weights) != 0).astype(float))
        panels.append((f"QR certificate ({explainer}, gated)", *pictures))
    image = trigger_from_spec(key.meta["watermark"]["trigger"]).apply(key.queries().images[:1])[0]
    feature_mask = make_feature_mask(DEFAULT_MASK, image.permute(1, 2, 0).numpy())
    maps = [explain(m, image, "lime", feature_mask, n_samples=n_samples, seed=seed)[feature_mask]
            for m in (marked, null)]
    panels.append((f"lime attribution, {DEFAULT_MASK}, ungated", *maps))
    return panels, null_name


def gallery_figures(results: Path, table: list[dict], n_samples: int, log=print) -> tuple[list[Figure], list[str]]:
    """One gallery figure per mark whose models and key are cached; notes for the marks that are not."""
    figures, notes = [], []
    seen = {}
    for row in table:
        if row.get("role") == "fingerprint":
            continue  # nothing embedded, no trigger: no certificate or attribution to picture
        nulls = _SAME_DATA_SUFFIX.sub("", row.get("nulls") or "")  # same model, same picture: shown once
        mark = (*(row.get(f) for f in ("watermark", "trigger", "model", "dataset", "preset", "seed")), nulls)
        seen.setdefault(mark, row)
    if not seen:
        return figures, ["No marks in the leaderboard."]
    missing = []
    for row in seen.values():
        label = f"{row['watermark']} ({row['trigger']} trigger, {row['model']}, {row['dataset']}, {row['preset']}, " \
                f"seed {fmt(row['seed'])})"
        try:
            with _threads_of_the_record(results, row):
                panels, null_name = _gallery_panels(results, row, n_samples)
        except _NotCached as exc:
            missing.append(f"{label}: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001 - one mark's picture must not sink the whole report
            notes.append(f"Gallery unavailable for {label}: {type(exc).__name__}: {exc}")
            continue
        slug = re.sub(r"[^a-z0-9]+", "-", f"{row['watermark']}-{row['trigger']}-{row['model']}-{row['dataset']}-"
                                           f"{row['preset']}-seed{fmt(row['seed'])}".lower()).strip("-")
        figures.append(Figure(f"gallery-{slug}.png", f"Gallery: {label}",
                              f"{label}: certificate and attribution map on the watermarked model (left) and on "
                              f"null model {null_name} (right).",
                              png(plot_gallery(label, panels, null_name)), "gallery"))
        log(f"gallery: {label}")
    if missing:
        notes.append(f"Gallery unavailable for {len(missing)} of {len(seen)} marks: their models or keys are not in "
                     f"{results / 'cache'} (the report never trains; `harness run` or `harness guard` fills the "
                     f"cache). " + "; ".join(missing))
    return figures, notes
