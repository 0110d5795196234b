"""The rows of seed 004's `./demo_bert` table, run for real from the extracted package on the
CPU: each row's command as written, with `-v 2` (two workers: this machine has 2 cores) and
flags that make it tiny (`-i` steps, `-o`, `--dataset_path`; `-s`/accumulation where the
tiny model or the time needs it). The models are tiny checkpoints in the folders demo_bert
uses for base and large, so nothing is downloaded. Also seed 002's profile line. Each runs
once per TensorFlow stack (``stack_python`` as ``$PYTHON``, which demo_bert uses for itself and
the training scripts): TF 2.21 / Keras 3 and TF 2.15 / Keras 2."""

from __future__ import annotations

import glob
import json
import shutil
from pathlib import Path

import pytest

from tests.gaudi import package_fixtures as pf

pytestmark = [pytest.mark.slow, pytest.mark.mpi]

BASE = "uncased_L-12_H-768_A-12"


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    pkg = pf.extract_package(tmp_path_factory.mktemp("demopkg"))
    tiny = pf.checkpoint_folder(tmp_path_factory.mktemp("ckpt"))
    for name in (pf.LARGE, BASE):
        shutil.copytree(tiny, pkg / name)
    return pkg


@pytest.fixture(scope="module")
def data(package, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("data")
    records = pf.pretraining_records(package, root / "bookswiki", package / pf.LARGE /
                                     "vocab.txt")
    return {"mrpc": pf.mrpc_folder(root / "glue"), "squad": pf.squad_folder(root / "SQuAD"),
            "bookswiki": records / "tfrecord"}


def demo(package: Path, python: str, argv: str, *extra: str):
    proc = pf.run_in_package(package, ["./demo_bert", *argv.split()[1:], *extra],
                             pf.package_env(package, PYTHON=python))
    assert "HABANA_USE_PREALLOC_BUFFER_FOR_ALLREDUCE" in proc.stdout  # the opening log
    return proc


@pytest.mark.parametrize("row, task", [
    ("./demo_bert finetuning -d bf16 -m base -t mrpc -b 32 -s 128 -v", "mrpc"),
    ("./demo_bert finetuning -d bf16 -m large -t mrpc -b 64 -s 128 -v", "mrpc"),
    ("./demo_bert finetuning -d bf16 -m base -t squad -b 32 -s 384 -v", "squad"),
    ("./demo_bert finetuning -d bf16 -m large -t squad -b 24 -s 384 -v", "squad"),
])
def test_finetuning_rows(stack_python, package, data, tmp_path, row, task):
    out = tmp_path / "out"
    argv = row.replace("-s 384", "-s 128")  # the tiny model has 128 positions
    proc = demo(package, stack_python, argv, "2", "-i", "2", "-o", str(out), "--dataset_path",
                str(data[task]))
    assert "launch.py --mpi-num-processes 2" in proc.stdout
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["weights_identical_across_ranks"] is True
    assert summary["precision"] == "bf16" and summary["num_train_steps"] == 2
    result = out / ("eval_results.json")
    assert result.is_file()


def test_pretraining_row(stack_python, package, data, tmp_path):
    out = tmp_path / "out"
    demo(package, stack_python, "./demo_bert pretraining -d bf16 -m large -b 64 8 -v", "2",
         "-i", "2,2", "-s", "32", "64", "--max_predictions_per_seq", "5", "10",
         "--no_steps_accumulation", "1", "-o", str(out), "--dataset_path",
         str(data["bookswiki"]))
    assert (out / "phase_1" / "model.ckpt-2.index").is_file()
    assert (out / "phase_2" / "model.ckpt-2.index").is_file()


def test_profile_line_writes_a_trace(stack_python, package, data, tmp_path):
    out = tmp_path / "out"
    pf.run_in_package(package, [
        stack_python, "demo_bert.py", "--command", "finetuning", "--model_variant", "large",
        "--data_type", "bf16", "--test_set", "mrpc", "--dataset_path", str(data["mrpc"]),
        "--epochs", "0.876", "--iterations_per_loop", "1", "--profile", "2,3",
        "-i", "3", "-b", "4", "-s", "32", "-o", str(out)])
    assert glob.glob(str(out / "plugins" / "profile" / "*" / "*.xplane.pb"))
