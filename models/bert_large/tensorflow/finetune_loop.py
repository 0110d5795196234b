"""The fine-tuning loop ``run_squad.py`` and ``run_classifier.py`` share: model
initialisation from a checkpoint, the compiled train step, training for a number of epochs,
batched prediction, the final checkpoint and the end-of-run summary / best-rank report.

Flags are in ``flags.py``, the run-time set-up (threads, precision, ranks, output folders) in
``runtime.py``, which also describes the multi-process modes.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import time
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np

from models.bert_large.tensorflow.runtime import Runtime, weights_fingerprint, write_json

log = logging.getLogger("bert")


# --------------------------------------------------------------------------------------------
# Model and checkpoints
# --------------------------------------------------------------------------------------------
def init_model(model, rt: Runtime, init_checkpoint: str | None, trains: bool = True) -> None:
    """Build ``model``, load ``init_checkpoint`` and, in sync mode, copy rank 0's weights to
    every rank (the task head is randomly initialised). Without training (``trains=False``)
    a task head missing from the checkpoint is worth a loud warning: the outputs would come
    from random weights."""
    from models.bert_large.tensorflow import checkpoint  # noqa: PLC0415

    model.ensure_built()
    if init_checkpoint:
        report = checkpoint.load_init_checkpoint(model, init_checkpoint)
        log.info("%s", report.summary())
        if not trains and report.initialized:
            log.warning("--do_train=False but %s has no trained task head (%s): predictions "
                        "come from randomly initialised weights. Pass the output_dir of a "
                        "fine-tuning run (or its model.ckpt-N) as --init_checkpoint.",
                        init_checkpoint, ", ".join(report.initialized))
    elif trains:
        log.warning("no --init_checkpoint: training from random weights")
    else:
        log.warning("no --init_checkpoint and --do_train=False: predictions come from random "
                    "weights. Pass the output_dir of a fine-tuning run as --init_checkpoint.")
    if rt.sync:
        rt.comm.broadcast_variables(model.variables, root=0)
        log.info("weights broadcast from rank 0")


def save_final_checkpoint(model, directory: str, step: int, extra: dict | None = None) -> str:
    """``directory/model.ckpt-<step>`` (weights only, google variable names), usable as
    ``--init_checkpoint`` of a later run."""
    from models.bert_large.tensorflow import checkpoint  # noqa: PLC0415

    path = checkpoint.save_training_checkpoint(directory, step, model, extra=extra)
    log.info("saved checkpoint %s", path)
    return str(path)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------
def num_train_steps(num_examples: int, batch_size: int, epochs: float, shards: int = 1) -> int:
    """Optimizer steps for ``epochs`` passes over ``num_examples`` with a global batch of
    ``batch_size * shards``; at least 1, so 0.01 of a small file still trains."""
    return max(1, int(num_examples / (batch_size * shards) * epochs))


def warmup_steps(flags: argparse.Namespace, total_steps: int) -> int:
    if flags.num_warmup_steps is not None:
        return min(flags.num_warmup_steps, total_steps)
    return int(total_steps * flags.warmup_proportion)


def train_dataset(arrays: Mapping[str, np.ndarray], batch_size: int, seed: int,
                  shard: tuple[int, int] = (0, 1)):
    """Endless shuffled batches of this rank's shard of ``arrays``."""
    import tensorflow as tf  # noqa: PLC0415

    index, count = shard
    arrays = {k: v[index::count] for k, v in arrays.items()}
    n = len(next(iter(arrays.values())))
    if n == 0:
        raise ValueError(f"rank {index} got no training examples: fewer examples than ranks")
    ds = tf.data.Dataset.from_tensor_slices(dict(arrays))
    ds = ds.shuffle(min(n, 100_000), seed=seed, reshuffle_each_iteration=True).repeat()
    return ds.batch(batch_size, drop_remainder=True).prefetch(2)


