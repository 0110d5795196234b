"""pack_pretraining_data_tfrec.py end to end, run from extracted packages (the PyTorch package
has no TensorFlow) on records made by create_pretraining_data.py."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.bert_large import packing as pk
from models.bert_large import tfrecord as tr
from tests.packages.helpers import build_and_extract, explain, run_modelpkg

REPO = Path(__file__).resolve().parents[2]
SEQ, PRED = 64, 10
SCRIPT = "models/bert_large/pack_pretraining_data_tfrec.py"
PACKAGES = ("bert-large-fp32-training", "bert-large-bf16-training",
            "tensorflow-gaudi-bert-training", "pytorch-spr-bert-large-training")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3")
    return env


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> Path:
    """4 shards of create_pretraining_data.py output (seq 64, 10 predictions) from a generated
    corpus of documents of varied length."""
    root = tmp_path_factory.mktemp("cpd")
    rng = random.Random(11)
    words = [f"w{i}" for i in range(300)]
    (root / "vocab.txt").write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words) + "\n")
    lines = []
    for _ in range(60):
        for _ in range(rng.choice((1, 2, 3, 5, 8, 12))):
            lines.append(" ".join(rng.choice(words) for _ in range(rng.randint(3, 25))))
        lines.append("")
    (root / "corpus.txt").write_text("\n".join(lines) + "\n")
    out = root / "seq_64" / "training"
    proc = subprocess.run(
        [sys.executable, str(REPO / "models/bert_large/tensorflow/create_pretraining_data.py"),
         f"--input_file={root / 'corpus.txt'}", f"--vocab_file={root / 'vocab.txt'}",
         f"--output_dir={out}", "--num_shards=4", f"--max_seq_length={SEQ}",
         f"--max_predictions_per_seq={PRED}", "--dupe_factor=2", "--short_seq_prob=0.3",
         "--random_seed=7", "--plain_progress"],
        capture_output=True, text=True, timeout=300, env={**_env(), "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, explain(proc)
    return out


@pytest.fixture(scope="module")
def pt_package(tmp_path_factory) -> Path:
    return build_and_extract("pytorch-spr-bert-large-training", tmp_path_factory.mktemp("ptpkg"))


def pack(package: Path, *args: str, script: str = SCRIPT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, script, *args], cwd=package, capture_output=True,
                          text=True, timeout=300, env=_env())


def flags(src: Path, dst: Path, *extra: str) -> list[str]:
    return ["--input-glob", str(src), "--output-dir", str(dst), "--max-sequence-length",
            str(SEQ), "--max-predictions-per-sequence", str(PRED), *extra]


def _key(rec: dict) -> tuple:
    return tuple(tuple(np.asarray(rec[k]).tolist()) for k in pk.UNPACKED_FEATURES)


def originals(src: Path) -> list[tuple]:
    return sorted(_key(ex) for f in sorted(src.iterdir()) for ex in tr.iter_examples(f))


def unpacked(dst: Path) -> list[tuple]:
    """Every packed row decoded back into its sequences; checks each row's bookkeeping."""
    out = []
    for f in sorted(dst.iterdir()):
        for row in tr.iter_examples(f):
            assert set(row) == set(pk.PACKED_FEATURES)
            assert row["input_ids"].size == SEQ and row["masked_lm_positions"].size == PRED + 3
            assert row["next_sentence_positions"].size == 3
            seqs = pk.unpack_row(row, PRED)
            assert 1 <= len(seqs) <= 3
            ends = 0
            for j, s in enumerate(seqs):
                assert s["_contiguous"] and s["_positions_ok"]
                assert s["_start"] == ends == s["_nsp_position"]  # back to back from 0
                assert s["_nsp_weight"] == 1.0
                assert s["input_ids"][0] == 2  # each sequence starts with its own [CLS]
                ends += int(s["input_mask"].sum())
            assert (row["input_mask"][ends:] == 0).all() and (row["input_ids"][ends:] == 0).all()
            assert (row["next_sentence_weights"][len(seqs):] == 0).all()
            assert (row["masked_lm_weights"] > 0).sum() == sum(int(s["masked_lm_weights"].sum())
                                                              for s in seqs)
            out.extend(_key(s) for s in seqs)
    return sorted(out)


