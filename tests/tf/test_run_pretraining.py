"""run_pretraining.py end to end on a tiny BERT (subprocesses): phase 1 with gradient
accumulation writes checkpoints and a dllog; phase 2 starts from phase 1's weights at a
longer sequence; a run killed after a checkpoint and resumed ends with the same weights as
an uninterrupted one (same seed and data); a truncated input file fails fast, naming the file."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.tf.conftest import make_config_dict, make_vocab_file
from tests.tf.pretraining_fixtures import (
    REPO_ROOT,
    RUN_PRETRAINING,
    run_script,
    subprocess_env,
    write_corpus,
)
from tests.tf_stacks import require_horovod

tf = pytest.importorskip("tensorflow")

from models.bert_large.tensorflow import create_pretraining_data as cpd  # noqa: E402
from models.bert_large.tensorflow.pretraining_loop import read_dllog  # noqa: E402

pytestmark = pytest.mark.slow

STEPS, ACC, SAVE_EVERY, WARMUP, LR = 20, 2, 5, 5, 0.01


def make_records(root, seq: int, pred: int, name: str, seed: int = 12345):
    """In-process (the CLI has its own tests): 4 shards from the corpus."""
    out = root / name
    cpd.create_pretraining_data(
        cpd.expand_input_patterns(f"{root}/corpus/*.txt"), str(root / "vocab.txt"),
        cpd.shard_names(str(out), 4),
        cpd.InstanceConfig(max_seq_length=seq, max_predictions_per_seq=pred, dupe_factor=2),
        random_seed=seed, plain_progress=True)
    return out


def phase_args(root, data, out, *extra, seq=32, pred=5, steps=STEPS, warmup=WARMUP):
    return [f"--input_files_dir={data}", f"--output_dir={out}",
            f"--bert_config_file={root}/bert_config.json", "--do_train=True",
            "--train_batch_size=8", f"--max_seq_length={seq}",
            f"--max_predictions_per_seq={pred}", f"--num_train_steps={steps}",
            f"--num_accumulation_steps={ACC}", f"--num_warmup_steps={warmup}",
            f"--save_checkpoints_steps={SAVE_EVERY}", f"--learning_rate={LR}", *extra]


def tensors(prefix) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(str(prefix))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
            if not k.startswith("_meta")}


def model_tensors(prefix) -> dict[str, np.ndarray]:
    return {k: v for k, v in tensors(prefix).items()
            if k.startswith(("bert/", "cls/"))}


@pytest.fixture(scope="module")
def phase1(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrain")
    make_vocab_file(root / "vocab.txt")
    (root / "bert_config.json").write_text(json.dumps(make_config_dict()))
    write_corpus(root / "corpus" / "a.txt", num_documents=40, seed=1)
    write_corpus(root / "corpus" / "b.txt", num_documents=40, seed=2,
                 min_words=8, max_words=20)
    data = make_records(root, 32, 5, "seq32")
    out = root / "phase_1"
    proc = run_script(RUN_PRETRAINING, *phase_args(
        root, data, out, f"--eval_files_dir={data}", "--do_eval=True", "--eval_batch_size=8",
        "--max_eval_steps=10", "--horovod", "--noamp", "--nouse_xla",
        "--allreduce_post_accumulation=True", "--enable_scoped_allocator=False",
        "--resume=False", f"--dllog_path={root}/logs/phase_1/bert_dllog.json"))
    return root, data, out, proc


def test_phase1_writes_checkpoints_dllog_and_eval(phase1):
    root, _, out, proc = phase1
    # Habana's flags of the seed command line are real flags now: none is "ignored".
    assert "ignoring" not in proc.stdout
    assert "device: CPU" in proc.stdout
    for step in range(SAVE_EVERY, STEPS + 1, SAVE_EVERY):
        assert (out / f"model.ckpt-{step}.index").is_file()
    assert 'model_checkpoint_path: "model.ckpt-20"' in (out / "checkpoint").read_text()
    assert int(tf.train.load_checkpoint(str(out / "model.ckpt-20")).get_tensor(
        "global_step")) == STEPS

    records = read_dllog(root / "logs" / "phase_1" / "bert_dllog.json")
    params = [r for r in records if r["step"] == "PARAMETER"]
    assert params and params[0]["data"]["num_accumulation_steps"] == ACC
    assert params[0]["data"]["global_batch_size"] == 8 * ACC
    steps = [r for r in records if isinstance(r["step"], int)]
    assert [r["step"] for r in steps] == list(range(1, STEPS + 1))
    for r in steps:
        d = r["data"]
        for key in ("loss", "mlm_loss", "nsp_loss", "mlm_accuracy", "learning_rate",
                    "sequences_per_sec"):
            assert key in d, key
        assert d["loss"] == pytest.approx(d["mlm_loss"] + d["nsp_loss"], rel=1e-5)
        assert 0.0 <= d["mlm_accuracy"] <= 1.0 and d["sequences_per_sec"] > 0
    # google's schedule: linear warmup, and a linear decay to 0 at num_train_steps computed on
    # the global step (the lr of step s is the schedule at s - 1 completed steps).
    lrs = [r["data"]["learning_rate"] for r in steps]
    expected = [LR * s / WARMUP if s < WARMUP else LR * (1 - s / STEPS) for s in range(STEPS)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-5, atol=1e-9)
    assert steps[-1]["data"]["loss"] < steps[0]["data"]["loss"]
    summary = [r for r in records if r["step"] == []]
    assert summary and summary[0]["data"]["global_step"] == STEPS
    assert summary[0]["data"]["throughput_train"] > 0
    evals = [r for r in records if r["step"] == ["eval"]]
    assert evals and 0.0 <= evals[0]["data"]["masked_lm_accuracy"] <= 1.0
    assert "next_sentence_accuracy" in evals[0]["data"]
    assert "masked_lm_accuracy = " in (out / "eval_results.txt").read_text()


def test_resume_after_a_kill_gives_the_same_weights(phase1):
    root, data, out, _ = phase1
    # What a run killed between steps 10 and 15 leaves on disk: checkpoints up to step 10
    # (a checkpoint being written at the kill is never listed: see checkpoint.py).
    out2 = root / "killed"
    out2.mkdir()
    for step in (5, 10):
        for f in out.glob(f"model.ckpt-{step}.*"):
            shutil.copy(f, out2 / f.name)
    (out2 / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-10"\n'
                                     'all_model_checkpoint_paths: "model.ckpt-5"\n'
                                     'all_model_checkpoint_paths: "model.ckpt-10"\n')
    proc = run_script(RUN_PRETRAINING, *phase_args(root, data, out2, "--resume=True"))
    assert "model.ckpt-10 at step 10" in proc.stdout
    records = read_dllog(out2 / "bert_dllog.json")
    assert [r["step"] for r in records if isinstance(r["step"], int)] == list(range(11, 21))

    expected = tensors(out / "model.ckpt-20")
    actual = tensors(out2 / "model.ckpt-20")
    assert expected.keys() == actual.keys()
    assert any(k.startswith("_optimizer/") for k in expected)  # optimizer state compared too
    for name, value in expected.items():
        np.testing.assert_allclose(actual[name], value, rtol=0, atol=1e-6, err_msg=name)


def test_phase2_starts_from_phase1_weights_at_longer_sequences(phase1):
    root, _, out, _ = phase1
    data512 = make_records(root, 64, 10, "seq64", seed=99)
    out2 = root / "phase_2"
    proc = run_script(RUN_PRETRAINING, *phase_args(
        root, data512, out2, f"--init_checkpoint={out}/model.ckpt-20", "--learning_rate=1e-6",
        seq=64, pred=10, steps=2, warmup=0))
    assert f"from {out}/model.ckpt-20" in proc.stdout
    init = [r for r in read_dllog(out2 / "bert_dllog.json") if r["step"] == "INIT_CHECKPOINT"]
    p1 = model_tensors(out / "model.ckpt-20")
    p2 = model_tensors(out2 / "model.ckpt-2")
    assert init and init[0]["data"]["loaded"] == len(p1) and not init[0]["data"]["initialized"]
    # Two tiny LAMB steps from phase 1's weights: close to them, unlike phase 1 at step 5.
    fresh = model_tensors(out / "model.ckpt-5")
    moved = max(float(np.max(np.abs(p2[k] - p1[k]))) for k in p1)
    far = max(float(np.max(np.abs(fresh[k] - p1[k]))) for k in p1)
    assert moved < 1e-3 < far
    assert int(tf.train.load_checkpoint(str(out2 / "model.ckpt-2")).get_tensor(
        "global_step")) == 2


def test_truncated_input_file_fails_naming_it(phase1, tmp_path):
    root, data, _, _ = phase1
    bad = tmp_path / "data"
    shutil.copytree(data, bad)
    victim = sorted(bad.iterdir())[2]
    raw = victim.read_bytes()
    victim.write_bytes(raw[: len(raw) - 200])
    proc = run_script(RUN_PRETRAINING, *phase_args(root, bad, tmp_path / "out", steps=200),
                      check=False, timeout=180)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert str(victim) in proc.stderr and "truncated" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_flag_errors_name_the_flag(phase1, tmp_path):
    root, data, _, _ = phase1
    proc = run_script(RUN_PRETRAINING, f"--bert_config_file={root}/bert_config.json",
                      f"--output_dir={tmp_path}", "--do_train=True", check=False)
    assert proc.returncode == 2 and "--input_files_dir" in proc.stderr
    proc = run_script(RUN_PRETRAINING, *phase_args(root, data, tmp_path / "o", seq=64),
                      check=False)
    assert proc.returncode == 1 and "--max_seq_length=32" in proc.stderr


def _mpirun_pretraining(root, data, out, *extra, env):
    """Two ranks of run_pretraining.py, 4 steps (local ranks inherit ``env``)."""
    cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2",
           "-x", "PYTHONPATH", "-x", "NUM_INTRA_THREADS", "-x", "NUM_INTER_THREADS",
           "-x", "TF_CPP_MIN_LOG_LEVEL", sys.executable,
           str(RUN_PRETRAINING), *phase_args(root, data, out, *extra, steps=4, warmup=1),
           "--train_batch_size=4"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.mpi
def test_two_ranks_average_gradients_and_agree(phase1, tmp_path):
    if shutil.which("mpirun") is None:
        pytest.skip("mpirun not installed")
    root, data, _, _ = phase1
    _mpirun_pretraining(root, data, tmp_path / "out", "--allreduce_post_accumulation=True",
                        env=subprocess_env())
    summary = [r for r in read_dllog(tmp_path / "out" / "bert_dllog.json") if r["step"] == []]
    assert summary[0]["data"]["weights_identical_across_ranks"] is True
    assert summary[0]["data"]["global_step"] == 4
    assert not list((tmp_path / "out").glob("rank_*"))  # only rank 0 writes


@pytest.mark.mpi
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_horovod_and_mpi4py_pretrain_to_identical_weights(phase1, tmp_path, precision):
    """Same seed, same data, two ranks: the final checkpoint (weights, LAMB slots, step) is
    the same bit for bit whichever engine averages the gradients (both reduce one float32
    buffer and divide by 2; a + b == b + a exactly)."""
    if shutil.which("mpirun") is None:
        pytest.skip("mpirun not installed")
    require_horovod()
    root, data, _, _ = phase1
    final = {}
    for engine in ("mpi4py", "horovod"):
        out = tmp_path / engine
        proc = _mpirun_pretraining(root, data, out, f"--precision={precision}", "--horovod",
                                   env=dict(subprocess_env(), MODELPKG_COLLECTIVES=engine))
        assert f"collectives: {'Horovod' if engine == 'horovod' else 'mpi4py'}" in proc.stdout
        summary = [r for r in read_dllog(out / "bert_dllog.json") if r["step"] == []]
        assert summary[0]["data"]["weights_identical_across_ranks"] is True
        assert summary[0]["data"]["global_step"] == 4
        final[engine] = tensors(out / "model.ckpt-4")
    assert set(final["mpi4py"]) == set(final["horovod"])
    weights = set(model_tensors(tmp_path / "horovod" / "model.ckpt-4"))
    assert "bert/embeddings/word_embeddings" in weights
    assert len(final["horovod"]) > len(weights)  # the optimizer's slots are compared too
    for name, value in final["mpi4py"].items():
        np.testing.assert_array_equal(value, final["horovod"][name], err_msg=name)


@pytest.mark.mpi
def test_launcher_runs_horovod_with_hierarchical_allreduce_set(phase1, tmp_path):
    """MPI_NUM_PROCESSES=2 through launch.py, HOROVOD_HIERARCHICAL_ALLREDUCE=1 and the auto
    engine: Horovod is picked, and every rank's Horovod read the variable at hvd.init() (the
    launcher forwards it with -x). On one host without NCCL Horovod keeps its flat allreduce."""
    if shutil.which("mpirun") is None:
        pytest.skip("mpirun not installed")
    require_horovod()
    root, data, _, _ = phase1
    env = dict(subprocess_env(), MPI_NUM_PROCESSES="2", HOROVOD_HIERARCHICAL_ALLREDUCE="1")
    env.pop("MODELPKG_COLLECTIVES", None)
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO_ROOT / "models" / "common" / "launch.py"), "--no-bind",
           "--", sys.executable, str(RUN_PRETRAINING),
           *phase_args(root, data, out, "--use_horovod=True", steps=2, warmup=1),
           "--train_batch_size=4"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "-x HOROVOD_HIERARCHICAL_ALLREDUCE" in proc.stdout + proc.stderr
    seen = [line for line in proc.stdout.splitlines()
            if "collectives: Horovod" in line and "importable" in line
            and "hierarchical allreduce requested (HOROVOD_HIERARCHICAL_ALLREDUCE=1" in line]
    assert len(seen) == 2, proc.stdout[-3000:]  # one line per rank
    summary = [r for r in read_dllog(out / "bert_dllog.json") if r["step"] == []]
    assert summary[0]["data"]["global_step"] == 2


def test_unknown_collectives_engine_is_a_usage_error(phase1, tmp_path):
    root, data, _, _ = phase1
    env = dict(subprocess_env(), MODELPKG_COLLECTIVES="nccl")
    proc = run_script(RUN_PRETRAINING, *phase_args(root, data, tmp_path / "o"), check=False,
                      env=env)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "run_pretraining: error: MODELPKG_COLLECTIVES='nccl' is not a collectives engine: use "
        "auto, horovod, mpi4py"]


# ---------------------------------------------------------------------------------------------
# Packed data (docs/packing.md): detected from the metadata beside the input folder

PACKER = RUN_PRETRAINING.parents[1] / "pack_pretraining_data_tfrec.py"


@pytest.fixture(scope="module")
def packed(phase1, tmp_path_factory):
    """Records of short documents at seq 64 (``unpacked``) and the packer's rows of them
    (``packed``; the packer's own tests check the packing itself)."""
    root, _, _, _ = phase1
    short = tmp_path_factory.mktemp("short")
    shutil.copy(root / "vocab.txt", short / "vocab.txt")
    write_corpus(short / "corpus" / "a.txt", num_documents=150, seed=3, min_sentences=1,
                 max_sentences=3, min_words=3, max_words=8)
    unpacked = make_records(short, 64, 8, "seq64")
    out = short / "packed" / "seq64"
    run_script(PACKER, "--input-glob", str(unpacked), "--output-dir", str(out),
               "--max-sequence-length", "64", "--max-predictions-per-sequence", "8")
    meta = json.loads((out.parent / "seq64_metadata.json").read_text())
    assert meta["avg_seq_per_sample"] > 1.5  # short documents: several per row
    return unpacked, out, meta


def _eval_results(out) -> dict[str, float]:
    lines = (out / "eval_results.txt").read_text().splitlines()
    return {k.strip(): float(v) for k, v in (line.split("=") for line in lines)}


def test_packed_eval_equals_unpacked_eval(phase1, packed, tmp_path):
    """The same model on the same sequences, packed and unpacked, through the real input
    pipeline: the same masked-LM loss and accuracy, next-sentence loss and sequence count."""
    root, _, out1, _ = phase1
    unpacked, packed_dir, meta = packed
    results = {}
    for name, folder in (("unpacked", unpacked), ("packed", packed_dir)):
        out = tmp_path / name
        proc = run_script(RUN_PRETRAINING, f"--eval_files_dir={folder}", f"--output_dir={out}",
                          f"--bert_config_file={root}/bert_config.json", "--do_eval=True",
                          f"--init_checkpoint={out1}/model.ckpt-{STEPS}", "--eval_batch_size=8",
                          "--max_seq_length=64", "--max_predictions_per_seq=8",
                          "--max_eval_steps=0")
        results[name] = _eval_results(out)
    assert "packed data (" in proc.stdout  # the last run, on the packed folder
    u, p = results["unpacked"], results["packed"]
    assert p["eval_sequences"] == u["eval_sequences"] == meta["original_number_of_samples"]
    assert p["eval_batches"] < u["eval_batches"]  # fewer rows to run
    for key in ("masked_lm_loss", "masked_lm_accuracy", "next_sentence_loss",
                "next_sentence_accuracy"):
        assert p[key] == pytest.approx(u[key], rel=1e-5, abs=1e-6), key


def test_packed_training_divides_accumulation_and_learns(phase1, packed, tmp_path):
    root, _, _, _ = phase1
    _, packed_dir, meta = packed
    out = tmp_path / "out"
    proc = run_script(RUN_PRETRAINING, *phase_args(root, packed_dir, out, seq=64, pred=8,
                                                   steps=10))
    acc = max(1, round(ACC / meta["avg_seq_per_sample"]))
    assert f"--num_accumulation_steps {ACC} -> {acc}" in proc.stdout
    assert "packed data (" in proc.stdout and "seq64_metadata.json" in proc.stdout
    records = read_dllog(out / "bert_dllog.json")
    steps = [r["data"] for r in records if isinstance(r["step"], int)]
    assert len(steps) == 10 and steps[-1]["loss"] < steps[0]["loss"]
    assert (out / "model.ckpt-10.index").is_file()

    # forced off: the packed records are named, one line, exit 1
    proc = run_script(RUN_PRETRAINING, *phase_args(root, packed_dir, tmp_path / "off",
                                                   "--packed_data=False", seq=64, pred=8),
                      check=False)
    assert proc.returncode == 1 and "the records are packed" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_packing_metadata_is_one_line_naming_the_file(phase1, packed, tmp_path):
    root, _, _, _ = phase1
    _, packed_dir, meta = packed
    copy = tmp_path / "seq64"
    shutil.copytree(packed_dir, copy)
    bad = dict(meta)
    del bad["avg_seq_per_sample"]
    (tmp_path / "seq64_metadata.json").write_text(json.dumps(bad))
    proc = run_script(RUN_PRETRAINING, *phase_args(root, copy, tmp_path / "out", seq=64,
                                                   pred=8), check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "seq64_metadata.json" in last and "'avg_seq_per_sample'" in last
    assert "Traceback" not in proc.stderr
