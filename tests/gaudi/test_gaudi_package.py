"""Seed 002's command lines, run from the extracted `tensorflow-gaudi-bert-training` package on
the CPU with tiny generated data and checkpoints (paths and sizes adjusted, every flag kept),
once on each TensorFlow stack (``stack_python``: TF 2.21 / Keras 3 and TF 2.15 / Keras 2):
pretraining phase 1 -> phase 2 from its checkpoint, MRPC and SQuAD fine-tuning on one card,
the 8-card `mpirun ... --horovod` form with two ranks (one model: identical weights), a
two-"host" run through sshd, and one-line errors for bad flags and files."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from tests import sshd
from tests.gaudi import package_fixtures as pf
from tests.tf_stacks import TF215_PYTHON

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    return pf.extract_package(tmp_path_factory.mktemp("gaudipkg"))


@pytest.fixture(scope="module")
def bert(package, tmp_path_factory) -> Path:
    """The tiny model at ``<package>/wwm_uncased_L-24_H-1024_A-16``, where seed 002's
    download step puts BERT large."""
    folder = pf.checkpoint_folder(tmp_path_factory.mktemp("ckpt"))
    shutil.copytree(folder, package / pf.LARGE)
    return package / pf.LARGE


@pytest.fixture(scope="module")
def corpus(package, bert, tmp_path_factory) -> Path:
    return pf.pretraining_records(package, tmp_path_factory.mktemp("bookswiki"),
                                  bert / "vocab.txt")


def recipe(package: Path) -> str:
    return str(package / "bf16_config" / "bert.json")


def pretraining_flags(corpus: Path, out: Path, seq: int, pred: int, init: str,
                      steps: int = 4) -> list[str]:
    data = corpus / "tfrecord" / f"seq_len_{seq}" / "books_wiki_en_corpus"
    return [f"--input_files_dir={data / 'training'}", f"--init_checkpoint={init}",
            f"--eval_files_dir={data / 'test'}", f"--output_dir={out}",
            f"--bert_config_file={pf.LARGE}/bert_config.json", "--do_train=True",
            "--do_eval=False", "--train_batch_size=4", "--eval_batch_size=8",
            f"--max_seq_length={seq}", f"--max_predictions_per_seq={pred}",
            f"--num_train_steps={steps}", "--num_accumulation_steps=2", "--num_warmup_steps=1",
            "--save_checkpoints_steps=2", "--learning_rate=0.006", "--noamp", "--nouse_xla",
            "--allreduce_post_accumulation=True", f"--dllog_path={out}/bert_dllog.json",
            "--enable_scoped_allocator=False", "--resume=False"]


def dllog_summary(path: Path) -> dict:
    records = [json.loads(line.removeprefix("DLLL ")) for line in path.read_text().splitlines()]
    return [r for r in records if r["step"] == []][-1]["data"]


def test_pretraining_phase1_then_phase2_from_its_checkpoint(
        stack_python, package, bert, corpus, tmp_path):
    env = pf.package_env(package, TF_BF16_CONVERSION=recipe(package))
    phase1 = tmp_path / "bert" / "phase_1"
    proc = pf.run_in_package(package, [stack_python, "run_pretraining.py", *pretraining_flags(
        corpus, phase1, 32, 5, f"{pf.LARGE}/bert_model.ckpt")], env)
    assert "precision bf16 (TF_BF16_CONVERSION=" in proc.stdout
    assert "device: CPU" in proc.stdout
    assert ("TensorFlow 2.15.1, Keras 2." if stack_python == TF215_PYTHON
            else "Keras 3.") in proc.stdout  # the stack asked for is the one that ran
    assert (phase1 / "model.ckpt-4.index").is_file()
    assert dllog_summary(phase1 / "bert_dllog.json")["global_step"] == 4

    phase2 = tmp_path / "bert" / "phase_2"
    proc = pf.run_in_package(package, [stack_python, "run_pretraining.py", *pretraining_flags(
        corpus, phase2, 64, 10, str(phase1 / "model.ckpt-4"), steps=2)], env)
    assert "model.ckpt-4" in proc.stdout  # the init report names phase 1's checkpoint
    assert (phase2 / "model.ckpt-2.index").is_file()


def classifier_flags(bert: str, data: Path, out: Path, horovod: str) -> list[str]:
    return ["--task_name=MRPC", "--do_train=true", "--do_eval=true", f"--data_dir={data}",
            f"--vocab_file={bert}/vocab.txt", f"--bert_config_file={bert}/bert_config.json",
            f"--init_checkpoint={bert}/bert_model.ckpt", "--max_seq_length=32",
            "--train_batch_size=4", "--learning_rate=2e-05", "--num_train_epochs=1",
            f"--output_dir={out}", f"--use_horovod={horovod}", "--enable_scoped_allocator=False"]


def test_mrpc_single_card(stack_python, package, bert, tmp_path):
    data = pf.mrpc_folder(tmp_path / "MRPC_parent")
    out = tmp_path / "bert"
    env = pf.package_env(package, TF_BF16_CONVERSION=recipe(package))
    pf.run_in_package(package, [stack_python, "run_classifier.py",
                                *classifier_flags(pf.LARGE, data, out, "false")], env)
    result = json.loads((out / "eval_results.json").read_text())
    assert result["eval_examples"] == 12
    assert json.loads((out / "train_summary.json").read_text())["precision"] == "bf16"


def test_squad_single_card(stack_python, package, bert, tmp_path):
    squad = pf.squad_folder(tmp_path / "SQuAD")
    out = tmp_path / "bert"
    env = pf.package_env(package, TF_BF16_CONVERSION=recipe(package))
    pf.run_in_package(package, [
        stack_python, "run_squad.py", f"--vocab_file={pf.LARGE}/vocab.txt",
        f"--bert_config_file={pf.LARGE}/bert_config.json",
        f"--init_checkpoint={pf.LARGE}/bert_model.ckpt", "--do_train=True",
        f"--train_file={squad}/train-v1.1.json", "--do_predict=True",
        f"--predict_file={squad}/dev-v1.1.json", "--do_eval=True", "--train_batch_size=4",
        "--learning_rate=2e-05", "--num_train_epochs=1", "--max_seq_length=64",
        "--doc_stride=32", "--max_query_length=16", f"--output_dir={out}",
        "--use_horovod=false",
        "--enable_scoped_allocator=False"], env)
    assert (out / "predictions.json").is_file()
    scores = json.loads((out / "eval_results.json").read_text())
    assert {"exact_match", "f1"} <= set(scores)


def mpirun_prefix(log_dir: Path, ranks: int = 2) -> list[str]:
    """Seed 002's multi-card mpirun options; PE=1 so that two ranks fit two cores."""
    mpirun = shutil.which("mpirun")
    assert mpirun, "mpirun missing: run scripts/setup-test-env.sh"
    prefix = [mpirun]
    if os.geteuid() == 0:
        prefix.append("--allow-run-as-root")
    cores = len(os.sched_getaffinity(0))
    bind = ["--bind-to", "core", "--map-by", "socket:PE=1"] if cores >= ranks else \
        ["--bind-to", "none", "--oversubscribe"]
    return [*prefix, "--tag-output", "--merge-stderr-to-stdout", "--output-filename",
            str(log_dir), *bind, "-np", str(ranks)]


