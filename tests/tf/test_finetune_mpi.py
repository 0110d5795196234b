"""Two MPI ranks (mpirun -np 2): gradient averaging and weight broadcast (with mpi4py and
with Horovod), the synchronous fine-tuning mode (identical weights on both ranks, and the same
final weights whichever engine averages the gradients, fp32 and bf16) and the independent mode
(two output folders and a best-rank report)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.tf.finetune_fixtures import (REPO_ROOT, TF_DIR, make_bert_dir, model_args,
                                        script_env, write_mrpc, write_squad)
from tests.tf_stacks import require_horovod

pytestmark = [pytest.mark.mpi, pytest.mark.slow,
              pytest.mark.skipif(shutil.which("mpirun") is None, reason="needs mpirun")]


def mpirun(args: list[str], timeout: int = 400, **env) -> subprocess.CompletedProcess:
    cmd = ["mpirun", "--oversubscribe", "-np", "2"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-run-as-root")
    return subprocess.run([*cmd, sys.executable, *args], cwd=REPO_ROOT, env=script_env(**env),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return make_bert_dir(tmp_path_factory.mktemp("ckpt") / "uncased_L-2_H-64_A-4")


def _tensors(prefix) -> dict[str, np.ndarray]:
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(prefix))
    names = [n for n in reader.get_variable_to_shape_map()
             if n.startswith(("bert/", "cls/", "output_"))]
    return {n: reader.get_tensor(n) for n in names}


@pytest.mark.parametrize("engine", ["mpi4py", "horovod"])
def test_collectives_average_broadcast_and_gather(tmp_path, engine):
    if engine == "horovod":
        require_horovod()
    script = tmp_path / "collectives.py"
    script.write_text(textwrap.dedent("""
        import json, sys
        import numpy as np
        import tensorflow as tf
        from models.bert_large.tensorflow import distributed

        comm = distributed.get_communicator()
        r = comm.rank
        dense = tf.constant([[1.0, 2.0], [3.0, 4.0]]) * (r + 1)
        sparse = tf.IndexedSlices(tf.constant([[1.0, 1.0]]) * (r + 1), tf.constant([r]),
                                  tf.constant([2, 2]))

        @tf.function
        def reduce(d, values, indices):
            s = tf.IndexedSlices(values, indices, tf.constant([2, 2]))
            return comm.allreduce_mean([d, None, s])

        eager = comm.allreduce_mean([dense, None, sparse])
        graph = reduce(dense, sparse.values, sparse.indices)
        v = tf.Variable(np.full([3], float(r + 5), np.float32))
        seed = tf.Variable(np.array([2**40 + r], np.int64))
        small = tf.Variable(np.array([2**32 - 1 - r], np.uint32))
        half = tf.Variable(tf.constant([1.5 + r], tf.bfloat16))
        comm.broadcast_variables([v, seed, small, half])
        out = {"engine": comm.engine, "dense": eager[0].numpy().tolist(),
               "none": eager[1] is None, "sparse": eager[2].numpy().tolist(),
               "graph_dense": graph[0].numpy().tolist(),
               "graph_sparse": graph[2].numpy().tolist(),
               "var": v.numpy().tolist(), "seed": int(seed.numpy()[0]),
               "small": int(small.numpy()[0]), "half": float(half.numpy()[0]),
               "bf16": comm.allreduce_mean([tf.constant([1.0, 2.5], tf.bfloat16) * (r + 1)]),
               "gathered": comm.allgather(r * 10), "equal": comm.all_equal(1),
               "unequal": comm.all_equal(r)}
        out["bf16"] = [out["bf16"][0].dtype.name, out["bf16"][0].numpy().astype(float).tolist()]
        with open(sys.argv[1] + f".{r}", "w") as f:
            json.dump(out, f)
    """))
    proc = mpirun([str(script), str(tmp_path / "out")], timeout=200,
                  MODELPKG_COLLECTIVES=engine)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for rank in (0, 1):
        out = json.loads((tmp_path / f"out.{rank}").read_text())
        assert out["engine"] == engine
        assert out["dense"] == out["graph_dense"] == [[1.5, 3.0], [4.5, 6.0]]
        assert out["none"] is True
        # rank 0 adds [1,1] to row 0, rank 1 adds [2,2] to row 1; mean over 2 ranks
        assert out["sparse"] == out["graph_sparse"] == [[0.5, 0.5], [1.0, 1.0]]
        assert out["var"] == [5.0, 5.0, 5.0]  # rank 0's value everywhere
        assert out["seed"] == 2**40  # integer variables keep every bit
        assert out["small"] == 2**32 - 1 and out["half"] == 1.5  # dtypes Horovod lacks
        assert out["bf16"] == ["bfloat16", [1.5, 3.75]]  # reduced in fp32, bf16 again
        assert out["gathered"] == [0, 10]
        assert out["equal"] is True and out["unequal"] is False


@pytest.fixture(scope="module")
def sync_run(tmp_path_factory, bert_dir):
    """``sync_run(engine, precision, *flags)`` -> (output folder, process): run_classifier.py
    on MRPC in the synchronous mode, ``$MODELPKG_COLLECTIVES=engine``; each run once."""
    root = tmp_path_factory.mktemp("sync")
    data = write_mrpc(root / "MRPC", num_train=24, num_dev=8)
    runs = {}

    def run(engine: str, precision: str, *flags: str):
        key = (engine, precision, *flags)
        if key not in runs:
            out = root / "-".join(f.strip("-").replace("=", "_") for f in key)
            proc = mpirun([str(TF_DIR / "run_classifier.py"), "--task_name=MRPC",
                           "--do_train=True", "--do_eval=True", f"--data_dir={data}",
                           *model_args(bert_dir), "--max_seq_length=32",
                           "--train_batch_size=4", "--learning_rate=1e-3",
                           "--num_train_epochs=1", f"--precision={precision}", *flags,
                           "--checkpoint_all_ranks=True", f"--output_dir={out}"],
                          MODELPKG_COLLECTIVES=engine)
            assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
            runs[key] = out, proc
        return runs[key]

    return run


def test_sync_mode_leaves_identical_weights_on_both_ranks(sync_run, bert_dir):
    out, proc = sync_run("mpi4py", "fp32", "--mpi_workers_sync_gradients=True")
    assert "collectives: mpi4py (requested)" in proc.stdout

    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["mpi_workers_sync_gradients"] is True
    assert summary["engine"] == "mpi4py"
    assert summary["num_train_steps"] == 24 // (4 * 2)  # each rank reads half the data
    assert summary["learning_rate"] == pytest.approx(1e-3 * 2 ** 0.5)
    assert summary["weights_identical_across_ranks"] is True
    assert "all ranks" in proc.stdout  # global examples/sec
    assert (out / "eval_results.json").is_file()
    assert not (out / "rank_1" / "eval_results.json").exists()  # only rank 0 evaluates

    steps = summary["num_train_steps"]
    rank0 = _tensors(out / f"model.ckpt-{steps}")
    rank1 = _tensors(out / "rank_1" / f"model.ckpt-{steps}")
    initial = _tensors(bert_dir / "bert_model.ckpt")
    assert set(rank0) == set(rank1) and "output_weights" in rank0
    for name in rank0:
        np.testing.assert_array_equal(rank0[name], rank1[name], err_msg=name)
    changed = [n for n in initial if n in rank0 and not np.allclose(initial[n], rank0[n])]
    assert "bert/embeddings/word_embeddings" in changed  # training really happened


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_horovod_and_mpi4py_give_identical_weights(sync_run, precision):
    """Both engines reduce the same float32 buffer (bf16 gradients cast up) and divide by the
    number of ranks; with two ranks a + b == b + a exactly, so the final weights are the same
    bit for bit. Habana's spelling --use_horovod=True asks for the sync mode."""
    require_horovod()
    mpi_out, _ = sync_run("mpi4py", precision, "--mpi_workers_sync_gradients=True")
    hvd_out, proc = sync_run("horovod", precision, "--use_horovod=True")
    assert "collectives: Horovod 0.28.1 (requested; MPI built" in proc.stdout
    summaries = [json.loads((o / "train_summary.json").read_text()) for o in (mpi_out, hvd_out)]
    assert [s["engine"] for s in summaries] == ["mpi4py", "horovod"]
    assert all(s["weights_identical_across_ranks"] for s in summaries)
    steps = summaries[0]["num_train_steps"]
    assert summaries[1]["num_train_steps"] == steps
    by_mpi = _tensors(mpi_out / f"model.ckpt-{steps}")
    by_hvd = _tensors(hvd_out / f"model.ckpt-{steps}")
    assert set(by_mpi) == set(by_hvd) and "output_weights" in by_mpi
    for name in by_mpi:
        np.testing.assert_array_equal(by_mpi[name], by_hvd[name], err_msg=name)


