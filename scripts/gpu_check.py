"""The GPU check (issue 6): training and explanation throughput, then a paper-geometry StealthMark cell.

Run on a CUDA machine from the repository root::

    python scripts/gpu_check.py --out OUT_DIR

1. Training throughput at the paper configuration (256x256, batch 48, bf16,
   channels-last) for each model: a *raw* loop (data resident on the GPU, Adam,
   BCE, nothing else) against the harness's own ``fit`` on the same images
   (handed over on the CPU, as the runner does). Both exclude a warm-up.
2. Explanation throughput: perturbed images per second through LIME and
   Kernel SHAP on a 16x16 grid, 2000 samples, for UNet and the SAM encoder.
3. ``harness run --preset paper-short`` (256x256, the paper's models and
   splits, 8 epochs): embed StealthMark into UNet and the SAM encoder on the
   synthetic echocardiography stand-in, prune 50%, verify against nulls.

Writes ``gpu_check.json`` and the run's leaderboard into OUT_DIR.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.device import gpu_speed, to_device  # noqa: E402
from harness.presets import TrainConfig  # noqa: E402
from harness.segmenter import build_model  # noqa: E402
from harness.training import fit  # noqa: E402

MODELS = ("unet", "sam", "swin-unetr", "unetr", "basic-unet", "attention-unet", "segresnet")
SIZE, BATCH = 256, 48


def sync() -> None:
    torch.cuda.synchronize()


def raw_throughput(name: str, images: torch.Tensor, targets: torch.Tensor, warmup: int = 3, steps: int = 15) -> float:
    torch.manual_seed(0)
    model = to_device(build_model(name, "paper"), "cuda").train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = images.cuda().contiguous(memory_format=torch.channels_last)
    y = targets.cuda()
    with gpu_speed("cuda"):
        for step in range(warmup + steps):
            if step == warmup:
                sync()
                tic = time.perf_counter()
            i = (step * BATCH) % (len(x) - BATCH + 1)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = F.binary_cross_entropy_with_logits(model(x[i : i + BATCH]), y[i : i + BATCH])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        sync()
    return steps * BATCH / (time.perf_counter() - tic)


def harness_throughput(name: str, images: torch.Tensor, targets: torch.Tensor) -> float:
    torch.manual_seed(0)
    model = to_device(build_model(name, "paper"), "cuda")
    fit(model, images[: BATCH * 3], targets[: BATCH * 3], TrainConfig(1, BATCH, 1e-4), 0)  # warm-up, autotune
    sync()
    tic = time.perf_counter()
    fit(model, images, targets, TrainConfig(1, BATCH, 1e-4), 0)
    sync()
    return len(images) / (time.perf_counter() - tic)


def explain_throughput(name: str, explainer: str, samples: int = 2000) -> float:
    import numpy as np

    from harness.explainer import ModelForward
    from harness.feature_masks import make_feature_mask
    from harness.registry import EXPLAINERS

    torch.manual_seed(0)
    model = to_device(build_model(name, "paper"), "cuda").eval()
    image = np.random.default_rng(0).random((SIZE, SIZE, 3), dtype=np.float32)
    forward = ModelForward.for_image(model, image, "background-mean", batch_size=250, device="cuda")
    mask = make_feature_mask("grid:16", image)
    method = EXPLAINERS.get(explainer)()
    method.attribute(forward, image, mask, n_samples=250, batch_size=250, seed=0)  # warm-up
    sync()
    tic = time.perf_counter()
    method.attribute(forward, image, mask, n_samples=samples, batch_size=250, seed=0)
    sync()
    return samples / (time.perf_counter() - tic)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--skip-cell", action="store_true")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0), "training": {}, "explanation": {}}
    print(json.dumps({k: report[k] for k in ("torch", "gpu")}), flush=True)

    generator = torch.Generator().manual_seed(0)
    images = torch.rand(BATCH * 16, 3, SIZE, SIZE, generator=generator)
    targets = (torch.rand(BATCH * 16, 1, SIZE, SIZE, generator=generator) > 0.7).float()
    for name in args.models.split(","):
        try:
            raw = raw_throughput(name, images, targets)
            ours = harness_throughput(name, images, targets)
            params = sum(p.numel() for p in build_model(name, "paper").parameters())
            report["training"][name] = {"params_m": round(params / 1e6, 2), "raw_img_s": round(raw, 1),
                                        "harness_img_s": round(ours, 1), "harness_share_of_raw": round(ours / raw, 3)}
        except Exception as exc:  # keep measuring the others; the report says what broke
            report["training"][name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        print(name, json.dumps(report["training"][name]), flush=True)
        torch.cuda.empty_cache()
        (out / "gpu_check.json").write_text(json.dumps(report, indent=1))

    for name in ("unet", "sam"):
        for explainer in ("lime", "kernelshap"):
            try:
                report["explanation"][f"{name}/{explainer}"] = round(explain_throughput(name, explainer), 1)
            except Exception as exc:
                report["explanation"][f"{name}/{explainer}"] = f"{type(exc).__name__}: {exc}"[:300]
            print(name, explainer, report["explanation"][f"{name}/{explainer}"], "images/s", flush=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1))

    if not args.skip_cell:
        command = [sys.executable, "-m", "harness", "run", "--preset", "paper-short", "--dataset", "synthetic-echo",
                   "--model", "unet,sam", "--watermark", "stealthmark", "--attack", "prune", "--strength", "0.5",
                   "--device", "cuda", "--results", str(out / "results")]
        tic = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        report["cell"] = {"command": " ".join(command[1:]), "exit": done.returncode,
                          "seconds": round(time.perf_counter() - tic, 1)}
        (out / "cell_stdout.txt").write_text(done.stdout)
        (out / "cell_stderr.txt").write_text("\n".join(line for line in done.stderr.replace("\r", "\n").splitlines()
                                                       if "step/s" not in line and "it/s" not in line)[-20000:])
        board = out / "results" / "leaderboard.csv"
        if board.is_file():
            (out / "leaderboard.csv").write_text(board.read_text())
        print(done.stdout[-3000:], flush=True)
        (out / "gpu_check.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
