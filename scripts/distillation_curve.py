"""Student utility against the thief's image count: does distillation give the thief a usable model?

For each run seed, the StealthMark teacher of the default job (trained, or taken from the cache, by
``harness run --attack none``) is distilled into a fresh student of its own architecture on N of the
thief's images (``harness.data.thief_split``: the attacker split, then fresh images no owner, test set
or null sees), with ``distill-soft``'s recipe. The epochs shrink as N grows so that every point
costs about the same optimiser steps: the curve shows what more data buys, not more compute.
The verdict on such a student, against attacked nulls, is a ``harness run --attack distill-soft
--attacker-images N`` cell (``scripts/regenerate_results.sh thief-images``).

    .venv/bin/python scripts/distillation_curve.py --results WORK [--seeds 0,1,2] [--points 100:150,...]

Writes WORK/distillation_curve.csv (one row per seed and point, stamped with the commit) and prints
the mean over seeds with a Student-t 95% interval.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attacks._distillation import DistillationAttack  # noqa: E402
from harness.attack import AttackerKit  # noqa: E402
from harness.checkpoints import load_model  # noqa: E402
from harness.data import make_splits, thief_split  # noqa: E402
from harness.presets import get_preset  # noqa: E402
from harness.records import versions  # noqa: E402
from harness.registry import ATTACKS  # noqa: E402
from harness.report.seeds import mean_interval  # noqa: E402
from harness.runner import benchmark  # noqa: E402
from harness.scoring import dice  # noqa: E402
from harness.segmenter import predict_proba  # noqa: E402
from harness.training import DEFAULT_THREADS, seed_everything, torch_threads  # noqa: E402

# (thief images, student epochs): about a thousand Adam steps each at tiny's batch of 16.
DEFAULT_POINTS = "100:150,300:50,1000:16,3000:5"
MARK, MODEL, DATASET, PRESET = "stealthmark", "basic-unet", "synthetic-polyp", "tiny"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", required=True, help="results folder whose cache holds (or will hold) the teachers")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--points", default=DEFAULT_POINTS, help="IMAGES:EPOCHS,... (default %(default)s)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    points = [tuple(int(x) for x in p.split(":")) for p in args.points.split(",")]
    preset = get_preset(PRESET)
    distiller: DistillationAttack = ATTACKS.get("distill-soft")()
    rows = []
    for seed in seeds:
        outcome = benchmark(watermarks=[MARK], attack="none", seed=seed, results=args.results, log=lambda m: None)
        teacher = load_model(MODEL, PRESET, outcome.checkpoints[MARK])
        splits = make_splits(DATASET, preset, seed)
        teacher_dice = dice(predict_proba(teacher, splits.test.images), splits.test.masks).mean().item()
        for images, epochs in points:
            kit = AttackerKit(thief_split(splits, DATASET, preset, seed, images), MODEL, preset)
            with torch_threads(DEFAULT_THREADS):
                seed_everything(seed)
                tic = time.perf_counter()
                student = distiller.apply(teacher, kit, epochs, seed)
                seconds = time.perf_counter() - tic
            student_dice = dice(predict_proba(student, splits.test.images), splits.test.masks).mean().item()
            steps = epochs * -(-images // preset.train.batch_size)
            rows.append({"watermark": MARK, "model": MODEL, "preset": PRESET, "seed": seed, "thief_images": images,
                         "epochs": epochs, "steps": steps, "teacher_dice": round(teacher_dice, 4),
                         "student_dice": round(student_dice, 4), "dice_gap": round(teacher_dice - student_dice, 4),
                         "seconds": round(seconds, 1), "commit": versions()["git_commit"]})
            print(f"seed {seed}  {images:5d} images  {epochs:3d} epochs  teacher {teacher_dice:.3f}  "
                  f"student {student_dice:.3f}  ({seconds:.0f} s)", flush=True)
    out = Path(args.results) / "distillation_curve.csv"
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print("\n| thief images | epochs | steps | teacher Dice | student Dice | gap (teacher - student) | seeds |")
    print("|---|---|---|---|---|---|---|")
    for images, epochs in points:
        mine = [r for r in rows if r["thief_images"] == images]
        cells = [mean_interval([r[k] for r in mine]) for k in ("teacher_dice", "student_dice", "dice_gap")]
        shown = [f"{m:.3f} [{lo:.3f}, {hi:.3f}]" for m, lo, hi in cells]
        print(f"| {images} | {epochs} | {mine[0]['steps']} | {' | '.join(shown)} | {len(mine)} |")
    print(f"\nwritten: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
