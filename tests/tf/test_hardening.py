"""Issue "Hardening" (TensorFlow side): damaged inputs and a frozen rank end with one
``error: ...`` line naming the file / rank and a non-zero status, never a traceback, a crash
or a hang.

1. a TFRecord header claiming 2^40 bytes (TensorFlow would crash allocating it);
2. a payload that is not a ``tf.train.Example``;
3. a truncated checkpoint (``.index`` or ``.data-*``), for init, resume and run_squad;
4. a vocab without the special tokens a script writes;
5. a frozen (SIGSTOPped) MPI rank with ``--collective_timeout``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.tf.conftest import (TINY_VOCAB, make_config_dict, make_google_tensors,
                               make_vocab_file, save_tf1_checkpoint)
from tests.tf.finetune_fixtures import write_squad
from tests.tf.finetune_fixtures import run_script as run_finetune
from tests.tf.pretraining_fixtures import (CREATE_DATA, REPO_ROOT, RUN_PRETRAINING, run_script,
                                           subprocess_env)

tf = pytest.importorskip("tensorflow")

from models.bert_large.tensorflow import checkpoint  # noqa: E402
from models.bert_large.tensorflow import flags as tf_flags  # noqa: E402
from models.bert_large.tensorflow import pretraining_data as pdata  # noqa: E402

SEQ, PRED = 32, 5


def _example(rng, seq=SEQ, pred=PRED) -> bytes:
    def ints(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    ids = [int(x) for x in rng.integers(5, len(TINY_VOCAB), seq)]
    feats = {"input_ids": ints(ids), "input_mask": ints([1] * seq),
             "segment_ids": ints([0] * (seq // 2) + [1] * (seq - seq // 2)),
             "masked_lm_positions": ints(list(range(1, pred + 1))),
             "masked_lm_ids": ints(ids[1:pred + 1]),
             "masked_lm_weights": tf.train.Feature(
                 float_list=tf.train.FloatList(value=[1.0] * pred)),
             "next_sentence_labels": ints([int(rng.integers(0, 2))])}
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()


def write_records(path, count=32, seed=0) -> Path:
    import numpy as np

    rng = np.random.default_rng(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as w:
        for _ in range(count):
            w.write(_example(rng))
    return path


def frame(payload: bytes) -> bytes:
    """One TFRecord: length, masked CRC32C of the length, payload, masked CRC32C of it."""
    length = struct.pack("<Q", len(payload))
    return (length + struct.pack("<I", pdata._masked_crc32c(length)) + payload
            + struct.pack("<I", pdata._masked_crc32c(payload)))


def huge_header() -> bytes:
    """A well-formed header (its CRC is right) claiming 2^40 bytes."""
    length = struct.pack("<Q", 1 << 40)
    return length + struct.pack("<I", pdata._masked_crc32c(length))


GARBAGE = b"\xff\xfe\x00 this is not a tf.train.Example \x01\x02\xff" * 4


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("hardening")
    make_vocab_file(root / "vocab.txt")
    config = make_config_dict()
    (root / "bert_config.json").write_text(json.dumps(config))
    for i in range(2):
        write_records(root / "data" / f"part-{i:05d}", seed=i)
    save_tf1_checkpoint(root / "init" / "bert_model.ckpt", make_google_tensors(config))
    return root


def pretrain_args(root, data, out, *extra):
    return [f"--input_files_dir={data}", f"--output_dir={out}",
            f"--bert_config_file={root}/bert_config.json", "--do_train=True",
            "--train_batch_size=4", f"--max_seq_length={SEQ}",
            f"--max_predictions_per_seq={PRED}", "--num_train_steps=4",
            "--num_warmup_steps=1", "--save_checkpoints_steps=100", "--learning_rate=1e-3",
            *extra]


def assert_one_error_line(proc, status, *needles):
    err_lines = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert proc.returncode == status, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert len(err_lines) == 1, proc.stderr[-3000:]
    for needle in needles:
        assert str(needle) in err_lines[0], (needle, err_lines[0])
    return err_lines[0]


def copy_data(root, tmp_path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(root / "data", data)
    return data


# -- 1. record framing -------------------------------------------------------------------------

def record_offsets(raw: bytes) -> list[int]:
    offsets, off = [], 0
    while off < len(raw):
        offsets.append(off)
        off += 16 + struct.unpack("<Q", raw[off:off + 8])[0]
    return offsets


def test_scan_framing_counts_records_and_names_the_bad_offset(root, tmp_path):
    good = (root / "data" / "part-00000").read_bytes()
    assert pdata.scan_framing(str(root / "data" / "part-00000")) == 32
    offsets = record_offsets(good)
    bad = tmp_path / "huge.tfrecord"
    bad.write_bytes(good[:offsets[3]] + huge_header() + good[offsets[3] + 12:])
    with pytest.raises(pdata.CorruptRecordError) as err:
        pdata.scan_framing(str(bad))
    assert str(bad) in str(err.value) and f"offset {offsets[3]}" in str(err.value)
    assert "claims 1099511627776 bytes" in str(err.value)

    flipped = bytearray(good)
    flipped[offsets[1] + 9] ^= 0x40  # the length CRC of record 1
    bad.write_bytes(bytes(flipped))
    with pytest.raises(pdata.CorruptRecordError, match=f"offset {offsets[1]} fails its CRC"):
        pdata.scan_framing(str(bad))
    bad.write_bytes(good[:offsets[5] + 7])  # cut inside a header
    with pytest.raises(pdata.CorruptRecordError, match="truncated TFRecord file: 7 byte"):
        pdata.scan_framing(str(bad))


@pytest.mark.slow
def test_record_claiming_2_40_bytes_fails_naming_file_and_offset(root, tmp_path):
    data = copy_data(root, tmp_path)
    victim = data / "part-00001"
    victim.write_bytes(huge_header() + victim.read_bytes()[12:])
    proc = run_script(RUN_PRETRAINING, *pretrain_args(root, data, tmp_path / "out"),
                      check=False, timeout=240)
    line = assert_one_error_line(proc, 1, victim, "offset 0", "1099511627776")
    assert line.startswith("run_pretraining: error:")


# -- 2. payload that is not an Example ----------------------------------------------------------

@pytest.mark.slow
def test_garbage_example_payload_fails_naming_the_file(root, tmp_path):
    data = copy_data(root, tmp_path)
    victim = data / "part-00000"
    victim.write_bytes(frame(GARBAGE) + victim.read_bytes())
    proc = run_script(RUN_PRETRAINING, *pretrain_args(root, data, tmp_path / "out"),
                      check=False, timeout=240)
    assert_one_error_line(proc, 1, victim, "not a serialized tf.train.Example")


def test_garbage_record_inside_a_file_is_named_while_reading(root, tmp_path):
    data = copy_data(root, tmp_path)
    victim = data / "part-00001"
    victim.write_bytes(victim.read_bytes() + frame(GARBAGE))
    files = sorted(str(p) for p in data.iterdir())
    pdata.check_record_shapes(files, SEQ, PRED)  # the first records are fine
    with pytest.raises(pdata.CorruptRecordError) as err:
        for _ in pdata.PretrainingData(files, 8, SEQ, PRED, repeat=False).batches():
            pass
    assert str(err.value).startswith(f"{victim}: a record is not a serialized tf.train.Example")


# -- 3. truncated checkpoints -------------------------------------------------------------------

def truncated_copy(src_prefix: Path, dst_dir: Path, which: str, name="bert_model.ckpt") -> Path:
    dst_dir.mkdir(parents=True, exist_ok=True)
    for f in src_prefix.parent.glob(src_prefix.name + ".*"):
        shutil.copy(f, dst_dir / (name + f.name[len(src_prefix.name):]))
    victim = next(dst_dir.glob(f"{name}.{which}*"))
    raw = victim.read_bytes()
    victim.write_bytes(raw[: len(raw) // 2])
    return dst_dir / name


def test_truncated_bundle_is_refused_naming_the_prefix(root, tmp_path, fp32_policy):
    from models.bert_large.tensorflow import modeling

    src = root / "init" / "bert_model.ckpt"
    short_index = truncated_copy(src, tmp_path / "i", "index")
    assert "cut short" in tf_flags.bundle_problem(str(short_index))
    assert tf_flags.bundle_problem(str(src)) is None
    short_data = truncated_copy(src, tmp_path / "d", "data")
    model = modeling.BertForPreTraining(modeling.BertConfig(**make_config_dict()))
    for prefix in (short_index, short_data):
        with pytest.raises(checkpoint.CheckpointError) as err:
            checkpoint.load_init_checkpoint(model, prefix)
        assert f"checkpoint {prefix} is truncated or corrupt" in str(err.value)


@pytest.mark.slow
def test_run_pretraining_truncated_init_and_resume_checkpoints(root, tmp_path):
    src = root / "init" / "bert_model.ckpt"
    short_index = truncated_copy(src, tmp_path / "i", "index")
    proc = run_script(RUN_PRETRAINING, *pretrain_args(
        root, root / "data", tmp_path / "o1", f"--init_checkpoint={short_index}"), check=False)
    assert_one_error_line(proc, 2, short_index, "truncated or corrupt")

    short_data = truncated_copy(src, tmp_path / "d", "data")
    proc = run_script(RUN_PRETRAINING, *pretrain_args(
        root, root / "data", tmp_path / "o2", f"--init_checkpoint={short_data}"), check=False,
        timeout=240)
    assert_one_error_line(proc, 1, short_data, "truncated or corrupt")

    out = tmp_path / "resume"
    latest = truncated_copy(src, out, "data", name="model.ckpt-5")
    (out / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-5"\n'
                                    'all_model_checkpoint_paths: "model.ckpt-5"\n')
    proc = run_script(RUN_PRETRAINING, *pretrain_args(root, root / "data", out,
                                                      "--resume=True"), check=False,
                      timeout=240)
    assert_one_error_line(proc, 1, latest, "truncated or corrupt")


@pytest.mark.slow
def test_run_squad_truncated_init_checkpoint(root, tmp_path):
    train = write_squad(tmp_path / "train.json", num_paragraphs=2, context_words=30)
    src = root / "init" / "bert_model.ckpt"
    for which, status in (("index", 2), ("data", 1)):
        prefix = truncated_copy(src, tmp_path / which / "uncased_L-2_H-64_A-4", which)
        proc = run_finetune("run_squad.py", [
            f"--vocab_file={root}/vocab.txt", f"--bert_config_file={root}/bert_config.json",
            f"--init_checkpoint={prefix}", "--do_train=True", f"--train_file={train}",
            "--max_seq_length=64", "--doc_stride=24", "--max_query_length=16",
            "--train_batch_size=4", f"--output_dir={tmp_path / which / 'out'}"], timeout=240)
        line = assert_one_error_line(proc, status, prefix, "truncated or corrupt")
        assert line.startswith("error:")


# -- 4. vocab without the special tokens ------------------------------------------------------

@pytest.mark.parametrize("script", ["run_squad.py", "run_classifier.py"])
def test_vocab_without_special_tokens_is_a_usage_error(root, tmp_path, script):
    vocab = make_vocab_file(tmp_path / "vocab.txt",
                            [t for t in TINY_VOCAB if t not in ("[CLS]", "[SEP]")])
    (tmp_path / "MRPC").mkdir()
    for split in ("train", "dev"):
        (tmp_path / "MRPC" / f"{split}.tsv").write_text("Quality\t#1 ID\t#2 ID\t#1\t#2\n")
    train = write_squad(tmp_path / "train.json", num_paragraphs=1)
    task = ([f"--train_file={train}"] if script == "run_squad.py"
            else ["--task_name=MRPC", f"--data_dir={tmp_path / 'MRPC'}"])
    start = time.monotonic()
    proc = run_finetune(script, [f"--vocab_file={vocab}",
                                 f"--bert_config_file={root}/bert_config.json",
                                 "--do_train=True", *task, f"--output_dir={tmp_path / 'o'}"])
    assert_one_error_line(proc, 2, vocab, "[CLS] [SEP]")
    assert "tensorflow" not in proc.stderr.lower()
    assert time.monotonic() - start < 60


def test_create_pretraining_data_vocab_without_mask_is_a_usage_error(tmp_path):
    vocab = make_vocab_file(tmp_path / "vocab.txt", [t for t in TINY_VOCAB if t != "[MASK]"])
    (tmp_path / "a.txt").write_text("hello world.\n")
    proc = run_script(CREATE_DATA, f"--input_file={tmp_path}/a.txt", f"--vocab_file={vocab}",
                      f"--output_file={tmp_path}/o.tfrecord", check=False)
    assert_one_error_line(proc, 2, vocab, "[MASK]")


# -- 5. a frozen rank -----------------------------------------------------------------------

def test_collective_timeout_flag_and_variable_are_checked_before_work(root, tmp_path):
    proc = run_script(RUN_PRETRAINING, *pretrain_args(root, root / "data", tmp_path / "o",
                                                      "--collective_timeout=-1"), check=False)
    assert_one_error_line(proc, 2, "--collective_timeout")
    env = dict(subprocess_env(), COLLECTIVE_TIMEOUT="soon")
    proc = run_script(RUN_PRETRAINING, *pretrain_args(root, root / "data", tmp_path / "o"),
                      check=False, env=env)
    assert_one_error_line(proc, 2, "COLLECTIVE_TIMEOUT='soon'")


def _rank_pid(rank: int, marker: str) -> int | None:
    """The pid of the MPI rank ``rank`` whose command line contains ``marker``."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker.encode() in cmdline and f"OMPI_COMM_WORLD_RANK={rank}".encode() in environ:
            return int(entry)
    return None


