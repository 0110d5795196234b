"""create_pretraining_data.py (text -> TFRecords) and pretraining_data.py (TFRecords ->
batches): features, shapes, masking rates, determinism, sharding, resume position, and the
errors for corrupt, truncated and mismatched files."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.tf.conftest import TINY_VOCAB, make_vocab_file
from tests.tf.pretraining_fixtures import (CREATE_DATA, RUN_PRETRAINING, run_script,
                                           subprocess_env, write_corpus)

tf = pytest.importorskip("tensorflow")

from models.bert_large.tensorflow import create_pretraining_data as cpd  # noqa: E402
from models.bert_large.tensorflow import pretraining_data as pdata  # noqa: E402

SEQ, PRED = 48, 8
IDS = {t: i for i, t in enumerate(TINY_VOCAB)}
FEATURES = {"input_ids", "input_mask", "segment_ids", "masked_lm_positions", "masked_lm_ids",
            "masked_lm_weights", "next_sentence_labels"}


def read_examples(paths) -> list[dict]:
    rows = []
    for path in paths:
        for rec in tf.data.TFRecordDataset(str(path)):
            feats = tf.train.Example.FromString(rec.numpy()).features.feature
            row = {}
            for k, f in feats.items():
                kind = f.WhichOneof("kind")
                row[k] = (np.array(f.float_list.value, np.float32) if kind == "float_list"
                          else np.array(f.int64_list.value, np.int64))
                row[k + ":kind"] = kind
            rows.append(row)
    return rows


def make_data(tmp_path, name="out", seed=12345, num_shards=2, num_documents=60, **cfg):
    vocab = make_vocab_file(tmp_path / "vocab.txt")
    corpus_dir = tmp_path / "corpus"
    if not corpus_dir.exists():
        write_corpus(corpus_dir / "a.txt", num_documents=num_documents, seed=1)
        write_corpus(corpus_dir / "b.txt", num_documents=num_documents, seed=2)
    inputs = cpd.expand_input_patterns(f"{corpus_dir}/*.txt")
    outputs = cpd.shard_names(str(tmp_path / name), num_shards)
    config = cpd.InstanceConfig(**{"max_seq_length": SEQ, "max_predictions_per_seq": PRED,
                                   "dupe_factor": 2, **cfg})
    summary = cpd.create_pretraining_data(inputs, str(vocab), outputs, config,
                                          random_seed=seed, plain_progress=True)
    return summary, outputs


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ptdata")
    summary, outputs = make_data(tmp)
    return tmp, summary, outputs, read_examples(outputs)


def test_records_have_the_standard_features_and_shapes(dataset):
    _, summary, outputs, rows = dataset
    assert len(rows) == summary["instances"] > 100
    for row in rows:
        assert {k for k in row if ":" not in k} == FEATURES
        assert row["masked_lm_weights:kind"] == "float_list"
        for k in ("input_ids", "input_mask", "segment_ids"):
            assert row[k].shape == (SEQ,)
        for k in ("masked_lm_positions", "masked_lm_ids", "masked_lm_weights"):
            assert row[k].shape == (PRED,)
        assert row["next_sentence_labels"].shape == (1,)

        n = int(row["input_mask"].sum())
        assert (row["input_mask"][:n] == 1).all() and (row["input_mask"][n:] == 0).all()
        p = int(row["masked_lm_weights"].sum())
        pos = row["masked_lm_positions"][:p]
        ids = row["input_ids"].copy()
        ids[pos] = row["masked_lm_ids"][:p]  # the text before masking
        assert ids[0] == IDS["[CLS]"] and ids[n - 1] == IDS["[SEP]"]
        assert (ids[n:] == 0).all()
        seps = np.flatnonzero(ids[:n] == IDS["[SEP]"])
        assert len(seps) == 2  # [CLS] A [SEP] B [SEP]
        seg = row["segment_ids"]
        assert (seg[:seps[0] + 1] == 0).all() and (seg[seps[0] + 1:n] == 1).all()
        assert (seg[n:] == 0).all()

        assert (np.diff(pos) > 0).all(), "positions sorted and distinct"
        assert (pos > 0).all() and (pos < n).all()
        assert not np.isin(row["masked_lm_ids"][:p], [IDS["[CLS]"], IDS["[SEP]"]]).any()
        assert (row["masked_lm_positions"][p:] == 0).all()
        # Exactly google's budget: round(n * prob), at least 1, at most max_predictions.
        assert p == min(PRED, max(1, int(round(n * 0.15))))
    # Every shard got instances dealt round-robin.
    counts = summary["instances_per_file"]
    assert len(counts) == len(outputs) and max(counts) - min(counts) <= 1


def test_masking_rate_and_80_10_10_split(dataset):
    _, summary, _, rows = dataset
    tokens = sum(int(r["input_mask"].sum()) for r in rows)
    masked = sum(int(r["masked_lm_weights"].sum()) for r in rows)
    assert 0.12 < masked / tokens < 0.18
    assert abs(summary["masked_fraction"] - masked / tokens) < 1e-9
    became_mask = kept = replaced = 0
    for r in rows:
        p = int(r["masked_lm_weights"].sum())
        now = r["input_ids"][r["masked_lm_positions"][:p]]
        orig = r["masked_lm_ids"][:p]
        became_mask += int((now == IDS["[MASK]"]).sum())
        kept += int((now == orig).sum())
        replaced += int(((now != orig) & (now != IDS["[MASK]"])).sum())
    assert masked > 1000
    assert 0.75 < became_mask / masked < 0.85
    assert 0.06 < kept / masked < 0.14
    assert 0.06 < replaced / masked < 0.14
    # Both next-sentence labels, random-next at least half the time (single-chunk
    # instances are always random-next).
    labels = np.array([int(r["next_sentence_labels"][0]) for r in rows])
    assert 0.45 < labels.mean() < 0.8


def test_predictions_capped_by_max_predictions_per_seq(tmp_path):
    summary, outputs = make_data(tmp_path, masked_lm_prob=0.5, num_documents=20)
    rows = read_examples(outputs)
    counts = {int(r["masked_lm_weights"].sum()) for r in rows}
    long_rows = [r for r in rows if r["input_mask"].sum() * 0.5 >= PRED]
    assert long_rows and all(r["masked_lm_weights"].sum() == PRED for r in long_rows)
    assert max(counts) == PRED


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    _, first = make_data(tmp_path, name="one", num_documents=20)
    _, second = make_data(tmp_path, name="two", num_documents=20)
    _, third = make_data(tmp_path, name="three", seed=7, num_documents=20)
    for a, b in zip(first, second):
        assert open(a, "rb").read() == open(b, "rb").read()
    assert open(first[0], "rb").read() != open(third[0], "rb").read()


def test_whole_word_masking_masks_every_piece_of_a_word(tmp_path):
    _, outputs = make_data(tmp_path, do_whole_word_mask=True, num_documents=30)
    rows = read_examples(outputs)
    continuation = np.array([t.startswith("##") for t in TINY_VOCAB])
    checked = 0
    for r in rows:
        p = int(r["masked_lm_weights"].sum())
        masked = set(r["masked_lm_positions"][:p].tolist())
        orig = r["input_ids"].copy()
        orig[r["masked_lm_positions"][:p]] = r["masked_lm_ids"][:p]
        for i in masked:
            if continuation[orig[i]]:  # a "##" piece: the piece before it is masked too
                assert i - 1 in masked
                checked += 1
            if i + 1 < len(orig) and continuation[orig[i + 1]] and r["input_mask"][i + 1]:
                assert i + 1 in masked
    assert checked > 10


def test_cached_encoder_gives_the_tokenizers_ids(tmp_path):
    from models.bert_large.tensorflow import tokenization

    tok = tokenization.FullTokenizer(make_vocab_file(tmp_path / "vocab.txt"))
    lines = ["Hello  world,the quick-brown fox!", "Café naïve\tschool\u00a0résumé",
             "中国 北京人 and (paris) capital?", "running wanted\x00 playing\u200b ok",
             "ΣΟΦΟΣ ΟΔΟΣ lazy dog", "  leading and trailing  ", "unknownword xyz ##s", ""]
    enc = cpd.CachedEncoder(tok.encode_batch_ids)
    assert enc(lines) == tok.encode_batch_ids(lines)
    assert enc(lines[::-1]) == tok.encode_batch_ids(lines[::-1])  # from the cache


def test_truncate_seq_pair_trims_the_longer_side():
    rng = random.Random(0)
    a, b = list(range(10)), list(range(3))
    cpd.truncate_seq_pair(a, b, 8, rng)
    assert len(a) + len(b) == 8 and len(b) == 3
    a, b = list(range(5)), list(range(5))
    cpd.truncate_seq_pair(a, b, 6, rng)
    assert (len(a), len(b)) == (3, 3)


def test_cli_globs_comma_lists_and_sharded_output(tmp_path):
    vocab = make_vocab_file(tmp_path / "vocab.txt")
    write_corpus(tmp_path / "in1" / "x.txt", num_documents=10, seed=3)
    write_corpus(tmp_path / "in1" / "y.txt", num_documents=10, seed=4)
    write_corpus(tmp_path / "in2.txt", num_documents=10, seed=5)
    proc = run_script(CREATE_DATA, f"--input_file={tmp_path}/in1/*.txt,{tmp_path}/in2.txt",
                      f"--vocab_file={vocab}", f"--output_dir={tmp_path}/out",
                      "--num_shards=3", "--max_seq_length=32", "--max_predictions_per_seq=5",
                      "--dupe_factor=1", "--random_seed=3", "--plain_progress")
    files = sorted((tmp_path / "out").iterdir())
    assert [f.name for f in files] == [f"part-{i:05d}-of-00003" for i in range(3)]
    total = sum(len(read_examples([f])) for f in files)
    assert f"Wrote {total} instances" in proc.stdout
    assert "3 input files" in proc.stdout
    assert "tokenizing sentences" in proc.stderr  # progress display

    bad = run_script(CREATE_DATA, f"--input_file={tmp_path}/nothing/*.txt",
                     f"--vocab_file={vocab}", f"--output_file={tmp_path}/o.tfrecord",
                     check=False)
    assert bad.returncode == 2  # a usage error: the flag names no file
    assert "nothing/*.txt" in bad.stderr and "matches no file" in bad.stderr


@pytest.mark.parametrize("script, needle", [
    (CREATE_DATA, "--max_predictions_per_seq"), (RUN_PRETRAINING, "--input_files_dir"),
])
def test_scripts_run_as_files_without_pythonpath_and_have_help(tmp_path, script, needle):
    # As their docstrings show them: `python models/bert_large/tensorflow/<script>.py`.
    env = {k: v for k, v in subprocess_env().items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, str(script), "--help"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert needle in proc.stdout and "Traceback" not in proc.stderr


def test_cli_names_a_vocab_folder_and_an_input_folder(tmp_path):
    vocab = make_vocab_file(tmp_path / "vocab.txt")
    write_corpus(tmp_path / "corpus" / "a.txt", num_documents=2, seed=1)
    bad = run_script(CREATE_DATA, f"--input_file={tmp_path}/corpus/a.txt",
                     f"--vocab_file={tmp_path}", f"--output_file={tmp_path}/o.tfrecord",
                     check=False)
    assert bad.returncode == 2 and f"--vocab_file={tmp_path}: not a file" in bad.stderr
    bad = run_script(CREATE_DATA, f"--input_file={tmp_path}/corpus", f"--vocab_file={vocab}",
                     f"--output_file={tmp_path}/o.tfrecord", check=False)
    assert bad.returncode == 2 and "is a directory" in bad.stderr
    assert f"--input_file='{tmp_path}/corpus/*.txt'" in bad.stderr


# ---------------------------------------------------------------------------------------------
# Reading


def test_reader_batches_and_resumes_at_a_position(dataset):
    _, _, outputs, _ = dataset
    data = pdata.PretrainingData(outputs, 16, SEQ, PRED, seed=5, files_per_group=1,
                                 shuffle_buffer=50)
    it = data.batches()
    seen = [next(it) for _ in range(40)]  # more than one epoch
    features, pos = seen[0]
    assert features["input_ids"].shape == (16, SEQ) and features["input_ids"].dtype == np.int32
    assert features["masked_lm_weights"].dtype == np.float32
    assert features["next_sentence_labels"].shape == (16, 1)
    assert seen[-1][1].epoch >= 1
    for k in (3, 17, 30):
        resumed = next(data.batches(seen[k][1]))
        for name in features:
            np.testing.assert_array_equal(resumed[0][name], seen[k + 1][0][name])
        assert resumed[1] == seen[k + 1][1]
    # Same seed -> same order; epochs differ in order.
    again = next(pdata.PretrainingData(outputs, 16, SEQ, PRED, seed=5, files_per_group=1,
                                       shuffle_buffer=50).batches())
    np.testing.assert_array_equal(again[0]["input_ids"], features["input_ids"])


def test_ranks_read_disjoint_files(dataset):
    _, _, outputs, _ = dataset
    r0 = pdata.PretrainingData(outputs, 4, SEQ, PRED, rank=0, world_size=2)
    r1 = pdata.PretrainingData(outputs, 4, SEQ, PRED, rank=1, world_size=2)
    assert r0.files and r1.files and not set(r0.files) & set(r1.files)
    assert sorted(r0.files + r1.files) == sorted(outputs)
    # More ranks than files: each rank keeps its own records of the shared files.
    a = pdata.PretrainingData(outputs, 4, SEQ, PRED, rank=0, world_size=3, shuffle=False,
                              repeat=False, drop_remainder=False)
    b = pdata.PretrainingData(outputs, 4, SEQ, PRED, rank=1, world_size=3, shuffle=False,
                              repeat=False, drop_remainder=False)
    ids_a = {tuple(x) for f, _ in a.batches() for x in f["input_ids"]}
    ids_b = {tuple(x) for f, _ in b.batches() for x in f["input_ids"]}
    assert ids_a and ids_b and len(ids_a & ids_b) < 3  # duplicates only by coincidence


def test_truncated_and_corrupt_files_are_named(dataset, tmp_path):
    _, _, outputs, _ = dataset
    copies = []
    for src in outputs:
        dst = tmp_path / ("bad-" + src.rsplit("/", 1)[-1])
        shutil.copy(src, dst)
        copies.append(str(dst))
    data = open(copies[1], "rb").read()
    open(copies[1], "wb").write(data[: len(data) - 300])  # truncated mid-record
    with pytest.raises(pdata.CorruptRecordError, match=copies[1].replace(".", r"\.")) as err:
        for _ in pdata.PretrainingData(copies, 8, SEQ, PRED, repeat=False).batches():
            pass
    assert "truncated" in str(err.value)
    with pytest.raises(pdata.CorruptRecordError, match="bad-part-00001"):
        pdata.verify_files(copies)

    shutil.copy(outputs[1], copies[1])
    corrupt = bytearray(open(copies[0], "rb").read())
    corrupt[len(corrupt) // 2] ^= 0xFF  # a payload byte: only the CRC notices
    open(copies[0], "wb").write(bytes(corrupt))
    with pytest.raises(pdata.CorruptRecordError, match="bad-part-00000") as err:
        for _ in pdata.PretrainingData(copies, 8, SEQ, PRED, repeat=False).batches():
            pass
    assert "corrupt" in str(err.value)


def test_sequence_length_mismatch_names_file_and_flag(dataset, tmp_path):
    _, _, outputs, _ = dataset
    with pytest.raises(pdata.RecordShapeError, match="--max_seq_length=128"):
        pdata.check_record_shapes(outputs, 128, PRED)
    with pytest.raises(pdata.RecordShapeError, match="--max_predictions_per_seq=20"):
        pdata.check_record_shapes(outputs, SEQ, 20)
    with pytest.raises(pdata.PretrainingDataError, match="no such file"):
        pdata.list_input_files(str(tmp_path / "missing"))


def test_a_file_that_is_not_a_tfrecord_says_so(tmp_path):
    # e.g. a text file left in the input folder, shorter than one record header
    (tmp_path / "notes.tfrecord").write_text("hello\n")
    with pytest.raises(pdata.PretrainingDataError, match="notes.tfrecord: the files are empty "
                       "or not TFRecord files; create them with create_pretraining_data.py"):
        pdata.check_record_shapes([str(tmp_path / "notes.tfrecord")], SEQ, PRED)


def test_cli_exits_1_when_the_work_fails(tmp_path):
    """Flags fine, but the input holds no text: a failure of the work (1), not a usage error."""
    vocab = make_vocab_file(tmp_path / "vocab.txt")
    (tmp_path / "blank.txt").write_text("\n\n")
    bad = run_script(CREATE_DATA, f"--input_file={tmp_path}/blank.txt", f"--vocab_file={vocab}",
                     f"--output_file={tmp_path}/o.tfrecord", check=False)
    assert bad.returncode == 1, bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("create_pretraining_data: error: no text")
    assert "Traceback" not in bad.stderr
