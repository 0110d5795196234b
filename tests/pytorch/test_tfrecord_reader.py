"""The pure-Python TFRecord / tf.train.Example reader against files TensorFlow wrote."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from models.bert_large.pytorch import tfrecord_reader as tr
from models.bert_large.pytorch.data import PHASE_GLOBS, PretrainingBatches, find_files, record_shape
from tests.pytorch.conftest import REPO, child_env, run
from tests.pytorch.pretraining_data import encode_example, write_tfrecord


@pytest.fixture(scope="module")
def tf_files(tmp_path_factory) -> Path:
    """Records written by TensorFlow (and create_pretraining_data.py) in a subprocess."""
    out = tmp_path_factory.mktemp("tfwritten")
    run([sys.executable, REPO / "tests" / "pytorch" / "tf_writer_script.py", out],
        env=child_env(TF_CPP_MIN_LOG_LEVEL="3"), timeout=300)
    return out


def _assert_same(ours: dict, theirs: dict) -> None:
    assert set(ours) == set(theirs)
    for name, want in theirs.items():
        got = ours[name]
        if want["kind"] == "bytes_list":
            assert [v.hex() for v in got] == want["values"], name
        elif want["kind"] == "float_list":
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, np.asarray(want["values"], dtype=np.float32))
        else:
            assert got.dtype == np.int64
            assert got.tolist() == want["values"], name


@pytest.mark.slow
def test_reads_what_tensorflow_wrote(tf_files: Path):
    expected = json.loads((tf_files / "tf_expected.json").read_text())
    ours = list(tr.iter_examples(tf_files / "tf_written.tfrecord"))
    assert len(ours) == len(expected) == 31
    for got, want in zip(ours, expected):
        _assert_same(got, want)
    # the edge cases: 10-byte varints (negative, int64 min/max) and an empty list
    assert ours[0]["ints"].tolist()[-3:] == [-1, -(2**63), 2**63 - 1]
    assert ours[0]["empty"].size == 0


@pytest.mark.slow
def test_reads_create_pretraining_data_output(tf_files: Path):
    if not (tf_files / "cpd_expected.json").exists():
        pytest.skip("models/bert_large/tensorflow/create_pretraining_data.py is not in the tree")
    expected = json.loads((tf_files / "cpd_expected.json").read_text())
    for rel, records in expected.items():
        ours = list(tr.iter_examples(tf_files / "cpd" / rel))
        assert len(ours) == len(records) > 0
        for got, want in zip(ours, records):
            _assert_same(got, want)
    # and the training input pipeline finds and batches them per phase
    dataset = tf_files / "cpd"
    for phase, (seq, pred) in ((1, (128, 20)), (2, (64, 10))):
        files = find_files(dataset, PHASE_GLOBS[phase])
        assert record_shape(files[0]) == (seq, pred)
        batch = next(iter(PretrainingBatches(files, 4, seq, pred)))
        assert batch["input_ids"].shape == (4, seq)
        assert batch["masked_lm_positions"].shape == (4, pred)
        weights = batch["masked_lm_weights"]
        ids = batch["masked_lm_ids"]
        assert ((weights > 0) == (ids > 0)).all()  # real predictions carry weight 1


def test_crc32c_known_value_and_fallback():
    assert tr.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    data = bytes(range(256)) * 3
    assert tr._crc32c_py(data) == tr.crc32c(data)


def _tiny_file(path: Path, n: int = 3) -> Path:
    write_tfrecord(path, [encode_example({"input_ids": [i, 300, 2**35], "w": [0.5]}) for i in range(n)])
    return path


def test_roundtrip_of_own_writer(tmp_path: Path):
    recs = list(tr.iter_examples(_tiny_file(tmp_path / "a")))
    assert [r["input_ids"].tolist() for r in recs] == [[i, 300, 2**35] for i in range(3)]
    assert recs[0]["w"].tolist() == [0.5]


def test_corrupted_data_names_file_and_offset(tmp_path: Path):
    path = _tiny_file(tmp_path / "bad")
    raw = bytearray(path.read_bytes())
    first_len = struct.unpack("<Q", raw[:8])[0]
    raw[16 + first_len + 12 + 3] ^= 0xFF  # a data byte of the second record
    path.write_bytes(bytes(raw))
    with pytest.raises(tr.TFRecordError, match=rf"bad: data CRC mismatch in the record at byte {16 + first_len}"):
        list(tr.iter_records(path))
    assert len(list(tr.iter_records(path, verify=False))) == 3


def test_truncated_file_is_reported(tmp_path: Path):
    path = _tiny_file(tmp_path / "cut")
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(tr.TFRecordError, match="truncated record"):
        list(tr.iter_records(path))


def test_missing_dataset_files_say_what_to_set(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="set DATASET_DIR"):
        find_files(tmp_path, PHASE_GLOBS[1])
