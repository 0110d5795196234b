"""benchmarks/launch_benchmark.py (Intel's launcher) in the TF BERT packages: seed 003's two
command lines run as written from an extracted package (2 MPI ranks instead of 4, tiny model
and data), Intel's argument spellings, model arguments and their errors, containers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.packages.helpers import REPO, build_and_extract, explain

SCRIPT = REPO / "benchmarks" / "launch_benchmark.py"


def run(args, script=SCRIPT, env=None, timeout=600, **kw):
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
                                                **(env or {})}, **kw)


BASE = ["--model-name=bert_large", "--precision=fp32", "--framework=tensorflow"]


def test_unknown_model_argument_is_one_line_listing_the_known_ones(tmp_path):
    proc = run([*BASE, "--mode=training", f"--output-dir={tmp_path}", "--",
                "train_option=SQuAD", "optimised_softmax=True", "learning-rate=1e-5"])
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown model argument(s) optimised_softmax" in lines[0]
    assert "optimized_softmax" in lines[0] and "train_option" in lines[0]


def test_dashes_and_underscores_are_the_same_in_flags_and_model_args(tmp_path, squad_model_dir,
                                                                     squad_data_dir):
    args = [*BASE, "--mode=training", "--mpi-num-processes=2", "--num_intra_threads=3",
            f"--output_dir={tmp_path}", "--batch-size=4", "--dry-run", "--",
            "train_option=SQuAD", f"init-checkpoint={squad_model_dir}/model.ckpt-3649",
            "optimized-softmax=True", "experimental_gelu=True", "warmup-steps=0"]
    proc = run(args, env={"MPI_WORKERS_SYNC_GRADIENTS": "True"})
    assert proc.returncode == 0, explain(proc)
    assert "--num-intra-threads 3" in proc.stdout and "-np 2" in proc.stdout
    for flag in ("--optimized_softmax=True", "--experimental_gelu=True", "--warmup_steps=0",
                 "--train_batch_size=4", "--mpi_workers_sync_gradients=True",
                 f"--init_checkpoint={squad_model_dir}/model.ckpt-3649"):
        assert flag in proc.stdout, flag
    assert not (tmp_path / "train_summary.json").exists()  # a dry run runs nothing


def test_optimized_softmax_false_is_refused_with_the_reason(tmp_path, squad_model_dir,
                                                            squad_data_dir):
    proc = run([*BASE, "--mode=training", f"--output-dir={tmp_path}", "--",
                f"vocab_file={squad_model_dir}/vocab.txt",
                f"config_file={squad_model_dir}/bert_config.json", "do_train=True",
                f"train_file={squad_data_dir}/train-v1.1.json", "optimized_softmax=False"])
    assert proc.returncode == 2, explain(proc)
    assert "error: --optimized_softmax=False asks for Intel's unfused softmax" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args, message", [
    (["--mode=inference", "--benchmark-only", "--accuracy-only"], "exclude each other"),
    (["--mode=training", "--benchmark-only"], "inference options"),
    (["--mode=inference", "--mpi_num_processes=2"], "for training"),
    (["--mode=inference", "--benchmark-only"], "--checkpoint is required"),
    (["--mode=training", "--volume=/a:/b"], "goes with --docker-image"),
])
def test_usage_errors_exit_2_with_one_line(tmp_path, args, message):
    proc = run([*BASE, f"--output-dir={tmp_path}", *args])
    assert proc.returncode == 2 and message in proc.stderr, explain(proc)
    assert len(proc.stderr.strip().splitlines()) == 1


def test_docker_image_without_an_engine_is_one_line_exit_1(tmp_path, squad_model_dir,
                                                          squad_data_dir):
    bare = tmp_path / "bin"
    bare.mkdir()
    proc = run([*BASE, "--mode=inference", "--benchmark-only", f"--output-dir={tmp_path}",
                f"--data-location={squad_model_dir}", f"--checkpoint={squad_model_dir}",
                "--docker-image=intel/language-modeling:x", f"--volume={squad_data_dir}:/data",
                "--", f"predict_file={squad_data_dir}/dev-v1.1.json"],
               env={"PATH": str(bare)})
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "launch_benchmark.py: error: --docker-image needs docker (with a running daemon) or "
        "buildah, and neither is usable here: install one, or drop --docker-image to run on "
        "this machine"]


def test_docker_image_runs_the_same_command_in_a_container(tmp_path, squad_model_dir,
                                                           squad_data_dir):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "docker").write_text("#!/bin/sh\nexit 0\n")  # `docker info` answers
    (fake / "docker").chmod(0o755)
    proc = run([*BASE, "--mode=inference", "--benchmark-only", f"--output-dir={tmp_path}/o",
                f"--data-location={squad_model_dir}", f"--checkpoint={squad_model_dir}",
                "--docker-image=img:1", f"--volume={squad_data_dir}:/data", "--dry-run", "--",
                "predict_file=/data/dev-v1.1.json"],
               env={"PATH": f"{fake}{os.pathsep}{os.environ['PATH']}"})
    assert proc.returncode == 0, explain(proc)
    line = proc.stdout.splitlines()[0]
    assert f"{fake}/docker run --rm" in line and " img:1 python3 " in line
    assert f"-v {REPO}:/workspace/modelpkg" in line and f"-v {squad_data_dir}:/data" in line
    assert f"-v {squad_model_dir}:{squad_model_dir}" in line
    assert "/workspace/modelpkg/benchmarks/launch_benchmark.py --model-name=bert_large" in line
    assert line.endswith("--dry-run -- predict_file=/data/dev-v1.1.json")
    assert "--docker-image" not in line.split(" img:1 ")[1]


@pytest.fixture(scope="module")
def training_package(tmp_path_factory) -> Path:
    return build_and_extract("bert-large-bf16-training", tmp_path_factory.mktemp("trainpkg"))


@pytest.fixture(scope="module")
def seed_folders(tmp_path_factory, squad_model_dir, squad_data_dir):
    """Seed 003's /tmp layout: a cased pretrained model folder, the SQuAD files beside it."""
    root = tmp_path_factory.mktemp("seed003")
    cased = root / "wwm_cased_L-24_H-1024_A-16"
    cased.mkdir()
    for name in ("vocab.txt", "bert_config.json"):
        (cased / name).write_bytes((squad_model_dir / name).read_bytes())
    for f in squad_model_dir.glob("model.ckpt-3649.*"):  # pretrained weights + an unused head
        (cased / f.name.replace("model.ckpt-3649", "bert_model.ckpt")).write_bytes(f.read_bytes())
    for name in ("train-v1.1.json", "dev-v1.1.json"):
        (root / name).write_bytes((squad_data_dir / name).read_bytes())
    return root


