"""Run in a subprocess (TensorFlow must not share the pytest process with tfrecord/torch):
write TFRecords with TensorFlow itself and dump what TF reads back as JSON.

    python tf_writer_script.py OUT_DIR

OUT_DIR/tf_written.tfrecord + tf_expected.json: edge-case values written by tf.io.TFRecordWriter.
OUT_DIR/cpd/seq_128/part-00000-of-00001_128, OUT_DIR/cpd/seq_512/part-00000-of-00001 +
cpd_expected.json: the output of models/bert_large/tensorflow/create_pretraining_data.py (when
that script exists), parsed by TF.
"""

import json
import os
import random
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def feature(values):
    if values and isinstance(values[0], bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
    if values and isinstance(values[0], float):
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def dump(path):
    """Every record of ``path`` as TF parses it: {name: list of values}."""
    out = []
    for raw in tf.data.TFRecordDataset([str(path)]).as_numpy_iterator():
        ex = tf.train.Example.FromString(raw)
        rec = {}
        for name, feat in ex.features.feature.items():
            kind = feat.WhichOneof("kind")
            values = list(getattr(feat, kind).value) if kind else []
            if kind == "bytes_list":
                values = [v.hex() for v in values]
            rec[name] = {"kind": kind, "values": values}
        out.append(rec)
    return out


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    path = out_dir / "tf_written.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as w:
        edge = {
            "ints": [0, 1, 127, 128, 300, 2**40, -1, -(2**63), 2**63 - 1],
            "floats": [0.0, 1.5, -2.25, 3.0e38, 1e-30],
            "bytes": [b"hello", b"", bytes(range(256))],
            "one_int": [7],
            "empty": [],
        }
        w.write(tf.train.Example(features=tf.train.Features(
            feature={k: feature(v) for k, v in edge.items()})).SerializeToString())
        for _ in range(30):  # pretraining-like records with a random number of values
            n = rng.randint(0, 600)
            rec = {"input_ids": [rng.randrange(0, 30522) for _ in range(n)],
                   "masked_lm_weights": [rng.random() for _ in range(rng.randint(1, 80))],
                   "next_sentence_labels": [rng.randint(0, 1)]}
            w.write(tf.train.Example(features=tf.train.Features(
                feature={k: feature(v) for k, v in rec.items()})).SerializeToString())
    (out_dir / "tf_expected.json").write_text(json.dumps(dump(path)))

    cpd = REPO / "models" / "bert_large" / "tensorflow" / "create_pretraining_data.py"
    if not cpd.exists():
        return
    from models.bert_large.tensorflow import create_pretraining_data

    words = [f"w{i}" for i in range(150)]
    (out_dir / "vocab.txt").write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words) + "\n")
    lines = []
    for _ in range(12):  # documents
        for _ in range(rng.randint(3, 8)):
            lines.append(" ".join(rng.choice(words) for _ in range(rng.randint(5, 30))))
        lines.append("")
    (out_dir / "corpus.txt").write_text("\n".join(lines) + "\n")
    expected = {}
    for sub, name, seq, pred in (("seq_128", "part-00000-of-00001_128", 128, 20),
                                 ("seq_512", "part-00000-of-00001", 64, 10)):
        (out_dir / "cpd" / sub).mkdir(parents=True, exist_ok=True)
        target = out_dir / "cpd" / sub / name
        cfg = create_pretraining_data.InstanceConfig(
            max_seq_length=seq, max_predictions_per_seq=pred, dupe_factor=2)
        create_pretraining_data.create_pretraining_data(
            [str(out_dir / "corpus.txt")], str(out_dir / "vocab.txt"), [str(target)], cfg,
            plain_progress=True)
        expected[f"{sub}/{name}"] = dump(target)
    (out_dir / "cpd_expected.json").write_text(json.dumps(expected))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