@pytest.mark.mpi
def test_multi_card_pretraining_with_horovod_trains_one_model(
        stack_python, package, bert, corpus, tmp_path):
    out = tmp_path / "phase_1"
    env = pf.package_env(package)
    proc = pf.run_in_package(package, [
        *mpirun_prefix(tmp_path / "bert_phase1_log"), "-x", f"TF_BF16_CONVERSION={recipe(package)}",
        stack_python, "run_pretraining.py", *pretraining_flags(
            corpus, out, 32, 5, f"{pf.LARGE}/bert_model.ckpt"), "--horovod"], env)
    summary = dllog_summary(out / "bert_dllog.json")
    assert summary["weights_identical_across_ranks"] is True
    assert "ranks ended with different weights" not in proc.stdout
    # --output-filename: one log folder per rank, as seed 002's command writes.
    assert sorted(p.name for p in (tmp_path / "bert_phase1_log" / "1").iterdir()) == [
        "rank.0", "rank.1"]


@pytest.mark.mpi
def test_multi_card_mrpc_use_horovod_is_synchronous(stack_python, package, bert, tmp_path):
    data = pf.mrpc_folder(tmp_path / "MRPC_parent")
    out = tmp_path / "bert"
    pf.run_in_package(package, [*mpirun_prefix(tmp_path / "bert_log"), stack_python,
                                "run_classifier.py",
                                *classifier_flags(pf.LARGE, data, out, "true")])
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["mpi_workers_sync_gradients"] is True
    assert summary["weights_identical_across_ranks"] is True
    assert summary["world_size"] == 2
    assert not (out / "rank_1").exists()  # rank 0 writes the outputs


@pytest.mark.mpi
def test_two_hosts_through_sshd(stack_python, package, bert, tmp_path):
    """MULTI_HLS_IPS with two local "hosts": rank 1 is started over ssh on port 3022 (or the
    fixture's free port), both ranks train one model."""
    data = pf.mrpc_folder(tmp_path / "MRPC_parent")
    out = tmp_path / "bert"
    with sshd.two_loopback_hosts(tmp_path / "ssh") as hosts:
        env = pf.package_env(package, MULTI_HLS_IPS=hosts.hosts, **hosts.env)
        proc = pf.run_in_package(package, [
            stack_python, "models/common/launch.py", "--no-bind", "--tag-output",
            "--merge-stderr-to-stdout", "--", stack_python, "run_classifier.py",
            *classifier_flags(pf.LARGE, data, out, "true")], env)
    assert "plm_rsh_args" in proc.stdout and "-H 127.0.0.1:1,127.0.0.2:1" in proc.stdout
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["weights_identical_across_ranks"] is True


@pytest.mark.parametrize("extra, env, needle", [
    (["--device=hpu"], {}, "--device=hpu but no Gaudi"),
    (["--amp"], {}, "--amp=True"),
    ([], {"TF_BF16_CONVERSION": "bf16_config/missing.json"}, "missing.json: file not found"),
    (["--use_horovod=maybe"], {}, "--use_horovod"),
])
def test_bad_flags_and_files_are_one_line(
        stack_python, package, bert, tmp_path, extra, env, needle):
    data = pf.mrpc_folder(tmp_path / "MRPC_parent")
    proc = pf.run_in_package(package, [
        stack_python, "run_classifier.py",
        *classifier_flags(pf.LARGE, data, tmp_path / "out", "false"), *extra],
        pf.package_env(package, **env), check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert needle in proc.stderr.strip().splitlines()[-1]