def test_independent_mode_trains_separately_and_reports_the_best_rank(tmp_path, bert_dir):
    train = write_squad(tmp_path / "train.json", num_paragraphs=3, context_words=40)
    dev = write_squad(tmp_path / "dev.json", num_paragraphs=2, context_words=40, seed=1)
    out = tmp_path / "out"
    proc = mpirun([str(TF_DIR / "run_squad.py"), *model_args(bert_dir), "--do_train=True",
                   f"--train_file={train}", "--do_predict=True", f"--predict_file={dev}",
                   "--max_seq_length=64", "--doc_stride=24", "--max_query_length=16",
                   "--train_batch_size=4", "--learning_rate=1e-3", "--num_train_epochs=1",
                   f"--output_dir={out}"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    folders = {0: out, 1: out / "rank_1"}
    f1 = {}
    for rank, folder in folders.items():
        for name in ("predictions.json", "nbest_predictions.json", "eval_results.json",
                     "train_summary.json"):
            assert (folder / name).is_file(), f"rank {rank}: {name} missing"
        summary = json.loads((folder / "train_summary.json").read_text())
        assert summary["rank"] == rank and summary["mpi_workers_sync_gradients"] is False
        assert summary["learning_rate"] == pytest.approx(1e-3)  # no sqrt scaling
        f1[rank] = json.loads((folder / "eval_results.json").read_text())["f1"]

    report = json.loads((out / "best_rank.json").read_text())
    assert report["metric"] == "f1"
    assert report["per_rank"] == {"0": f1[0], "1": f1[1]}
    assert report["best_value"] == max(f1.values())
    assert f1[report["best_rank"]] == max(f1.values())
    assert report["best_output_dir"] == str(folders[report["best_rank"]])
    assert "best rank:" in proc.stdout

    # Different seeds and data order: the two ranks end with different models.
    steps = json.loads((out / "train_summary.json").read_text())["num_train_steps"]
    rank0 = _tensors(out / f"model.ckpt-{steps}")
    rank1 = _tensors(out / "rank_1" / f"model.ckpt-{steps}")
    assert not np.allclose(rank0["cls/squad/output_weights"], rank1["cls/squad/output_weights"])
