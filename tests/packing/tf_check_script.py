"""Run in a subprocess (TensorFlow must not share the pytest process): compare what
models/bert_large/tfrecord.py wrote with what TensorFlow reads and writes.

    python tf_check_script.py CASES_JSON OURS_TFRECORD OUT_DIR

CASES_JSON: a list of examples, each {name: {"kind": "int64"|"float"|"bytes", "values": [...]}}
(bytes as hex); OURS_TFRECORD: the same examples written by our writer. Writes
OUT_DIR/tf_read.json (each record of OURS_TFRECORD through tf.data.TFRecordDataset +
tf.io.parse_single_example, as lists) and OUT_DIR/tf_written.tfrecord (the same examples written
by tf.io.TFRecordWriter, serialized with deterministic=True).
"""

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402


def feature(spec):
    kind, values = spec["kind"], spec["values"]
    if kind == "bytes":
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[bytes.fromhex(v) for v in values]))
    if kind == "float":
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def parse_spec(case):
    dtypes = {"int64": tf.int64, "float": tf.float32, "bytes": tf.string}
    return {name: tf.io.FixedLenFeature([len(s["values"])], dtypes[s["kind"]])
            for name, s in case.items()}


def main(cases_path: Path, ours: Path, out_dir: Path) -> None:
    cases = json.loads(cases_path.read_text())
    read = []
    for case, raw in zip(cases, tf.data.TFRecordDataset([str(ours)]).as_numpy_iterator()):
        parsed = tf.io.parse_single_example(raw, parse_spec(case))
        rec = {}
        for name, value in parsed.items():
            values = value.numpy().tolist()
            if case[name]["kind"] == "bytes":
                values = [v.hex() for v in values]
            rec[name] = values
        read.append(rec)
    total = sum(1 for _ in tf.data.TFRecordDataset([str(ours)]))
    (out_dir / "tf_read.json").write_text(json.dumps({"records": total, "read": read}))
    with tf.io.TFRecordWriter(str(out_dir / "tf_written.tfrecord")) as w:
        for case in cases:
            ex = tf.train.Example(features=tf.train.Features(
                feature={k: feature(v) for k, v in case.items()}))
            w.write(ex.SerializeToString(deterministic=True))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
