"""``harness bench train``: rows, ratios and the one-line errors. Timings themselves are not asserted."""

import pytest

from harness.bench_train import bench_train, flops_per_image, format_table
from harness.cli import main
from harness.errors import HarnessError


def test_rows_carry_throughput_and_ratios_to_the_plain_loop_and_the_peak():
    variants = ["plain loop", "harness fit", "fit, W proc x 1 thr", "stacked xK (vmap)"]
    peak, rows = bench_train(["basic-unet"], preset="smoke", steps=2, warmup=1, variants=variants)
    assert peak > 0
    assert [r["variant"] for r in rows] == variants
    plain = rows[0]
    assert plain["vs_plain"] == 1.0
    for row in rows:
        assert row["images_per_s"] > 0
        assert row["gflops"] == pytest.approx(row["images_per_s"] * row["gflop_per_image"])
        assert row["vs_peak"] == pytest.approx(row["gflops"] / peak)
        assert row["vs_plain"] == pytest.approx(row["images_per_s"] / plain["images_per_s"])
    table = format_table(peak, rows)
    assert "GEMM peak" in table and "harness fit" in table and "W = " in table and "K = 5" in table


def test_flops_of_a_training_image_grow_with_the_model():
    assert flops_per_image("basic-unet", "tiny") > flops_per_image("basic-unet", "smoke") > 0


@pytest.mark.parametrize("argv, message", [
    (["bench", "train", "--model", "basic-unett"], "did you mean"),
    (["bench", "train", "--variant", "warp-speed"], "unknown variant 'warp-speed'"),
    (["bench", "train", "--steps", "0"], "--steps must be at least 1"),
    (["bench", "train", "--preset", "huge"], "preset"),
])
def test_bad_input_is_one_line_before_any_timing(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_unknown_variant_is_refused_by_the_function_too():
    with pytest.raises(HarnessError, match="variants: plain loop"):
        bench_train(["basic-unet"], preset="smoke", variants=["nope"])
