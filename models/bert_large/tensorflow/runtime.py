"""Run-time set-up shared by fine-tuning (``run_squad.py``, ``run_classifier.py``) and
pretraining (``run_pretraining.py``): logging, TF thread pools, precision, ranks and their
output folders, atomic result files and the weights fingerprint that checks ranks agree.

TensorFlow, Keras and numpy are imported inside the functions that need them, so importing
this module stays cheap.

Multi-process modes of fine-tuning (ranks from ``models.common.dist_env``, launched by mpirun):

- ``--mpi_workers_sync_gradients=False`` (default): every rank trains its own model on the
  whole training set with its own seed; rank 0 writes to ``output_dir``, rank r to
  ``output_dir/rank_<r>``; at the end the ranks' scores are gathered and rank 0 reports
  (and writes ``best_rank.json``) which rank scored best.
- ``--mpi_workers_sync_gradients=True`` (or Habana's ``--use_horovod=True`` /
  ``--horovod``): one model; every rank starts from rank 0's weights,
  reads its own shard of the data, gradients are averaged every step (``distributed.py``)
  and the learning rate is scaled by sqrt(ranks). Rank 0 writes the outputs.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import sys
from typing import Any, Iterable, Mapping

from models.bert_large.tensorflow.flags import (
    check_collective_timeout,
    check_thread_flags,
    warn_about_ignored,
)
from models.common import dist_env

log = logging.getLogger("bert")


@dataclasses.dataclass
class Runtime:
    env: dist_env.DistEnv
    comm: Any                     # distributed.Communicator
    sync: bool                    # gradients averaged across ranks
    output_dir: str               # this rank's folder
    root_output_dir: str          # rank 0's folder (= --output_dir)
    precision: str

    @property
    def writes_outputs(self) -> bool:
        """Independent ranks all write (each in its folder); in sync mode only rank 0."""
        return self.env.is_primary or not self.sync

    @property
    def data_shard(self) -> tuple[int, int]:
        """(index, count) of this rank's slice of the training data."""
        return (self.env.rank, self.env.world_size) if self.sync else (0, 1)


def rank_output_dir(output_dir: str, rank: int) -> str:
    return output_dir if rank == 0 else os.path.join(output_dir, f"rank_{rank}")


def setup_logging(env: dist_env.DistEnv) -> None:
    """INFO logs to stdout, prefixed with the rank when there are several."""
    prefix = f"[rank {env.rank}/{env.world_size}] " if env.world_size > 1 else ""
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, force=True,
                        format=f"%(asctime)s {prefix}%(levelname)s %(message)s",
                        datefmt="%H:%M:%S")


def configure_tf(flags: argparse.Namespace, precision: str) -> tuple[int | None, int | None]:
    """The device (``device.py``: the Habana bridge is loaded here for an HPU run), TF's
    intra/inter-op pools (``--num_intra_threads``/``--num_inter_threads``, else the
    launcher's variables: ``models.common.runtime_env``; None: TF's default), op determinism
    (``--deterministic_run``), the scoped-allocator option and the Keras precision policy.
    Call before the first TF op (thread pools are fixed at first use) and before building a
    model. Returns the thread counts."""
    import tensorflow as tf  # noqa: PLC0415

    from models.bert_large.tensorflow import compat, device  # noqa: PLC0415
    from models.bert_large.tensorflow import precision as tf_precision  # noqa: PLC0415

    log.info("TensorFlow %s, Keras %s", tf.__version__, compat.KERAS_VERSION)
    chosen = getattr(flags, "device_choice", None) or device.select("cpu")
    recipe = getattr(flags, "bf16_recipe", None)
    if chosen.is_hpu and recipe:
        # The bridge reads the recipe when it loads and converts the graph itself.
        os.environ["TF_BF16_CONVERSION"] = os.path.abspath(recipe)
    device.activate(chosen)
    intra, inter = check_thread_flags(flags)
    if intra:
        tf.config.threading.set_intra_op_parallelism_threads(intra)
    if inter:
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    if getattr(flags, "deterministic_run", False):
        tf.config.experimental.enable_op_determinism()
        log.info("deterministic run: TensorFlow op determinism on, seed %d", flags.seed)
    scoped = getattr(flags, "enable_scoped_allocator", None)
    if scoped is not None:
        tf.config.optimizer.set_experimental_options({"scoped_allocator_optimization": scoped})
    # On a Gaudi with a recipe the bridge does the bf16 conversion: Keras stays float32.
    tf_precision.set_precision("fp32" if chosen.is_hpu and recipe else precision)
    reason = getattr(flags, "precision_reason", None)
    if reason:
        log.info("precision %s (%s)%s", precision, reason,
                 f", bf16 recipe {recipe}" if recipe else "")
    if getattr(flags, "iterations_per_loop", 1) > 1:
        log.info("--iterations_per_loop=%d: steps run one per call here (same training)",
                 flags.iterations_per_loop)
    return intra, inter


def setup_runtime(flags: argparse.Namespace) -> Runtime:
    """Fine-tuning: logging, TF threads, precision, ranks and this rank's output folder. Call
    before any TensorFlow op runs."""
    env = dist_env.from_environ()
    setup_logging(env)
    warn_about_ignored(flags)

    import keras  # noqa: PLC0415

    from models.bert_large.tensorflow import distributed  # noqa: PLC0415

    intra, inter = configure_tf(flags, flags.precision)

    sync = bool(flags.mpi_workers_sync_gradients or flags.horovod) and env.world_size > 1
    comm = distributed.get_communicator(env=env, timeout=check_collective_timeout(flags))
    # Independent ranks differ by seed (data order, head init, dropout); synced ranks share it.
    keras.utils.set_random_seed(flags.seed + (0 if sync else env.rank))

    out = rank_output_dir(flags.output_dir, env.rank)
    rt = Runtime(env=env, comm=comm, sync=sync, output_dir=out,
                 root_output_dir=flags.output_dir, precision=flags.precision)
    if rt.writes_outputs or flags.checkpoint_all_ranks:
        os.makedirs(out, exist_ok=True)
    log.info("ranks: %d (%s), mode: %s, engine: %s, precision: %s, threads intra=%s inter=%s, "
             "output: %s", env.world_size, env.source,
             "sync gradients" if sync else "independent", comm.engine, flags.precision,
             intra or "default", inter or "default", out)
    return rt


# --------------------------------------------------------------------------------------------
# Result files and the weights fingerprint
# --------------------------------------------------------------------------------------------
def write_text_atomic(path: str, text: str) -> None:
    """Write ``path`` through a temporary file, flushed to disk, and a rename: readers (and a
    crash) never see half a file."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: str, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_key_values(path: str, results: Mapping[str, Any]) -> None:
    """google-research's ``eval_results.txt``: ``key = value`` lines, sorted by key."""
    write_text_atomic(path, "".join(f"{k} = {results[k]}\n" for k in sorted(results)))


def weights_fingerprint(variables: Iterable) -> str:
    """sha256 over all variable values: equal on two ranks iff the weights are equal."""
    import numpy as np  # noqa: PLC0415

    h = hashlib.sha256()
    for v in variables:
        h.update(np.ascontiguousarray(v.numpy()).tobytes())
    return h.hexdigest()