@dataclasses.dataclass
class TrainStats:
    steps: int
    examples_per_sec: float      # this rank
    global_examples_per_sec: float
    final_loss: float
    loss_log: list[dict]
    seconds: float


def make_train_step(model, loss_fn: Callable, optimizer, comm=None,
                    jit_compile: bool = False) -> Callable:
    """A compiled training step ``step(batch) -> float32 loss``: forward, ``loss_fn(outputs,
    batch)``, gradients and the optimizer update. With ``comm`` (sync mode) the gradients and
    the loss are averaged across ranks before the update. ``jit_compile``: XLA (measured by
    ``benchmarks/tf_train_step.py --jit_compile``)."""
    import tensorflow as tf  # noqa: PLC0415

    @tf.function(reduce_retracing=True, jit_compile=jit_compile)
    def step(batch):
        with tf.GradientTape() as tape:
            outputs = model(batch, training=True)
            loss = tf.cast(loss_fn(outputs, batch), tf.float32)
        variables = model.trainable_variables  # read after the call, which builds the model
        grads = tape.gradient(loss, variables)
        if comm is not None:
            # The loss rides along in the same allreduce, so logs show the global mean.
            *grads, loss = comm.allreduce_mean([*grads, loss])
        optimizer.apply_gradients(zip(grads, variables))
        return loss

    return step


def train(model, batches: Iterator, loss_fn: Callable, optimizer, steps: int, batch_size: int,
          rt: Runtime, log_steps: int, profiler=None, dllog=None,
          jit_compile: bool = False) -> TrainStats:
    """Run ``steps`` optimizer steps. ``loss_fn(outputs, batch)`` returns a scalar loss.
    In sync mode the gradients are averaged across ranks before clipping and the update.
    ``profiler`` (``profiling.StepProfiler``) traces its steps; ``dllog``
    (``pretraining_loop.DLLogger``) gets one record per logged step. ``jit_compile``
    (``--xla``): the step is XLA-compiled; not with sync mode (checked by the flags)."""
    sync = rt.sync
    if jit_compile and rt.writes_outputs:
        log.info("train step: XLA (jit_compile)")
    step_fn = make_train_step(model, loss_fn, optimizer, rt.comm if sync else None,
                              jit_compile=jit_compile)
    world = rt.env.world_size if sync else 1
    loss_log: list[dict] = []
    window_losses: list[float] = []
    start = window_start = time.perf_counter()
    first_step_seconds = None
    loss_value = float("nan")
    lr = 0.0
    for step in range(1, steps + 1):
        if step % log_steps == 0 or step == steps:
            lr = float(optimizer.learning_rate)  # the schedule now: what this step applies
        rt.comm.step = step  # named if a collective of this step times out
        if profiler:
            profiler.begin(step)
        loss_value = float(step_fn(next(batches)))
        if profiler:
            profiler.end(step, last_step=steps)
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"loss is {loss_value} at step {step}; lower "
                                     "--learning_rate or check the input data")
        window_losses.append(loss_value)
        if step == 1:
            first_step_seconds = time.perf_counter() - start  # includes tracing
        if step % log_steps == 0 or step == steps:
            now = time.perf_counter()
            eps = len(window_losses) * batch_size / max(now - window_start, 1e-9)
            entry = {"step": step, "loss": float(np.mean(window_losses)), "learning_rate": lr,
                     "examples_per_sec": eps, "global_examples_per_sec": eps * world}
            loss_log.append(entry)
            if dllog:
                dllog.log(step, {k: v for k, v in entry.items() if k != "step"})
            if rt.writes_outputs:
                log.info("step %d/%d loss %.4f lr %.3g examples/sec %.2f%s", step, steps,
                         entry["loss"], lr, eps,
                         f" (all ranks {eps * world:.2f})" if world > 1 else "")
            window_losses = []
            window_start = now
    seconds = time.perf_counter() - start
    # Throughput without the first (tracing) step when there is more than one step.
    timed_steps, timed_seconds = steps, seconds
    if steps > 1 and first_step_seconds is not None:
        timed_steps, timed_seconds = steps - 1, seconds - first_step_seconds
    eps = timed_steps * batch_size / max(timed_seconds, 1e-9)
    return TrainStats(steps=steps, examples_per_sec=eps, global_examples_per_sec=eps * world,
                      final_loss=loss_value, loss_log=loss_log, seconds=seconds)