def test_all_packages_ship_the_packer():
    for name in PACKAGES:
        listing = run_modelpkg("build", name, "--dry-run").stdout
        for path in ("models/bert_large/pack_pretraining_data_tfrec.py",
                     "models/bert_large/packing.py", "models/bert_large/tfrecord.py"):
            assert f"{name}/{path}" in listing, (name, path)
    gaudi = run_modelpkg("build", "tensorflow-gaudi-bert-training", "--dry-run").stdout
    assert "tensorflow-gaudi-bert-training/data_preprocessing/pack_pretraining_data_tfrec.py" in gaudi


@pytest.mark.slow
def test_packs_and_unpacks_exactly_the_original_sequences(records, pt_package, tmp_path):
    dst = tmp_path / "packed" / "training"
    proc = pack(pt_package, *flags(records, dst))
    assert proc.returncode == 0, explain(proc)
    assert "import tensorflow" not in proc.stderr
    assert sorted(p.name for p in dst.iterdir()) == sorted(p.name for p in records.iterdir())
    orig = originals(records)
    assert unpacked(dst) == orig  # each original sequence exactly once, unchanged
    meta = json.loads((tmp_path / "packed" / "training_metadata.json").read_text())
    assert set(meta) == set(pk.METADATA_KEYS)
    assert meta["algorithm"] == "spfhp" and meta["seed"] == 12345
    rows = sum(1 for f in dst.iterdir() for _ in tr.iter_records(f))
    assert meta["new_number_of_samples"] == rows
    assert meta["original_number_of_samples"] == len(orig) and meta["sequences_dropped"] == 0
    tokens = sum(sum(k[1]) for k in orig)  # input_mask sums
    assert meta["packing_efficiency"] == pytest.approx(tokens / (rows * SEQ))
    assert meta["avg_seq_per_sample"] == pytest.approx(len(orig) / rows) and rows < len(orig)
    info = pk.read_packing_metadata(dst)
    assert info.new_number_of_samples == rows and info.algorithm == "spfhp"
    assert pk.read_packing_metadata(records) is None
    assert [p.name for p in (tmp_path / "packed").iterdir() if p.name.startswith(".")] == []

    # same inputs and seed: byte-identical; another seed: other packs
    again = tmp_path / "again" / "training"
    assert pack(pt_package, *flags(records, again)).returncode == 0
    for f in dst.iterdir():
        assert (again / f.name).read_bytes() == f.read_bytes()
    assert (tmp_path / "again" / "training_metadata.json").read_bytes() == \
        (tmp_path / "packed" / "training_metadata.json").read_bytes()
    other = tmp_path / "other" / "training"
    assert pack(pt_package, *flags(records, other, "--seed", "1")).returncode == 0
    assert any((other / f.name).read_bytes() != f.read_bytes() for f in dst.iterdir())
    assert unpacked(other) == orig


@pytest.mark.slow
def test_nnlshp_and_duplication(records, pt_package, tmp_path):
    dst = tmp_path / "nn" / "training"
    proc = pack(pt_package, *flags(records, dst, "--algorithm", "nnlshp", "--duplication-factor",
                                   "2", "--max-files", "3"))
    assert proc.returncode == 0, explain(proc)
    used = sorted(records.iterdir())[:3]
    assert sorted(p.name for p in dst.iterdir()) == [p.name for p in used]
    orig = sorted(_key(ex) for f in used for ex in tr.iter_examples(f))
    assert unpacked(dst) == sorted(orig * 2)  # every sequence twice
    meta = json.loads((tmp_path / "nn" / "training_metadata.json").read_text())
    assert meta["algorithm"] == "nnlshp" and meta["original_number_of_samples"] == 2 * len(orig)


