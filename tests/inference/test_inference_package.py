"""The bert-large-{bf16,fp32}-inference packages: contents, quickstarts' checks and help, and
real runs on a tiny SQuAD checkpoint (realtime with two pinned instances, throughput,
accuracy with EM/F1, a checkpoint without the SQuAD head refused)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.packages.helpers import explain

QUICKSTARTS = ("inference_realtime.sh", "inference_throughput.sh", "accuracy.sh")


def quickstart(package, script, env, *args, timeout=600):
    full = {k: v for k, v in os.environ.items()
            if k not in ("CHECKPOINT_DIR", "DATASET_DIR", "OUTPUT_DIR", "PRECISION",
                         "BATCH_SIZE", "CORES_PER_INSTANCE")}
    full.update(env, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(["bash", str(package / "quickstart" / script), *args],
                          capture_output=True, text=True, env=full, timeout=timeout)


def test_package_holds_engine_quickstarts_and_launch_benchmark(bf16_inference_package):
    pkg = bf16_inference_package
    for path in ("benchmarks/launch_benchmark.py", "models/bert_large/tensorflow/inference.py",
                 "models/bert_large/tensorflow/run_inference.py", "models/common/launch.py",
                 "quickstart/bert_large_tf_common.sh", "quickstart/lib.sh",
                 "licenses/third_party/tensorflow.txt", "README.md"):
        assert (pkg / path).is_file(), path
    for script in QUICKSTARTS:
        assert os.access(pkg / "quickstart" / script, os.X_OK)
    info = json.loads((pkg / "package_info.json").read_text())
    assert info["precisions"] == ["bf16"] and info["mode"] == "inference"
    readme = (pkg / "README.md").read_text()
    assert "inference_realtime.sh" in readme and "--benchmark-only" in readme


@pytest.mark.parametrize("script", QUICKSTARTS)
def test_help_names_the_variables(bf16_inference_package, script):
    proc = quickstart(bf16_inference_package, script, {}, "--help")
    assert proc.returncode == 0
    assert "CHECKPOINT_DIR" in proc.stdout and "CORES_PER_INSTANCE" in proc.stdout
    assert "bf16" in proc.stdout


def test_missing_or_wrong_variables_stop_before_work(bf16_inference_package, squad_model_dir,
                                                     squad_data_dir, tmp_path):
    pkg = bf16_inference_package
    proc = quickstart(pkg, "accuracy.sh", {"DATASET_DIR": str(squad_data_dir),
                                           "OUTPUT_DIR": str(tmp_path / "o")})
    assert proc.returncode == 2 and proc.stderr.startswith("error: CHECKPOINT_DIR is not set")
    proc = quickstart(pkg, "accuracy.sh", {"CHECKPOINT_DIR": str(squad_data_dir),
                                           "DATASET_DIR": str(squad_data_dir),
                                           "OUTPUT_DIR": str(tmp_path / "o")})
    assert proc.returncode == 2 and "holds no checkpoint" in proc.stderr
    proc = quickstart(pkg, "inference_realtime.sh", {
        "CHECKPOINT_DIR": str(squad_model_dir), "DATASET_DIR": str(squad_data_dir),
        "OUTPUT_DIR": str(tmp_path / "o"), "PRECISION": "fp16"})
    assert proc.returncode == 2 and "fp16" in proc.stderr
    proc = quickstart(pkg, "inference_realtime.sh", {
        "CHECKPOINT_DIR": str(squad_model_dir), "DATASET_DIR": str(squad_data_dir),
        "OUTPUT_DIR": str(tmp_path / "o"), "CORES_PER_INSTANCE": "two"})
    assert proc.returncode == 2 and "CORES_PER_INSTANCE=two" in proc.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_realtime_runs_two_pinned_instances_and_aggregates(bf16_inference_package,
                                                           squad_model_dir, squad_data_dir,
                                                           tmp_path):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 usable CPUs")
    out = tmp_path / "rt"
    proc = quickstart(bf16_inference_package, "inference_realtime.sh", {
        "CHECKPOINT_DIR": str(squad_model_dir), "DATASET_DIR": str(squad_data_dir),
        "OUTPUT_DIR": str(out), "CORES_PER_INSTANCE": "1"},
        "--max_seq_length=128", "--steps=6", "--warmup_steps=2")
    assert proc.returncode == 0, explain(proc)
    assert "[instance 0] Throughput:" in proc.stdout and "[instance 1] Throughput:" in proc.stdout
    results = [json.loads((out / f"inference_results_instance_{i}.json").read_text())
               for i in (0, 1)]
    assert [r["instances"] for r in results] == [2, 2]
    assert {r["batch_size"] for r in results} == {1}
    assert {r["environment"]["cpus"] for r in results} == {
        str(c) for c in sorted(os.sched_getaffinity(0))[:2]}
    for r in results:
        assert r["precision"] == "bf16" and r["timed_batches"] == 6
        assert r["latency_ms"]["p50"] <= r["latency_ms"]["p90"] <= r["latency_ms"]["p99"]
        env = r["environment"]
        assert env["tensorflow"] and env["cpu_model"] and env["env"]["OMP_NUM_THREADS"] == "1"
    agg = json.loads((out / "inference_realtime_aggregate.json").read_text())
    assert agg["examples_per_sec"] == pytest.approx(sum(r["examples_per_sec"] for r in results))
    assert "aggregate over 2 instance(s): throughput" in proc.stdout
    assert (out / "saved_model" / "saved_model.pb").is_file()


@pytest.mark.slow
def test_realtime_default_fits_a_small_machine(bf16_inference_package, squad_model_dir,
                                                squad_data_dir, tmp_path):
    """No CORES_PER_INSTANCE: Intel's 4 cores per instance, or (on a VM whose socket has
    fewer, like this 2-core one) all the socket's cores, with a warning instead of an error."""
    out = tmp_path / "rt"
    proc = quickstart(bf16_inference_package, "inference_realtime.sh", {
        "CHECKPOINT_DIR": str(squad_model_dir), "DATASET_DIR": str(squad_data_dir),
        "OUTPUT_DIR": str(out)}, "--max_seq_length=128", "--steps=2", "--warmup_steps=1")
    assert proc.returncode == 0, explain(proc)
    assert "--numa-cores-per-instance auto" in proc.stdout + proc.stderr
    aggregate = json.loads((out / "inference_realtime_aggregate.json").read_text())
    assert aggregate["examples_per_sec"] > 0
    if len(os.sched_getaffinity(0)) < 4:
        assert "core(s) per instance (a socket has" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_accuracy_scores_dev_set_and_throughput_runs(fp32_inference_package, squad_model_dir,
                                                     squad_data_dir, tmp_path):
    out = tmp_path / "acc"
    env = {"CHECKPOINT_DIR": str(squad_model_dir), "DATASET_DIR": str(squad_data_dir),
           "OUTPUT_DIR": str(out)}
    proc = quickstart(fp32_inference_package, "accuracy.sh", env, "--max_seq_length=128",
                      "--export_saved_model=False")
    assert proc.returncode == 0, explain(proc)
    scores = json.loads((out / "eval_results.json").read_text())
    predictions = json.loads((out / "predictions.json").read_text())
    dev = json.loads((squad_data_dir / "dev-v1.1.json").read_text())
    ids = {qa["id"] for a in dev["data"] for p in a["paragraphs"] for qa in p["qas"]}
    assert set(predictions) == ids
    assert 0 <= scores["exact_match"] <= scores["f1"] <= 100
    result = json.loads((out / "inference_results.json").read_text())
    assert result["f1"] == scores["f1"] and result["precision"] == "fp32"

    tp = quickstart(fp32_inference_package, "inference_throughput.sh",
                    {**env, "OUTPUT_DIR": str(tmp_path / "tp"), "BATCH_SIZE": "8"},
                    "--max_seq_length=128", "--steps=3", "--export_saved_model=False")
    assert tp.returncode == 0, explain(tp)
    agg = json.loads((tmp_path / "tp" / "inference_throughput_aggregate.json").read_text())
    assert agg["instances"] == 1 and agg["batch_size"] == 8 and agg["examples_per_sec"] > 0


@pytest.mark.slow
def test_checkpoint_without_squad_head_fails_with_one_line(fp32_inference_package,
                                                           pretrained_model_dir, squad_data_dir,
                                                           tmp_path):
    proc = quickstart(fp32_inference_package, "accuracy.sh", {
        "CHECKPOINT_DIR": str(pretrained_model_dir), "DATASET_DIR": str(squad_data_dir),
        "OUTPUT_DIR": str(tmp_path / "o")}, "--max_seq_length=128")
    assert proc.returncode == 1, explain(proc)
    assert "has no fine-tuned SQuAD head" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