@pytest.mark.slow
@pytest.mark.mpi
def test_seed_003_fine_tune_then_inference_run_as_written(training_package,
                                                          bf16_inference_package,
                                                          seed_folders):
    t = seed_folders
    train = run([
        "--model-name=bert_large", "--precision=bfloat16", "--mode=training",
        "--mpi_num_processes=2", "--mpi_num_processes_per_socket=1", "--num-intra-threads=22",
        "--num-inter-threads=1", f"--output-dir={t}/SQuAD_1.1_fine_tune",
        "--framework=tensorflow", "--batch-size=24", "--", "train_option=SQuAD",
        f"vocab_file={t}/wwm_cased_L-24_H-1024_A-16/vocab.txt",
        f"config_file={t}/wwm_cased_L-24_H-1024_A-16/bert_config.json",
        f"init_checkpoint={t}/wwm_cased_L-24_H-1024_A-16/bert_model.ckpt", "do_train=True",
        f"train_file={t}/train-v1.1.json", "do_predict=True",
        f"predict_file={t}/dev-v1.1.json", "learning_rate=1.5e-5", "num_train_epochs=2",
        "warmup-steps=0", "doc_stride=128", "do_lower_case=False", "max_seq_length=384",
        "experimental_gelu=True", "optimized-softmax=True", "mpi_workers_sync_gradients=True",
    ], script=training_package / "benchmarks" / "launch_benchmark.py", timeout=900)
    assert train.returncode == 0, explain(train)
    assert "mode: sync gradients" in train.stdout and "mpirun" in train.stdout
    out = t / "SQuAD_1.1_fine_tune"
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["eval"]["f1"] >= 0 and (out / "predictions.json").is_file()
    assert list(out.glob("model.ckpt-*.index"))

    # seed 003's inference folder: the uncased model folder with dev-v1.1.json in it
    data = t / "wwm_uncased_L-24_H-1024_A-16"
    data.mkdir()
    for name in ("vocab.txt", "bert_config.json"):
        (data / name).write_bytes((t / "wwm_cased_L-24_H-1024_A-16" / name).read_bytes())
    (data / "dev-v1.1.json").write_bytes((t / "dev-v1.1.json").read_bytes())
    cpus = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
    infer = subprocess.run([
        "numactl", "--localalloc", f"--physcpubind={cpus}", sys.executable,
        str(bf16_inference_package / "benchmarks" / "launch_benchmark.py"),
        "--model-name=bert_large", "--precision=bfloat16", "--mode=inference",
        "--framework=tensorflow", "--num-inter-threads", "1", "--num-intra-threads", "2",
        "--batch-size=32", "--data-location", str(data), "--checkpoint", str(out),
        "--output-dir", str(t / "SQuAD_1.1_inference"), "--benchmark-only",
    ], capture_output=True, text=True, timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert infer.returncode == 0, explain(infer)
    assert "Throughput:" in infer.stdout
    result = json.loads((t / "SQuAD_1.1_inference" / "inference_results.json").read_text())
    assert result["precision"] == "bf16" and result["batch_size"] == 32
    assert result["mode"] == "benchmark" and result["examples_per_sec"] > 0
    assert result["checkpoint"] == str(out)
    assert (t / "SQuAD_1.1_inference" / "saved_model" / "saved_model.pb").is_file()
