"""``--xla``: the train step is built with ``tf.function(jit_compile=True)``; refused on a
Gaudi HPU and with several ranks averaging gradients (the allreduce is a Python call)."""

from __future__ import annotations

import json
import math

import pytest

from models.bert_large.tensorflow import flags as tf_flags
from models.bert_large.tensorflow import run_pretraining
from tests.tf.finetune_fixtures import make_bert_dir, run_script, write_mrpc
from tests.tf.test_gaudi_flags import classifier_args, fake_sysfs, one_error_line

XLA_LINE = "train step: XLA (jit_compile)"


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return make_bert_dir(tmp_path_factory.mktemp("ckpt") / "uncased_L-2_H-64_A-4")


@pytest.fixture(scope="module")
def mrpc_dir(tmp_path_factory):
    return write_mrpc(tmp_path_factory.mktemp("glue") / "MRPC", num_train=8, num_dev=4)


def test_flag_is_parsed_like_the_other_booleans():
    for parser in (tf_flags.common_parser("x"), run_pretraining.build_parser()):
        assert tf_flags.parse_flags(parser, []).xla is False
        assert tf_flags.parse_flags(parser, ["--xla=true"]).xla is True
        assert tf_flags.parse_flags(parser, ["--xla"]).xla is True
        assert tf_flags.parse_flags(parser, ["--noxla"]).xla is False


def test_check_xla_ranks():
    on = tf_flags.parse_flags(tf_flags.common_parser("x"), ["--xla=true"])
    off = tf_flags.parse_flags(tf_flags.common_parser("x"), [])
    tf_flags.check_xla_ranks(on, 1, sync=False)
    tf_flags.check_xla_ranks(on, 1, sync=True)    # one process: nothing to sync
    tf_flags.check_xla_ranks(on, 4, sync=False)   # independent ranks: each compiles its own
    tf_flags.check_xla_ranks(off, 4, sync=True)
    with pytest.raises(tf_flags.FlagError, match=r"--xla=True with 4 ranks synchronising"):
        tf_flags.check_xla_ranks(on, 4, sync=True)


def test_classifier_trains_with_xla(bert_dir, mrpc_dir, tmp_path):
    out = tmp_path / "out"
    proc = run_script("run_classifier.py", classifier_args(
        bert_dir, mrpc_dir, out, "--xla=true", "--num_train_steps=2", "--log_steps=1"),
        MODELPKG_ACCEL_SYSFS=str(fake_sysfs(tmp_path / "accel")))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert XLA_LINE in proc.stdout
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["num_train_steps"] == 2
    assert [e["step"] for e in summary["loss_log"]] == [1, 2]
    assert all(math.isfinite(e["loss"]) and e["loss"] > 0 for e in summary["loss_log"])
    assert math.isfinite(summary["final_loss"])


def test_hpu_is_refused(bert_dir, mrpc_dir, tmp_path):
    proc = run_script("run_classifier.py", classifier_args(
        bert_dir, mrpc_dir, tmp_path / "out", "--xla=true", "--device=hpu"),
        MODELPKG_ACCEL_SYSFS=str(fake_sysfs(tmp_path / "accel")))
    line = one_error_line(proc, 2)
    assert "--xla=True" in line and "Gaudi HPU" in line
    assert not (tmp_path / "out").exists()


def test_sync_ranks_are_refused(bert_dir, mrpc_dir, tmp_path):
    # Looks like rank 0 of 2 under Open MPI: refused while checking flags, before any MPI call.
    proc = run_script("run_classifier.py", classifier_args(
        bert_dir, mrpc_dir, tmp_path / "out", "--xla=true",
        "--mpi_workers_sync_gradients=true"),
        MODELPKG_ACCEL_SYSFS=str(fake_sysfs(tmp_path / "accel")),
        OMPI_COMM_WORLD_RANK="0", OMPI_COMM_WORLD_SIZE="2",
        OMPI_COMM_WORLD_LOCAL_RANK="0", OMPI_COMM_WORLD_LOCAL_SIZE="2")
    line = one_error_line(proc, 2)
    assert "--xla=True with 2 ranks synchronising gradients" in line
    assert "XLA cannot compile" in line


@pytest.mark.slow
def test_pretraining_trains_with_xla(tmp_path):
    """Gradient accumulation (micro-batch and apply steps both compiled) for a few steps."""
    from tests.tf.conftest import make_config_dict, make_vocab_file
    from tests.tf.pretraining_fixtures import RUN_PRETRAINING, write_corpus
    from tests.tf.pretraining_fixtures import run_script as run_pretraining_script
    from tests.tf.test_run_pretraining import make_records, phase_args

    make_vocab_file(tmp_path / "vocab.txt")
    (tmp_path / "bert_config.json").write_text(json.dumps(make_config_dict()))
    write_corpus(tmp_path / "corpus" / "a.txt", num_documents=10, seed=1)
    data = make_records(tmp_path, 32, 5, "seq32")
    proc = run_pretraining_script(RUN_PRETRAINING, *phase_args(
        tmp_path, data, tmp_path / "out", "--xla=true", steps=3, warmup=1))
    assert XLA_LINE in proc.stdout
    losses = [float(w) for line in proc.stdout.splitlines() if " loss " in line
              for w in [line.split(" loss ")[1].split()[0].rstrip(",")]]
    assert losses and all(math.isfinite(v) for v in losses), proc.stdout[-3000:]