def make_optimizer(flags: argparse.Namespace, rt: Runtime, total_steps: int):
    from models.bert_large.tensorflow import distributed, optimization  # noqa: PLC0415

    lr = flags.learning_rate
    if rt.sync:
        lr = distributed.scaled_learning_rate(lr, rt.env.world_size)
        log.info("learning rate scaled by sqrt(%d): %.3g -> %.3g", rt.env.world_size,
                 flags.learning_rate, lr)
    warmup = warmup_steps(flags, total_steps)
    log.info("optimizer %s, %d steps, %d warmup, peak learning rate %.3g", flags.optimizer,
             total_steps, warmup, lr)
    return optimization.create_optimizer(flags.optimizer, lr, total_steps, warmup,
                                         weight_decay_rate=flags.weight_decay_rate), lr


def fine_tune(model, arrays: Mapping[str, np.ndarray], loss_fn: Callable,
              flags: argparse.Namespace, rt: Runtime, task: str) -> dict:
    """Train ``model`` on ``arrays`` (one row per training example or feature) for
    ``--num_train_epochs``, check the ranks agree (sync mode) and save the final checkpoint
    (rank 0, or every rank with ``--checkpoint_all_ranks``). Returns the summary entries."""
    from models.bert_large.tensorflow import profiling  # noqa: PLC0415
    from models.bert_large.tensorflow.pretraining_loop import DLLogger  # noqa: PLC0415

    num_rows = len(next(iter(arrays.values())))
    shards = rt.env.world_size if rt.sync else 1
    steps = flags.num_train_steps or num_train_steps(num_rows, flags.train_batch_size,
                                                     flags.num_train_epochs, shards)
    optimizer, peak_lr = make_optimizer(flags, rt, steps)
    batches = iter(train_dataset(arrays, flags.train_batch_size, flags.seed + rt.env.rank,
                                 rt.data_shard))
    profiler = profiling.StepProfiler(flags.profile_steps, rt.output_dir,
                                      enabled=rt.writes_outputs)
    profiler.check_reachable(steps)
    dllog = DLLogger((flags.dllog_path or os.path.join(rt.output_dir, "bert_dllog.json"))
                     if rt.writes_outputs else None)
    dllog.log("PARAMETER", {"task": task, "num_train_steps": steps,
                            "train_batch_size": flags.train_batch_size,
                            "global_batch_size": flags.train_batch_size * shards,
                            "world_size": rt.env.world_size, "sync": rt.sync,
                            "precision": rt.precision, "engine": rt.comm.engine},
              kind="METADATA")
    try:
        stats = train(model, batches, loss_fn, optimizer, steps, flags.train_batch_size, rt,
                      flags.log_steps, profiler=profiler, dllog=dllog,
                      jit_compile=bool(getattr(flags, "xla", False)))
    finally:
        profiler.stop()
    dllog.log([], {"final_loss": stats.final_loss, "train_seconds": stats.seconds,
                   "examples_per_sec": stats.examples_per_sec,
                   "global_examples_per_sec": stats.global_examples_per_sec})
    dllog.close()
    summary = {"num_train_steps": steps, "learning_rate": peak_lr,
               "examples_per_sec": stats.examples_per_sec,
               "global_examples_per_sec": stats.global_examples_per_sec,
               "final_loss": stats.final_loss, "train_seconds": stats.seconds,
               "loss_log": stats.loss_log}
    if rt.sync:
        summary.update(check_weights_in_sync(rt, model))
    if rt.writes_outputs or flags.checkpoint_all_ranks:
        summary["checkpoint"] = save_final_checkpoint(
            model, rt.output_dir, steps, extra={"task": task, "rank": rt.env.rank})
    return summary


