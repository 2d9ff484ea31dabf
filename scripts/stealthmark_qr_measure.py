"""StealthMark-QR on a laptop (issue 18): embed, read with every perturbation explainer, against nulls.

For each owner seed: the owner's clean model (cached), owner A's mark embedded in it (timed), its Dice
cost on the test split, and what each of the five model-dependent explainers reads from it (bit
accuracy, the payload decoded, the best message's z). At the first seed, owner B's mark is embedded in a
second copy and each owner's key reads both models (the two-owner table). Every null model (the seed's
basic-unet population and a second architecture's) is read with owner A's key under every explainer:
the payloads they decode (none should), and the band of their bit accuracies computed from the nulls
themselves. Writes ``measurements.json`` and the certificate pictures to ``--out`` and prints the tables.

    .venv/bin/python scripts/stealthmark_qr_measure.py --cache CACHE --out results/stealthmark_qr
    .venv/bin/python scripts/stealthmark_qr_measure.py --tables results/stealthmark_qr/measurements.json
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy import stats  # noqa: E402

from harness import qr  # noqa: E402
from harness.cache import ArtifactCache  # noqa: E402
from harness.data import make_splits  # noqa: E402
from harness.measure import utility  # noqa: E402
from harness.nulls import null_population, population_spec, train_clean  # noqa: E402
from harness.presets import get_preset  # noqa: E402
from harness.records import cpu_identity  # noqa: E402
from harness.training import DEFAULT_THREADS, torch_threads  # noqa: E402
from watermarks.stealthmark_qr import StealthMarkQR  # noqa: E402

EXPLAINERS = ("lime", "kernelshap", "captum-lime", "captum-kernelshap", "captum-occlusion")
OWNERS = {"A": ("OWNA", 0), "B": ("OWNB", 1)}  # payload, index of the verification image the trigger goes on


def reading(wm, model, key, explainer) -> dict:
    result = wm.verify(model, key, explainer=explainer)
    return {"bit_accuracy": result.bit_accuracy, "payload_read": result.payload_read, "decoded": result.qr_decoded,
            "best_payload": result.best_payload, "z": result.code_z, "bound": result.code_bound,
            "queries": result.queries, "certificate": result.certificate.tolist()}


def band(values, level=0.99) -> tuple[float, float]:
    """Student-t prediction interval of a new null's value, from the nulls' own mean and spread."""
    values = np.asarray(values, float)
    k = len(values)
    half = stats.t.ppf(0.5 + level / 2, k - 1) * values.std(ddof=1) * np.sqrt(1 + 1 / k)
    return float(values.mean() - half), float(values.mean() + half)


def save_pictures(path: Path, panels: list[tuple[str, np.ndarray, str | None]]) -> None:
    """One row per panel: the soft reading as a grey patch grid, and the decoded payload as a QR code."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 2, figsize=(5, 2.5 * len(panels)))
    for row, (title, certificate, payload) in zip(np.atleast_2d(axes), panels):
        row[0].imshow(np.asarray(certificate), cmap="gray_r")
        row[0].set_title(title, fontsize=7)
        if payload is not None:
            row[1].imshow(qr.render_modules(qr.encode_payload(payload, 1, "H")), cmap="gray", vmin=0, vmax=255)
            row[1].set_title(f"decoded: {payload!r}", fontsize=7)
        else:
            row[1].text(0.5, 0.5, "nothing decoded", ha="center", va="center", fontsize=8)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _cell(r: dict) -> str:
    read = r["payload_read"] or "none"
    return f"{r['bit_accuracy']:.3f} · z {r['z']:.1f} · {read}"