@pytest.mark.mpi
@pytest.mark.slow
def test_a_frozen_rank_stops_the_job_naming_it(root, tmp_path):
    if shutil.which("mpirun") is None:
        pytest.skip("mpirun not installed")
    out = tmp_path / "frozen-rank-out"
    cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2",
           "-x", "PYTHONPATH", "-x", "NUM_INTRA_THREADS", "-x", "NUM_INTER_THREADS",
           "-x", "TF_CPP_MIN_LOG_LEVEL", sys.executable, str(RUN_PRETRAINING),
           *pretrain_args(root, root / "data", out, "--collective_timeout=4"),
           "--num_train_steps=1000", "--num_warmup_steps=0", "--log_steps=1"]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    stopped = None
    try:
        # Rank 0 logs "step 2/1000" once both ranks finished step 2; then freeze rank 1.
        deadline = time.monotonic() + 240
        for line in proc.stdout:
            if "step 2/1000" in line:
                break
            assert time.monotonic() < deadline, "training did not reach step 2"
        stopped = _rank_pid(1, str(out))
        assert stopped, "rank 1 not found"
        os.kill(stopped, signal.SIGSTOP)
        frozen_at = time.monotonic()
        stdout, stderr = proc.communicate(timeout=60)
        waited = time.monotonic() - frozen_at
    finally:
        for pid in (stopped,):
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    assert proc.returncode != 0
    assert waited < 60
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, stderr[-3000:]
    assert "rank(s) 1 of 2 did not answer within 4s" in lines[0]
    # (rank 1 may be stopped before the gradient allreduce or the metrics allgather of a step)
    assert "rank 0 was waiting in " in lines[0] and " at step " in lines[0]
    assert "--collective_timeout" in lines[0]
    assert "Traceback" not in stderr