@pytest.mark.slow
def test_gaudi_entry_point_runs_from_data_preprocessing(records, tmp_path):
    package = build_and_extract("tensorflow-gaudi-bert-training", tmp_path)
    dst = tmp_path / "packed" / "training"
    proc = pack(package / "data_preprocessing", *flags(records, dst),
                script="pack_pretraining_data_tfrec.py")
    assert proc.returncode == 0, explain(proc)
    assert unpacked(dst) == originals(records)


def _one_line_error(proc: subprocess.CompletedProcess, code: int, *words: str) -> None:
    assert proc.returncode == code, explain(proc)
    lines = proc.stderr.strip().splitlines()  # progress lines may come before the error
    errors = [line for line in lines if "error:" in line]
    assert errors == lines[-1:] and "Traceback" not in proc.stderr, proc.stderr
    for w in words:
        assert w in errors[0], (w, errors[0])


def test_errors_are_one_line_and_leave_nothing(records, tmp_path):
    root = str(REPO)
    dst = tmp_path / "out" / "training"
    _one_line_error(pack(root, *flags(tmp_path / "missing", dst)), 2, "--input-glob")
    _one_line_error(pack(root, "--input-glob", str(records), "--output-dir", str(dst),
                         "--max-sequence-length", "128", "--max-predictions-per-sequence",
                         str(PRED)), 2, "--max-sequence-length=128")
    _one_line_error(pack(root, *flags(records, dst, "--max-predictions-per-sequence", "20")), 2,
                    "--max-predictions-per-sequence=20")
    _one_line_error(pack(root, *flags(records, dst, "--max-sequences-per-pack", "0")), 2,
                    "--max-sequences-per-pack")
    _one_line_error(pack(root, *flags(records, dst, "--algorithm", "ffd")), 2, "--algorithm")
    _one_line_error(pack(root, *flags(records, records)), 2, "--output-dir")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.bin").write_text("x")
    _one_line_error(pack(root, *flags(records, busy)), 2, "already holds other files")
    # a damaged shard (found during the work): exit 1, the file named, nothing left behind
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in sorted(records.iterdir()):
        (bad / f.name).write_bytes(f.read_bytes())
    last = sorted(bad.iterdir())[-1]
    raw = bytearray(last.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    last.write_bytes(bytes(raw))
    _one_line_error(pack(root, *flags(bad, dst)), 1, str(last), "CRC")
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
    # too few masked LM slots per packed row: exit 1 naming the flag, nothing written
    _one_line_error(pack(root, *flags(records, dst, "--max-predictions-per-pack", "1")), 1,
                    "--max-predictions-per-pack")
    assert not dst.exists()
    assert pack(root, "--help").returncode == 0


def test_metadata_reader(tmp_path):
    data = tmp_path / "training"
    data.mkdir()
    assert pk.read_packing_metadata(data) is None
    path = tmp_path / "training_metadata.json"
    h = np.bincount([3, 5, 8, 8, 2], minlength=9)
    good = dict(pk.plan_summary(h, pk.spfhp(h, 8, 3)), algorithm="spfhp", seed=3)
    path.write_text(json.dumps(good))
    meta = pk.read_packing_metadata(str(data) + "/")
    assert meta.avg_seq_per_sample == good["avg_seq_per_sample"] and meta.seed == 3
    habana = {k: v for k, v in good.items() if k not in ("algorithm", "seed")}
    path.write_text(json.dumps(habana))
    assert pk.read_packing_metadata(data).algorithm is None
    for broken, key in (({k: v for k, v in good.items() if k != "avg_seq_per_sample"},
                         "avg_seq_per_sample"),
                        (dict(good, new_number_of_samples="many"), "new_number_of_samples"),
                        (dict(good, packing_efficiency=1.5), "packing_efficiency"),
                        (dict(good, algorithm="magic"), "algorithm")):
        path.write_text(json.dumps(broken))
        with pytest.raises(pk.PackingMetadataError) as err:
            pk.read_packing_metadata(data)
        assert str(path) in str(err.value) and repr(key) in str(err.value)
        assert "\n" not in str(err.value)
    path.write_text("{not json")
    with pytest.raises(pk.PackingMetadataError, match="not valid JSON"):
        pk.read_packing_metadata(data)
