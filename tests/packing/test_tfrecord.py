"""models/bert_large/tfrecord.py: CRC32C, framing, the tf.train.Example encoder, and agreement
with TensorFlow (read back identically, byte-identical to TF's writer)."""

from __future__ import annotations

import json
import random
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.bert_large import tfrecord as tr
from models.bert_large.pytorch import tfrecord_reader

REPO = Path(__file__).resolve().parents[2]


def test_crc32c_known_values_and_implementations_agree():
    assert tr._crc32c_py(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert tr._crc32c_numpy(b"123456789" * 20) == tr._crc32c_py(b"123456789" * 20)
    rng = random.Random(3)
    # around the numpy path's 2048-byte rows and its 4-byte initial-value trick
    for n in (4, 5, 95, 96, 97, 2047, 2048, 2049, 4095, 4096, 4100, 9000):
        data = bytes(rng.randrange(256) for _ in range(n))
        assert tr._crc32c_numpy(data) == tr._crc32c_py(data), n
        assert tr.crc32c(data) == tr._crc32c_py(data), n
    assert tr.crc32c(b"") == 0 and tr.crc32c(b"a") == tr._crc32c_py(b"a")


def test_reader_module_re_exports_the_one_implementation():
    for name in ("TFRecordError", "crc32c", "masked_crc32c", "iter_records", "parse_example",
                 "iter_examples"):
        assert getattr(tfrecord_reader, name) is getattr(tr, name)


def test_tensorflow_pipeline_uses_the_shared_crc():
    text = (REPO / "models/bert_large/tensorflow/pretraining_data.py").read_text()
    assert "from models.bert_large.tfrecord import masked_crc32c as _masked_crc32c" in text
    assert "0x82F63B78" not in text  # no second CRC table


def test_frame_record_layout():
    framed = tr.frame_record(b"hello")
    length, crc = struct.unpack("<QI", framed[:12])
    assert length == 5 and crc == tr.masked_crc32c(framed[:8])
    assert framed[12:17] == b"hello"
    assert struct.unpack("<I", framed[17:])[0] == tr.masked_crc32c(b"hello")


def test_encode_parse_roundtrip_edge_values(tmp_path):
    ex = {"ints": [0, 1, 127, 128, 300, 2**40, -1, -(2**63), 2**63 - 1],
          "floats": np.array([0.0, 1.5, -2.25, 3.0e38, 1e-30], np.float32),
          "bytes": [b"hello", b"", bytes(range(256))],
          "empty": [], "empty_f": np.zeros(0, np.float32)}
    path = tmp_path / "x.tfrecord"
    assert tr.write_tfrecord(path, [tr.encode_example(ex)] * 3) == 3
    got = list(tr.iter_examples(path))
    assert len(got) == 3
    assert got[0]["ints"].tolist() == ex["ints"]
    np.testing.assert_array_equal(got[0]["floats"], ex["floats"])
    assert got[0]["bytes"] == ex["bytes"]
    assert got[0]["empty"].size == 0 and got[0]["empty_f"].dtype == np.float32


def test_batch_encoder_equals_one_at_a_time():
    rng = np.random.default_rng(0)
    ids = rng.integers(-5, 2**20, size=(7, 33))
    w = rng.random((7, 4)).astype(np.float32)
    batch = tr.encode_examples({"ids": ids, "w": w})
    assert batch == [tr.encode_example({"ids": ids[i], "w": w[i]}) for i in range(7)]
    with pytest.raises(ValueError, match="rows"):
        tr.encode_examples({"a": ids, "b": w[:3]})


def test_writer_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.tfrecord"
    with pytest.raises(RuntimeError):
        with tr.TFRecordWriter(target) as w:
            w.write(b"x")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with tr.TFRecordWriter(target) as w:
        w.write(b"x")
        assert not target.exists()  # only the hidden temporary name until close
    assert [bytes(r) for r in tr.iter_records(target)] == [b"x"]


def _cases() -> list[dict]:
    rng = random.Random(5)
    cases = [{"ints": {"kind": "int64", "values": [0, 1, 127, 128, 300, 2**40, -1, -(2**63), 2**63 - 1]},
              "floats": {"kind": "float", "values": [0.0, 1.5, -2.25, 3.0e38, 1e-30]},
              "bytes": {"kind": "bytes", "values": [b"hello".hex(), "", bytes(range(256)).hex()]},
              "empty": {"kind": "int64", "values": []}}]
    for _ in range(20):  # pretraining-like records, packed and not
        n = rng.randint(1, 600)
        cases.append({
            "input_ids": {"kind": "int64", "values": [rng.randrange(0, 30522) for _ in range(n)]},
            "input_mask": {"kind": "int64", "values": [rng.randint(0, 3) for _ in range(n)]},
            "masked_lm_weights": {"kind": "float", "values": [float(rng.randint(0, 3)) for _ in range(rng.randint(1, 80))]},
            "next_sentence_labels": {"kind": "int64", "values": [rng.randint(0, 1)]}})
    return cases


def _ours(case: dict) -> bytes:
    ex = {}
    for name, spec in case.items():
        if spec["kind"] == "bytes":
            ex[name] = [bytes.fromhex(v) for v in spec["values"]]
        elif spec["kind"] == "float":
            ex[name] = np.asarray(spec["values"], np.float32)
        else:
            ex[name] = np.asarray(spec["values"], np.int64)
    return tr.encode_example(ex)


@pytest.mark.slow
def test_tensorflow_reads_our_records_and_writes_the_same_bytes(tmp_path):
    cases = _cases()
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    ours = tmp_path / "ours.tfrecord"
    tr.write_tfrecord(ours, [_ours(c) for c in cases])
    proc = subprocess.run([sys.executable, str(REPO / "tests/packing/tf_check_script.py"),
                           str(tmp_path / "cases.json"), str(ours), str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "tf_read.json").read_text())
    assert result["records"] == len(cases)
    for case, got in zip(cases, result["read"]):
        for name, spec in case.items():
            want = spec["values"]
            if spec["kind"] == "float":
                want = np.asarray(want, np.float32).tolist()
            assert got[name] == want, name
    assert (tmp_path / "tf_written.tfrecord").read_bytes() == ours.read_bytes()
