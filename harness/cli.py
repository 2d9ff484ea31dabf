"""``python -m harness``: a thin command line over ``harness.runner.benchmark`` and friends.

Bad input (a name, a number, a file) ends with one line on stderr and exit
status 2, before anything is written.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from harness.errors import HarnessError

VERBS = ("run", "grid", "report", "nulls", "guard", "list", "leaderboard", "verify", "bench")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, status 2, like every other input error
        raise HarnessError(f"{self.prog}: {message}")


def _csv(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return items


def _floats(text: str) -> list[float]:
    try:
        return [float(t) for t in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _null_options(parser, level: bool = True) -> None:
    parser.add_argument("--null-seeds", type=int, default=None,
                        help="null models (of the suspect's architecture) that calibrate each verdict "
                             "(default: the preset's, 10 at tiny)")
    if level:
        parser.add_argument("--null-level", type=float, default=0.05,
                            help="false-accusation level of the calibrated verdict (default 0.05)")


def _attack_strengths(text: str) -> list[tuple[str, float]]:
    out = []
    for item in _csv(text):
        name, sep, strength = item.partition(":")
        try:
            out.append((name.strip(), float(strength)))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected NAME:STRENGTH, got {item!r}") from None
        if not sep:
            raise argparse.ArgumentTypeError(f"expected NAME:STRENGTH, got {item!r}")
    return out


def _option(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def _ints(text: str) -> list[int]:
    try:
        return [int(t) for t in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None


def _execution_options(parser, defaults_from_file: bool = False) -> None:
    parser.add_argument("--executor", default="local", choices=["local", "dask"],
                        help="local: worker processes on this machine (default); dask: a Dask distributed cluster")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes, one task each at a time: local default one per core (1: in this "
                             "process); dask: start a local cluster of this many")
    parser.add_argument("--scheduler", default=None,
                        help="dask: address of a running scheduler, e.g. tcp://10.0.0.5:8786 (shared filesystem)")
    parser.add_argument("--device", default=None if defaults_from_file else "cpu",
                        help="auto, cpu, cuda or cuda:N (default cpu; auto picks cuda when there is one)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per task (default 1). Numbers are bit-identical across executors "
                             "and worker counts at the same thread count")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="harness", description="Benchmark ownership watermarks of segmentation models.")
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)

    run = verbs.add_parser("run", help="embed, attack and verify; write records and the leaderboard")
    run.add_argument("--watermark", type=_csv, default=["stealthmark", "badnets"],
                     help="watermarks and/or baselines, comma-separated (default: stealthmark,badnets)")
    run.add_argument("--model", default="basic-unet",
                     help="registered model(s), comma-separated: every combination of the comma-separated "
                          "--model, --dataset, --seed, --preset and --trigger values is run (a grid)")
    run.add_argument("--dataset", default="synthetic-polyp",
                     help="registered dataset(s) (`harness list datasets`); folder datasets need --data-dir")
    run.add_argument("--data-dir", default=None, help="the downloaded folder of a folder dataset (kvasir, fundus, "
                                                      "echonet, cardiac-mr)")
    run.add_argument("--dataset-option", type=_option, action="append", default=[], metavar="KEY=VALUE",
                     help="a dataset option, e.g. target=cup for fundus (repeatable)")
    run.add_argument("--attack", default="prune",
                     help="an attack, NAME.PRESET (e.g. prune.l1_50), a chain (e.g. prune.l1_50+ftal.e5), "
                          "a comma-separated list, or all")
    run.add_argument("--strength", type=_floats, default=None,
                     help="comma-separated strengths (default: the attack's own sweep)")
    run.add_argument("--attacker-images", type=int, default=None, metavar="N",
                     help="the thief's own images (default: the preset's attacker split, 100 at tiny); beyond "
                          "it, fresh images of a synthetic dataset that no owner, test set or null sees")
    run.add_argument("--same-data-innocents", type=int, default=0, metavar="N",
                     help="also train N innocent models on the owner's own training images (a second hospital on "
                          "the same data) and report every verdict with them in the population (default 0)")
    run.add_argument("--seed", type=_ints, default=[0])
    run.add_argument("--preset", default="tiny")
    run.add_argument("--explainer", default="lime",
                     help="attribution method for the QR certificate: a name, a comma-separated list, or all "
                          "(each explainer gets its own leaderboard rows)")
    run.add_argument("--trigger", default=None,
                     help="trigger family for every watermark, e.g. text (default: each watermark's own, patch)")
    run.add_argument("--dice-budget", type=float, default=0.05,
                     help="max Dice drop for an attack to count as a removal (default 0.05 = 5 points)")
    run.add_argument("--results", default="results", help="results directory (default: ./results)")
    run.add_argument("--force", action="store_true", help="recompute cells that already have records")
    _null_options(run)
    _execution_options(run)

    grid = verbs.add_parser("grid", help="run every combination listed in a YAML grid file (safe_load)")
    grid.add_argument("config", help="grid file: axes (watermarks, models, attacks, ...) and options")
    grid.add_argument("--results", default=None, help="results directory (default: the file's, else ./results)")
    grid.add_argument("--force", action="store_true", help="recompute cells that already have records")
    _execution_options(grid, defaults_from_file=True)

    report = verbs.add_parser("report", help="write an HTML page and a Markdown report next to the leaderboard")
    report.add_argument("--results", default="results")
    report.add_argument("--dice-budget", type=float, default=0.05,
                        help="removal budget drawn on the Dice-cost scatter (default 0.05)")
    report.add_argument("--out", default=None, help="output folder (default: <results>/report)")
    report.add_argument("--no-gallery", action="store_true",
                        help="skip rendering certificates from cached models (tables and plots only)")

    nulls = verbs.add_parser("nulls", help="train (or load) the null population that calibrates every verdict")
    nulls.add_argument("--model", default="basic-unet", help="the architecture (the suspects' it will calibrate)")
    nulls.add_argument("--dataset", default="synthetic-polyp")
    nulls.add_argument("--preset", default="tiny")
    nulls.add_argument("--seed", type=int, default=0, help="the run seed; member k uses seed+1+k")
    nulls.add_argument("--held-out", type=int, default=0,
                       help="also train this many further members, never used for a threshold (for checking it)")
    nulls.add_argument("--results", default="results", help="results directory whose cache holds the models")
    _null_options(nulls, level=False)

    cert = verbs.add_parser("certify", help="bound the false-accusation rate on held-out innocent models, clean and "
                                            "attacked, and cross-verify two owners' marks")
    cert.add_argument("--model", type=_csv, default=None,
                      help="architectures, comma-separated (default basic-unet,unet,attention-unet); the first "
                           "also holds the two-owner experiment")
    cert.add_argument("--watermark", type=_csv, default=None, help="schemes whose keys are certified "
                                                                  "(default stealthmark,badnets)")
    cert.add_argument("--held-out", type=int, default=18, help="held-out null models per architecture (default 18)")
    cert.add_argument("--attack", type=_attack_strengths, default=None,
                      help="NAME:STRENGTH,... applied to every innocent model (default prune:0.3,jpeg:50,rtll:5)")
    cert.add_argument("--dataset", default="synthetic-polyp")
    cert.add_argument("--preset", default="tiny")
    cert.add_argument("--seed", type=int, default=0, help="owner A's run seed; null member k uses seed+1+k")
    cert.add_argument("--workers", type=int, default=None, help="training processes (default: one per core)")
    cert.add_argument("--verifier", default="detector",
                      help="detector or paired-rank: whose verdicts are certified (default detector; paired-rank "
                           "writes certification-paired-rank/)")
    cert.add_argument("--results", default="results", help="results directory: cache, and certification/ tables")
    _null_options(cert, level=False)

    guard = verbs.add_parser("guard", help="check that explainers depend on the model (watermarked vs null models)")
    guard.add_argument("--watermark", default="stealthmark")
    guard.add_argument("--explainer", type=_csv, default=["lime", "reference-grid-lime"],
                       help="explainers to check, comma-separated, or all (default: lime,reference-grid-lime)")
    guard.add_argument("--model", default="basic-unet")
    guard.add_argument("--dataset", default="synthetic-polyp")
    guard.add_argument("--preset", default="tiny")
    guard.add_argument("--seed", type=int, default=0)
    guard.add_argument("--mask", default="grid:16",
                       help="features: grid:G (G x G patches) or slic:N (SLIC superpixels); default grid:16")
    guard.add_argument("--samples", type=int, default=1000, help="perturbations per explanation")
    guard.add_argument("--figure", default=None,
                       help="PNG to write (default: <results>/figures/artifact_guard.png)")
    guard.add_argument("--results", default="results")
    _null_options(guard)

    lst = verbs.add_parser("list", help="registered plugins with one-line descriptions")
    lst.add_argument("kind", nargs="?", default=None, help="only this kind, e.g. attacks")
    lst.add_argument("--pattern", default="*", help="shell-style wildcard on names")

    board = verbs.add_parser("leaderboard", help="rebuild the leaderboard CSV from the run records")
    board.add_argument("--results", default="results")
    board.add_argument("--dice-budget", type=float, default=0.05,
                       help="max Dice drop for a failed verification to count as a removal (default 0.05); "
                            "verdicts are derived from the records, so no re-run is needed")

    verify = verbs.add_parser("verify", help="check a suspect checkpoint against an owner's key")
    verify.add_argument("--model", required=True, help="registered architecture of the suspect")
    verify.add_argument("--checkpoint", required=True, help="suspect's state dict (.pt), loaded weights-only")
    verify.add_argument("--key", required=True, help="the owner's key file (.npz) written by `run`")
    verify.add_argument("--preset", default=None, help="architecture size (default: the key's preset)")
    verify.add_argument("--explainer", default=None,
                        help="attribution method: a name, a comma-separated list, or all (default: the key's)")
    verify.add_argument("--verifier", default="detector",
                        help="detector (the scheme's own score), paired-rank (order only: survives any monotone "
                             "map of the suspect's logits), or all (default: detector)")
    verify.add_argument("--seed", type=int, default=0)

    bench = verbs.add_parser("bench", help="time explainers against the model's forward passes, or training "
                                           "against a plain loop and the machine's GEMM peak")
    bench.add_argument("what", choices=["explainers", "train"], help="what to benchmark")
    bench.add_argument("--model", default=None,
                       help="explainers: one model (default basic-unet); train: comma-separated models or all "
                            "(default basic-unet,unet)")
    bench.add_argument("--preset", default="tiny")
    bench.add_argument("--samples", type=int, default=1000, help="perturbations per explanation (default 1000)")
    bench.add_argument("--batch-size", type=int, default=64, help="images per forward call (default 64)")
    bench.add_argument("--explainer", type=_csv, default=None,
                       help="explainers, comma-separated (default: every registered one)")
    bench.add_argument("--device", default="cpu", help="torch device (default cpu)")
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--repeats", type=int, default=1, help="runs per explainer; the fastest counts (default 1)")
    bench.add_argument("--steps", type=int, default=30, help="train: timed steps per row (default 30)")
    bench.add_argument("--variant", type=_csv, default=None,
                       help="train: which ways of training, comma-separated (default all; see harness.bench_train)")
    return parser


def _log(msg: str) -> None:
    print(msg, file=sys.stderr)


def _finish(outcome, tic: float) -> int:
    """Print the summary; exit status 1 when any cell failed (re-running retries exactly those)."""
    from harness.summary import print_summary

    print_summary([r for r in outcome.records if r.status == "ok"], dice_budget=outcome.dice_budget)
    for name, path in outcome.keys.items():
        if path.is_file():
            print(f"owner key ({name}): {path}  <- keep this file; it is what `harness verify --key` needs")
    for name, path in outcome.checkpoints.items():
        if path.is_file():
            print(f"checkpoint ({name}): {path}")
    print(f"leaderboard: {outcome.leaderboard}  ({len(outcome.records)} cells in {time.perf_counter() - tic:.1f} s)")
    if outcome.failed:
        for record in outcome.failed[:10]:
            print(f"failed: {record.spec['watermark']} x {record.spec['attack']} {record.spec['strength']:g} "
                  f"({record.spec['model']}, {record.spec['dataset']}, seed {record.spec['seed']}): {record.error}",
                  file=sys.stderr)
        print(f"error: {len(outcome.failed)} of {len(outcome.records)} cells failed (recorded with status=error); "
              "re-run the same command to retry only those", file=sys.stderr)
        return 1
    return 0


def cmd_run(args) -> int:
    from harness.runner import benchmark

    tic = time.perf_counter()
    outcome = benchmark(watermarks=args.watermark, model=args.model, dataset=args.dataset, attack=args.attack,
                        strengths=args.strength, seed=args.seed, preset=args.preset, explainer=args.explainer,
                        trigger=args.trigger,
                        results=args.results, dice_budget=args.dice_budget, force=args.force,
                        null_seeds=args.null_seeds, null_level=args.null_level,
                        data_dir=args.data_dir, dataset_options=dict(args.dataset_option),
                        device=args.device, threads=args.threads, executor=args.executor, workers=args.workers,
                        scheduler=args.scheduler, attacker_images=args.attacker_images,
                        same_data_innocents=args.same_data_innocents, log=_log)
    return _finish(outcome, tic)


def cmd_grid(args) -> int:
    from harness.grid import load_grid, run_grid, with_overrides

    tic = time.perf_counter()
    grid = with_overrides(load_grid(args.config), results=args.results, device=args.device, threads=args.threads)
    if args.force:
        grid = with_overrides(grid, force=True)
    outcome = run_grid(grid, executor=args.executor, workers=args.workers, scheduler=args.scheduler, log=_log)
    return _finish(outcome, tic)


def cmd_report(args) -> int:
    from harness.io import check_writable
    from harness.report import write_report

    check_writable(args.out or args.results, "report folder")
    paths = write_report(args.results, out_dir=args.out, dice_budget=args.dice_budget, gallery=not args.no_gallery,
                         log=_log)
    print(f"report: {paths.html}")
    print(f"report: {paths.markdown}")
    return 0


def _train_like_a_run() -> None:
    """Train with a run's torch thread count: the models are then the very ones ``run`` caches and reuses
    (the count orders float sums, so it is part of a trained model's cache key)."""
    import torch

    from harness.executors import DEFAULT_THREADS

    torch.set_num_threads(DEFAULT_THREADS)


def cmd_nulls(args) -> int:
    from pathlib import Path

    from harness.cache import ArtifactCache
    from harness.nulls import members, null_population, population_spec
    from harness.presets import get_preset
    from harness.registry import DATASETS
    from harness.data import make_splits
    from harness.grid import check_seed
    from harness.measure import utility

    from harness.io import check_writable

    preset = get_preset(args.preset)
    DATASETS.get(args.dataset)
    check_seed(args.seed)
    check_writable(args.results)
    if args.held_out < 0:
        raise HarnessError(f"--held-out must be >= 0, got {args.held_out}")
    spec = population_spec(args.preset, args.model, args.null_seeds)
    cache = ArtifactCache(Path(args.results) / "cache")
    _train_like_a_run()
    log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    tic = time.perf_counter()
    population = null_population(cache, args.dataset, preset, args.seed, spec, log=log)
    if args.held_out:
        population.update(null_population(cache, args.dataset, preset, args.seed, spec, held_out=args.held_out,
                                           log=log))
    took = time.perf_counter() - tic
    test = make_splits(args.dataset, preset, args.seed).test
    held = {m.name for m in members(spec, args.seed, args.held_out)} if args.held_out else set()
    print(f"{'member':<22} {'role':<12} {'test dice':>9}")
    for name, model in population.items():
        print(f"{name:<22} {'held-out' if name in held else 'calibration':<12} "
              f"{utility(model, test, preset.eval_batch_size)[0]['dice']:>9.3f}")
    print(f"{len(population)} null models ({args.preset}, {args.dataset}) ready in {took:.1f} s; "
          f"cache: {cache.root}")
    return 0


def cmd_certify(args) -> int:
    from harness import certify
    from harness.grid import check_seed

    check_seed(args.seed)
    result = certify.certify(models=args.model or certify.DEFAULT_MODELS,
                             watermarks=args.watermark or certify.DEFAULT_WATERMARKS,
                             attacks=args.attack or certify.DEFAULT_ATTACKS, held_out=args.held_out,
                             dataset=args.dataset, preset=args.preset, seed=args.seed, results=args.results,
                             null_seeds=args.null_seeds, workers=args.workers, verifier=args.verifier, log=_log)
    print(certify.summary_markdown(result))
    print(certify.owners_markdown(result))
    print(f"trained in {result.seconds['train']:.0f} s, verified in {result.seconds['verify']:.0f} s; tables: "
          f"{args.results}/{certify.certification_dir(args.verifier)}/")
    return 0


def cmd_guard(args) -> int:
    from harness.artifact_guard import guard
    from harness.io import check_writable

    check_writable(args.results)
    _train_like_a_run()
    results, figure = guard(watermark=args.watermark, explainers=args.explainer, model=args.model,
                            dataset=args.dataset, preset=args.preset, seed=args.seed, mask=args.mask,
                            n_samples=args.samples, results=args.results, figure=args.figure,
                            null_seeds=args.null_seeds, null_level=args.null_level,
                            log=lambda msg: print(msg, file=sys.stderr))
    for result in results:
        print(result.line())
    flagged = sum(r.flagged for r in results)
    print(f"{flagged} of {len(results)} explainers flagged as not model-dependent; figure: {figure}")
    return 0


def cmd_list(args) -> int:
    from harness.registry import ALL_REGISTRIES
    from harness.registry import look_up

    kinds = [look_up(args.kind, ALL_REGISTRIES, "plugin kind")] if args.kind else list(ALL_REGISTRIES.values())
    for registry in kinds:
        print(f"{registry.kind}:")
        for name, description in registry.describe():
            if name in registry.names(args.pattern):
                print(f"  {name:<18} {description}")
    return 0


def cmd_leaderboard(args) -> int:
    from harness.grid import check_number
    from harness.io import check_writable
    from harness.leaderboard import write_leaderboard

    budget = check_number("dice budget", args.dice_budget, 0, 1)
    check_writable(args.results)
    path, count = write_leaderboard(args.results, budget)
    print(f"leaderboard: {path} ({count} rows, verdicts at a Dice budget of {budget:g})")
    return 0


def cmd_verify(args) -> int:
    from harness.checkpoints import load_model
    from harness.registry import find_watermark
    from harness.registry import resolve_explainers
    from harness.watermark import Key

    key = Key.load(args.key)
    try:
        watermark = find_watermark(key.meta["watermark"]["name"])()
    except KeyError:
        raise HarnessError(f"key file {args.key} names no watermark") from None
    explainer = args.explainer or key.meta.get("explainer")
    explainers = resolve_explainers(explainer) if explainer is not None else [None]
    verifiers = list(watermark.verifiers) if args.verifier == "all" else [watermark.check_verifier(args.verifier)]
    model = load_model(args.model, args.preset or key.meta["preset"], args.checkpoint)
    records = []
    for verifier in verifiers:
        # The certificate (attribution) is the detector's: explainers only vary there.
        for name in explainers if verifier == "detector" else explainers[:1]:
            result = watermark.verify(model, key, explainer=name, seed=args.seed, verifier=verifier,
                                      certify=verifier == "detector")
            if name is explainers[0]:
                _print_verdict(result, key, verifier)
            if result.qr_decoded is not None:
                _print_certificate(name, result)
            records.append({"verdict": "VERIFIED" if result.verified else "NOT VERIFIED", "verifier": verifier,
                            "checkpoint": str(args.checkpoint), "model": args.model, "key": str(args.key),
                            "explainer": name, **result.as_record()})
    print(json.dumps(records[0] if len(records) == 1 else records, indent=1, sort_keys=True))
    return 0


def _print_certificate(explainer: str, result) -> None:
    """One line per explainer: the payload its explanation spells, and how well it reads the owner's."""
    owner = "the owner's payload" if result.qr_decoded else "not the owner's payload"
    line = (f"certificate ({explainer}): {'VERIFIED' if result.verified else 'NOT VERIFIED'}, payload read "
            f"{result.payload_read!r} ({owner})")
    if getattr(result, "bit_accuracy", None) is not None:
        line += f", bit accuracy {result.bit_accuracy:.3f}"
    if getattr(result, "code_z", None) is not None:
        line += (f", best message {result.best_payload!r} at z {result.code_z:.2f} "
                 f"(decodes at >= {result.code_bound:.2f}, parametric)")
    print(line)


def _print_verdict(result, key, verifier: str = "detector") -> None:
    from harness.registry import find_watermark
    from harness.watermark import stored_calibration

    verdict = "VERIFIED" if result.verified else "NOT VERIFIED"
    name = key.meta["watermark"]["name"]
    if verifier == "paired-rank":
        print(f"{verdict} (paired-rank): {name} key, the triggered answer ranks above the benign one for "
              f"{result.asr:.3f} of {result.queries // 2} key images, mean rank shift {result.score:.3f}, "
              f"sign test p = {result.p_value:.3g} (alpha {key.meta['alpha']})")
    elif find_watermark(name).role == "fingerprint":
        print(f"{verdict}: {name} fingerprint, score {result.score:.3f}; the suspect is closer to the owner's "
              f"answer than to the reference on {result.asr:.3f} of the key images ({result.queries} queries), "
              f"sign test p = {result.p_value:.3g} (alpha {key.meta['alpha']})")
    elif result.fpr is not None:
        print(f"{verdict}: {name} key, asr {result.asr:.3f} vs fpr {result.fpr:.3f} "
              f"over {result.queries // 2}+{result.queries // 2} queries, p = {result.p_value:.3g} "
              f"(alpha {key.meta['alpha']})")
    else:
        # No benign queries (stealthmark-qr reads bits off one explained image): asr is a bit accuracy
        # and `queries` counts the images the explainer sent, not M triggered + M benign.
        bits = getattr(result, "modules", None)
        payload_bits = getattr(result, "payload_modules", None)
        read = f"bit accuracy {result.asr:.3f}" + (f" over {bits} modules" if bits else "")
        if result.score is not None:
            read += f", {result.score:.3f}" + (f" over the {payload_bits} payload modules" if payload_bits
                                                else " on the payload")
        print(f"{verdict}: {name} key, {read}, from {result.queries} queries, p = {result.p_value:.3g} "
              f"(alpha {key.meta['alpha']})")
    if result.p_value_null_empirical is None:
        print("uncalibrated key: no null population was scored with it, so nothing can be verified")
    else:
        from harness.calibration import format_null_p

        # stealthmark-qr calibrates per explainer; the verdict used the one of the explainer that ran
        explainer = getattr(result, "explainer", None)
        cal = key.meta.get("null_calibrations", {}).get(explainer) or stored_calibration(key, verifier)
        normality = cal.get("normality_p")
        print(f"against {result.null_count} null models: score {result.score:.3f} vs parametric threshold "
              f"{result.null_threshold:.3f} (level {cal['level']}), p_null "
              f"{format_null_p(result.p_value_null_empirical, result.p_value_null_parametric, result.null_count)}"
              + ("" if normality is None else f"; Shapiro-Wilk p of the null scores {normality:.2g}"))


def cmd_bench(args) -> int:
    from harness.registry import MODELS

    if args.what == "train":
        from harness import bench_train

        models = MODELS.names() if args.model == "all" else (_csv(args.model) if args.model else None)
        peak, rows = bench_train.bench_train(models, preset=args.preset, steps=args.steps, seed=args.seed,
                                             variants=args.variant, log=_log)
        bench_train.print_table(peak, rows)
        return 0
    from harness.bench import bench_explainers, print_table

    args.model = args.model or "basic-unet"
    MODELS.get(args.model)
    rows = bench_explainers(model_name=args.model, preset=args.preset, n_samples=args.samples,
                            batch_size=args.batch_size, explainers=args.explainer, seed=args.seed,
                            device=args.device, repeats=args.repeats)
    print_table(rows)
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return {"run": cmd_run, "grid": cmd_grid, "report": cmd_report, "nulls": cmd_nulls, "certify": cmd_certify,
                "guard": cmd_guard, "list": cmd_list, "leaderboard": cmd_leaderboard, "verify": cmd_verify,
                "bench": cmd_bench}[args.verb](args)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