def print_tables(record: dict) -> None:
    """The Markdown tables of docs/stealthmark.md, from a measurements.json."""
    bound = next(iter(next(iter(record["owners"].values()))["readings"].values()))["bound"]
    print(f"Marked models (cell: bit accuracy · best message's z, decodes at >= {bound:.2f} · payload read):\n")
    print("| model | embedding | Dice cost | " + " | ".join(EXPLAINERS) + " |")
    print("|---" * (3 + len(EXPLAINERS)) + "|")
    for name, entry in record["owners"].items():
        print(f"| owner {name} ({entry['payload']}) | {entry['embed_seconds']:.0f} s | {entry['harm_dice_drop']:+.4f} | "
              + " | ".join(_cell(entry["readings"][e]) for e in EXPLAINERS) + " |")
    owner_a = [v for k, v in record["owners"].items() if k.startswith("A-")]
    harms = np.array([v["harm_dice_drop"] for v in owner_a])
    half = stats.t.ppf(0.975, len(harms) - 1) * harms.std(ddof=1) / np.sqrt(len(harms))
    times = [v["embed_seconds"] for v in record["owners"].values()]
    print(f"\nOwner A over {len(harms)} seeds: Dice cost {harms.mean():+.4f} (95% t interval "
          f"[{harms.mean() - half:+.4f}, {harms.mean() + half:+.4f}]); embedding {min(times):.0f}-{max(times):.0f} s "
          f"on {record['threads']} threads; explainers decoding per model: "
          + ", ".join(f"{k} {sum(r['decoded'] for r in v['readings'].values())}/5" for k, v in record["owners"].items()))
    print("\nTwo owners (seed 0; cell as above):\n")
    print("| key | model | " + " | ".join(EXPLAINERS) + " |")
    print("|---" * (2 + len(EXPLAINERS)) + "|")
    for cell, readings in record["two_owners"].items():
        key_owner, model_owner = cell.split()[1], cell.split()[-1]
        print(f"| {key_owner} | {model_owner} | " + " | ".join(_cell(readings[e]) for e in EXPLAINERS) + " |")
    archs = sorted({name.split(":")[0] for name in record["nulls"]})
    counts = {a: sum(name.startswith(a + ":") for name in record["nulls"]) for a in archs}
    print(f"\nNull models read with owner A's seed-0 key ({', '.join(f'{counts[a]} {a}' for a in archs)}); the band "
          "is the nulls' own 99% Student-t prediction interval; 'outside' counts nulls outside the band of the others:\n")
    print("| explainer | null bit accuracy mean ± sd | min-max | 99% band | outside (leave one out) | "
          "payloads decoded | highest z |")
    print("|---|---|---|---|---|---|---|")
    for e in EXPLAINERS:
        b = record["null_band"][e]
        n = len(record["nulls"])
        print(f"| {e} | {b['mean']:.3f} ± {b['sd']:.3f} | {b['min']:.3f}-{b['max']:.3f} | {b['low']:.3f}-{b['high']:.3f} | "
              f"{b['outside_leave_one_out']}/{n} | {b['decoded']}/{n} | {b['max_z']:.2f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tables", metavar="MEASUREMENTS_JSON", help="only print the tables of a measurement")
    parser.add_argument("--cache")
    parser.add_argument("--out", default="results/stealthmark_qr")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--other-arch", default="segresnet")
    parser.add_argument("--other-nulls", type=int, default=5)
    parser.add_argument("--nulls", type=int, default=None, help="basic-unet nulls (default: the preset's)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.tables:
        print_tables(json.loads(Path(args.tables).read_text()))
        return 0
    if not args.cache:
        parser.error("--cache is required to measure")
    torch.set_num_threads(args.threads)  # embedding and reading; training of clean models and nulls uses 1

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    preset = get_preset("tiny")
    cache = ArtifactCache(args.cache)
    seeds = [int(s) for s in args.seeds.split(",")]
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True).stdout.strip())
    record = {"commit": commit, "dirty_tree": dirty, "cpu": cpu_identity(), "torch": torch.__version__,
              "threads": args.threads, "preset": "tiny", "architecture": "basic-unet",
              "watermark": StealthMarkQR(payload="OWNA").params(), "owners": {}, "nulls": {}}
    keys = {}
    for seed in seeds:
        splits = make_splits("synthetic-polyp", preset, seed)
        with torch_threads(DEFAULT_THREADS):  # as a run trains it: the same cache entry
            clean = train_clean(cache, "basic-unet", "synthetic-polyp", preset, seed, splits.owner_train, "clean")
        clean_dice = utility(clean, splits.test, 64)[0]["dice"]
        for owner, (payload, index) in OWNERS.items():
            if owner == "B" and seed != seeds[0]:
                continue
            wm = StealthMarkQR(payload=payload, trigger_index=index)
            model = wm.embed(copy.deepcopy(clean), splits, preset, seed, clean=clean)
            key = wm.make_key(model, splits, preset, seed)
            dice = utility(model, splits.test, 64)[0]["dice"]
            entry = {"seed": seed, "payload": payload, "embed_seconds": wm.embed_seconds,
                     "clean_dice": clean_dice, "harm_dice_drop": clean_dice - dice,
                     "readings": {e: reading(wm, model, key, e) for e in EXPLAINERS}}
            record["owners"][f"{owner}-seed{seed}"] = entry
            keys[(owner, seed)] = (wm, model, key)
            decoded = [e for e, r in entry["readings"].items() if r["decoded"]]
            print(f"owner {owner} seed {seed}: embedded in {wm.embed_seconds:.0f} s, harm {entry['harm_dice_drop']:+.4f}, "
                  f"decodes with {len(decoded)}/5: " + ", ".join(f"{e} {r['bit_accuracy']:.3f} z {r['z']:.1f} "
                                                                 f"{r['payload_read']!r}" for e, r in entry["readings"].items()),
                  flush=True)
    # two owners: each key reads each owner's model (seed 0's copies)
    first = seeds[0]
    record["two_owners"] = {}
    for key_owner in OWNERS:
        wm, _, key = keys[(key_owner, first)]
        for model_owner in OWNERS:
            model = keys[(model_owner, first)][1]
            record["two_owners"][f"key {key_owner} on model {model_owner}"] = {
                e: reading(wm, model, key, e) for e in EXPLAINERS}
    # nulls, read with owner A's key of the first seed
    wm, _, key = keys[("A", first)]
    populations = {"basic-unet": population_spec("tiny", "basic-unet", args.nulls),
                   args.other_arch: population_spec("tiny", args.other_arch, args.other_nulls)}
    for arch, spec in populations.items():
        tic = time.perf_counter()
        nulls = null_population(cache, "synthetic-polyp", preset, first, spec, log=lambda m: print(m, flush=True))
        for name, model in nulls.items():
            record["nulls"][f"{arch}:{name}"] = {e: reading(wm, model, key, e) for e in EXPLAINERS}
        print(f"{arch}: {len(nulls)} nulls read in {time.perf_counter() - tic:.0f} s", flush=True)
    record["null_band"] = {}
    for e in EXPLAINERS:
        accuracies = [r[e]["bit_accuracy"] for r in record["nulls"].values()]
        low, high = band(accuracies)
        record["null_band"][e] = {"mean": float(np.mean(accuracies)), "sd": float(np.std(accuracies, ddof=1)),
                                  "low": low, "high": high, "min": min(accuracies), "max": max(accuracies),
                                  "decoded": sum(r[e]["payload_read"] is not None for r in record["nulls"].values()),
                                  "max_z": max(r[e]["z"] for r in record["nulls"].values()),
                                  # leave one out: each null against the band of the others
                                  "outside_leave_one_out": sum(not band(accuracies[:i] + accuracies[i + 1:])[0]
                                                               <= a <= band(accuracies[:i] + accuracies[i + 1:])[1]
                                                               for i, a in enumerate(accuracies))}
    null_name = next(iter(record["nulls"]))
    save_pictures(out / "certificates.png", [
        (f"owner A, seed {first}, lime", record["owners"][f"A-seed{first}"]["readings"]["lime"]["certificate"],
         record["owners"][f"A-seed{first}"]["readings"]["lime"]["payload_read"]),
        (f"owner B, seed {first}, lime", record["owners"][f"B-seed{first}"]["readings"]["lime"]["certificate"],
         record["owners"][f"B-seed{first}"]["readings"]["lime"]["payload_read"]),
        (f"null {null_name}, lime, key A", record["nulls"][null_name]["lime"]["certificate"],
         record["nulls"][null_name]["lime"]["payload_read"])])
    (out / "measurements.json").write_text(json.dumps(record, indent=1))
    print(f"wrote {out / 'measurements.json'} and {out / 'certificates.png'}\n")
    print_tables(record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
