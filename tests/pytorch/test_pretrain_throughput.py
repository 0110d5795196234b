"""benchmarks/pytorch_pretrain_throughput.py run tiny on the CPU: every figure it prints is there
and sane (sequences/s, TFLOP/s, MFU against the matmul peak it measured, ours/HF ratios)."""

from __future__ import annotations

import json
import re
import sys

import pytest

from tests.pytorch.conftest import REPO, run

BENCH = REPO / "benchmarks" / "pytorch_pretrain_throughput.py"
TINY = ["--device", "cpu", "--layers", "2", "--hidden", "64", "--heads", "2", "--vocab", "300",
        "--batch", "2", "--steps", "2", "--warmup", "1"]
ROW = re.compile(r"^\s+(\d)\s+(\d+)\s+(\d+) (ours|HF)\s+(\d+)\s+([0-9.]+)\s+([0-9.]+)\s+"
                 r"([0-9.]+)%\s+([0-9.]+)%$", re.M)

pytestmark = pytest.mark.slow


def test_tiny_cpu_run_prints_throughput_mfu_and_ratios():
    out = run([sys.executable, BENCH, *TINY], timeout=300).stdout
    assert "MEASURED in this run" in out and "not a data-sheet peak" in out, out
    assert "FLOPs per sequence: 6 x " in out
    rows = ROW.findall(out)
    assert {(r[0], r[1], r[2], r[3]) for r in rows} == {
        ("1", "128", "20", "ours"), ("1", "128", "20", "HF"),
        ("2", "512", "80", "ours"), ("2", "512", "80", "HF")}, out
    for _, seq, _, _, batch, rate, tflops, mfu, mfu_attn in rows:
        assert batch == "2" and float(rate) > 0 and float(tflops) > 0, out
        assert 0 < float(mfu) < 100 and float(mfu) <= float(mfu_attn) < 100, out
    ratios = re.findall(r"^phase ([12]): ours/HF ([0-9.]+) \(batch 2\)$", out, re.M)
    assert [p for p, _ in ratios] == ["1", "2"] and all(float(r) > 0 for _, r in ratios), out


def test_json_figures_agree_with_the_flops_formula():
    out = run([sys.executable, BENCH, *TINY, "--phases", "1", "--json"], timeout=300).stdout
    data = json.loads(out)
    setup, rows = data["setup"], data["results"]
    assert setup["device"] == "cpu" and setup["peak_source"] == "measured matmul"
    assert setup["peak_tflops"] > 0 and len(setup["measured_tflops"]) == 3
    for r in rows:
        dense = 6 * setup["parameters"] * r["seq"]
        assert r["tflops"] == pytest.approx(r["seq_per_s"] * dense / 1e12)
        assert r["mfu"] == pytest.approx(r["tflops"] / setup["peak_tflops"])
    (ratio,) = data["ratios"]
    by_model = {r["model"]: r["seq_per_s"] for r in rows}
    assert ratio["ratio"] == pytest.approx(by_model["ours"] / by_model["HF"])


def test_bad_device_is_one_line_usage_error():
    proc = run([sys.executable, BENCH, "--device", "tpu"], check=False)
    assert proc.returncode == 2
    assert proc.stdout.strip().splitlines() == [
        "error: --device=tpu: choose one of auto, cuda, cpu (DEVICE in the quickstarts)"]