# --------------------------------------------------------------------------------------------
# Prediction
# --------------------------------------------------------------------------------------------
def predict(model, arrays: Mapping[str, np.ndarray], batch_size: int,
            output_keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Model outputs ``output_keys`` for every row of ``arrays``, in order."""
    import tensorflow as tf  # noqa: PLC0415

    @tf.function(reduce_retracing=True)
    def forward(batch):
        outputs = model(batch, training=False)
        return {k: outputs[k] for k in output_keys}

    n = len(next(iter(arrays.values())))
    collected: dict[str, list[np.ndarray]] = {k: [] for k in output_keys}
    for start in range(0, n, batch_size):
        batch = {k: tf.constant(v[start:start + batch_size]) for k, v in arrays.items()}
        out = forward(batch)
        for k in output_keys:
            collected[k].append(out[k].numpy())
    return {k: (np.concatenate(v) if v else np.zeros((0,), np.float32))
            for k, v in collected.items()}


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------
def check_weights_in_sync(rt: Runtime, model) -> dict:
    """Sync mode, right after training (a collective: every rank calls it): compare a
    fingerprint of the weights across ranks. Returns summary entries."""
    fingerprint = weights_fingerprint(model.trainable_variables)
    prints = rt.comm.allgather(fingerprint)
    identical = len(set(prints)) == 1
    if not identical:
        log.error("ranks ended training with different weights: %s", [p[:12] for p in prints])
    return {"weights_fingerprint": fingerprint, "weights_identical_across_ranks": identical}


def finish(rt: Runtime, summary: dict, metric_name: str | None, metric: float | None,
           higher_is_better: bool = True) -> dict:
    """End of a run: in independent mode (a collective: every rank calls it) pick the best
    rank and write ``best_rank.json``; write this rank's ``train_summary.json``."""
    summary = dict(summary, rank=rt.env.rank, world_size=rt.env.world_size,
                   mpi_workers_sync_gradients=rt.sync, engine=rt.comm.engine,
                   precision=rt.precision, output_dir=rt.output_dir)
    if rt.env.world_size > 1 and not rt.sync:
        gathered = rt.comm.allgather({"rank": rt.env.rank, "metric": metric,
                                      "output_dir": rt.output_dir})
        scored = [g for g in gathered if g["metric"] is not None
                  and math.isfinite(g["metric"])]
        if scored:
            best = (max if higher_is_better else min)(scored, key=lambda g: g["metric"])
            report = {"metric": metric_name, "higher_is_better": higher_is_better,
                      "best_rank": best["rank"], "best_value": best["metric"],
                      "best_output_dir": best["output_dir"],
                      "per_rank": {str(g["rank"]): g["metric"] for g in gathered}}
            summary["best_rank"] = report
            if rt.env.is_primary:
                write_json(os.path.join(rt.root_output_dir, "best_rank.json"), report)
                log.info("best rank: %d with %s %.4f (outputs in %s); all ranks: %s",
                         best["rank"], metric_name, best["metric"], best["output_dir"],
                         ", ".join(f"{g['rank']}: {g['metric']:.4f}" for g in scored))
    if rt.writes_outputs:
        write_json(os.path.join(rt.output_dir, "train_summary.json"), summary)
    return summary


def finish_with_metric(rt: Runtime, summary: dict, metric_name: str, metric: float | None) -> dict:
    """``finish`` ranking the ranks by ``metric`` (higher is better); when there is none (no
    evaluation) but the run trained, by the final training loss (lower is better)."""
    if metric is None and "final_loss" in summary:
        return finish(rt, summary, "final_loss", summary["final_loss"], higher_is_better=False)
    return finish(rt, summary, metric_name, metric)
