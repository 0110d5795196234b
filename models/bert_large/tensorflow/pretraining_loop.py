"""The pretraining loop: MLM + NSP loss, gradient accumulation, cross-rank averaging, LAMB
updates, periodic resumable checkpoints, dllogger-style logging and masked-LM evaluation.

One optimizer step = ``num_accumulation_steps`` micro-batches of ``train_batch_size`` per
rank. Gradients are summed in float32 accumulators, divided by the number of micro-batches,
averaged over ranks (once per step with ``allreduce_post_accumulation``, else after every
micro-batch: same result, more traffic), clipped by global norm and applied. ``step`` always
counts optimizer steps, which is what the learning-rate schedule and ``num_train_steps`` see.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from typing import Any, Iterator, Sequence

import numpy as np
import tensorflow as tf

from models.bert_large.tensorflow import compat, modeling

log = logging.getLogger("bert")


# ---------------------------------------------------------------------------------------------
# dllogger-style log


class DLLogger:
    """Writes NVIDIA dllogger's JSON stream format: one ``DLLL {json}`` line per record, with
    ``timestamp``, ``elapsedtime``, ``type`` ("LOG" / "METADATA"), ``step`` and ``data``.
    ``step`` is an int for training steps, or a string ("PARAMETER", "TRAIN_END", "EVAL").
    Only the rank that writes outputs gets a path; others pass ``None`` (no-op)."""

    PREFIX = "DLLL "

    def __init__(self, path: str | None):
        self.path = path
        self._start = time.time()
        self._file = None
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self._file = open(path, "a", encoding="utf-8")

    def log(self, step: Any, data: dict, kind: str = "LOG") -> None:
        if self._file is None:
            return
        now = time.time()
        record = {"timestamp": f"{now:.6f}", "elapsedtime": round(now - self._start, 6),
                  "type": kind, "step": step, "data": _jsonable(data)}
        self._file.write(self.PREFIX + json.dumps(record, sort_keys=True) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _jsonable(data: dict) -> dict:
    out = {}
    for k, v in data.items():
        if isinstance(v, (np.floating, np.integer)):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            v = str(v)
        out[k] = v
    return out


def read_dllog(path: str) -> list[dict]:
    """Records of a dllog file (lines with or without the ``DLLL`` prefix)."""
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith(DLLogger.PREFIX.strip()):
                line = line[len(DLLogger.PREFIX.strip()):].strip()
            if line:
                records.append(json.loads(line))
    return records


# ---------------------------------------------------------------------------------------------
# Loss and metrics


def pretraining_losses(outputs: dict, features: dict) -> dict:
    """Scalar float32 losses and the counts behind the accuracies of one batch.

    The same for packed rows (docs/packing.md) as for the sequences unpacked: the MLM loss is
    the mean over every masked token of the batch (a packed weight is the prediction's
    sequence index, so a slot counts when its weight is > 0), the NSP loss the mean over the
    sequences (``next_sentence_weights`` marks the used [CLS] slots of a packed row)."""
    mlm_logits = outputs["masked_lm_logits"]  # [B, P, V]
    nsp_logits = outputs["next_sentence_logits"]  # [B, 2], packed [B, K, 2]
    ids = tf.cast(features["masked_lm_ids"], tf.int32)
    weights = tf.cast(tf.cast(features["masked_lm_weights"], tf.float32) > 0, tf.float32)
    labels = tf.reshape(tf.cast(features["next_sentence_labels"], tf.int32), [-1])
    nsp_logits = tf.reshape(nsp_logits, [-1, 2])
    if "next_sentence_weights" in features:
        nsp_weights = tf.reshape(tf.cast(features["next_sentence_weights"], tf.float32), [-1])
    else:
        nsp_weights = tf.ones_like(labels, tf.float32)
    mlm_loss = modeling.masked_lm_loss(mlm_logits, ids, weights)
    nsp_each = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=labels, logits=tf.cast(nsp_logits, tf.float32))
    nsp_total = tf.reduce_sum(nsp_weights)
    nsp_loss = tf.reduce_sum(nsp_each * nsp_weights) / tf.maximum(nsp_total, 1.0)
    mlm_hit = tf.cast(tf.equal(tf.argmax(mlm_logits, axis=-1, output_type=tf.int32), ids),
                      tf.float32)
    nsp_hit = tf.cast(tf.equal(tf.argmax(nsp_logits, axis=-1, output_type=tf.int32), labels),
                      tf.float32)
    return {
        "loss": mlm_loss + nsp_loss,
        "mlm_loss": mlm_loss,
        "nsp_loss": nsp_loss,
        "mlm_correct": tf.reduce_sum(mlm_hit * weights),
        "mlm_total": tf.reduce_sum(weights),
        "nsp_correct": tf.reduce_sum(nsp_hit * nsp_weights),
        "nsp_total": nsp_total,
    }


_METRIC_KEYS = ("loss", "mlm_loss", "nsp_loss", "mlm_correct", "mlm_total", "nsp_correct",
                "nsp_total")


# ---------------------------------------------------------------------------------------------
# Training step


class PretrainingStep:
    """Compiled micro-batch / optimizer-step functions for one model and optimizer."""

    def __init__(self, model, optimizer, comm, num_accumulation_steps: int,
                 allreduce_post_accumulation: bool = True, jit_compile: bool = False):
        if num_accumulation_steps < 1:
            raise ValueError("num_accumulation_steps must be >= 1")
        self.model = model
        self.optimizer = optimizer
        self.comm = comm
        self.num_acc = num_accumulation_steps
        self.post = allreduce_post_accumulation
        self.variables = model.trainable_variables
        self.distributed = comm.world_size > 1
        self.accumulators = None
        if num_accumulation_steps > 1:
            self.accumulators = [tf.Variable(tf.zeros(v.shape, tf.float32), trainable=False,
                                             name=f"grad_accum_{i}")
                                 for i, v in enumerate(self.variables)]
        if jit_compile and self.distributed:
            raise ValueError("jit_compile (--xla) needs a single process: the gradient "
                             "allreduce is a Python call that XLA cannot compile")
        xla = {"jit_compile": True} if jit_compile else {}
        self._micro = tf.function(self._micro_step, reduce_retracing=True, autograph=False,
                                  **xla)
        self._apply = tf.function(self._apply_step, autograph=False, **xla)
        self._single = tf.function(self._single_step, reduce_retracing=True, autograph=False,
                                   **xla)

    def _grads(self, features):
        with tf.GradientTape() as tape:
            outputs = self.model(features, training=True)
            metrics = pretraining_losses(outputs, features)
        grads = tape.gradient(metrics["loss"], self.variables)
        grads = [tf.convert_to_tensor(g, tf.float32) if g is not None else tf.zeros_like(v)
                 for g, v in zip(grads, self.variables)]
        return grads, metrics

    def _micro_step(self, features):
        grads, metrics = self._grads(features)
        if self.distributed and not self.post:
            grads = self.comm.allreduce_mean(grads)
        for acc, g in zip(self.accumulators, grads):
            acc.assign_add(g)
        return metrics

    def _apply_step(self):
        scale = 1.0 / self.num_acc
        grads = [acc * scale for acc in self.accumulators]
        if self.distributed and self.post:
            grads = self.comm.allreduce_mean(grads)
        self.optimizer.apply_gradients(zip(grads, self.variables))
        for acc in self.accumulators:
            acc.assign(tf.zeros_like(acc))

    def _single_step(self, features):
        grads, metrics = self._grads(features)
        if self.distributed:
            grads = self.comm.allreduce_mean(grads)
        self.optimizer.apply_gradients(zip(grads, self.variables))
        return metrics

    def __call__(self, micro_batches: Sequence[dict]) -> dict:
        """One optimizer step over ``micro_batches`` (len == num_accumulation_steps); returns
        the step's metrics (losses averaged over micro-batches, counts summed), this rank."""
        if len(micro_batches) != self.num_acc:
            raise ValueError(f"expected {self.num_acc} micro-batches, got {len(micro_batches)}")
        if self.num_acc == 1:
            results = [self._single(micro_batches[0])]
        else:
            results = [self._micro(b) for b in micro_batches]
            self._apply()
        out = {k: float(sum(float(r[k]) for r in results)) for k in _METRIC_KEYS}
        for k in ("loss", "mlm_loss", "nsp_loss"):
            out[k] /= len(results)
        return out


def summarize(metrics: dict) -> dict:
    """Counts -> accuracies."""
    return {
        "loss": metrics["loss"], "mlm_loss": metrics["mlm_loss"],
        "nsp_loss": metrics["nsp_loss"],
        "mlm_accuracy": metrics["mlm_correct"] / max(metrics["mlm_total"], 1e-9),
        "nsp_accuracy": metrics["nsp_correct"] / max(metrics["nsp_total"], 1e-9),
    }


def mean_over_ranks(comm, metrics: dict) -> dict:
    """Losses averaged, counts summed over ranks (every rank must call)."""
    if comm.world_size == 1:
        return metrics
    gathered = comm.allgather(metrics)
    out = {k: float(sum(g[k] for g in gathered)) for k in metrics}
    for k in ("loss", "mlm_loss", "nsp_loss"):
        out[k] /= len(gathered)
    return out


# ---------------------------------------------------------------------------------------------
# Evaluation


def evaluate(model, batches: Iterator[dict], comm, max_steps: int | None = None) -> dict:
    """Masked-LM and next-sentence accuracy/loss over ``batches`` (all ranks; summed)."""

    @tf.function(reduce_retracing=True)
    def forward(features):
        outputs = model(features, training=False)
        m = pretraining_losses(outputs, features)
        # Sums, so that batches of different sizes and ranks combine exactly.
        return {"mlm_loss_sum": m["mlm_loss"] * (m["mlm_total"] + 1e-5),
                "nsp_loss_sum": m["nsp_loss"] * m["nsp_total"],
                **{k: m[k] for k in ("mlm_correct", "mlm_total", "nsp_correct", "nsp_total")}}

    sums = {k: 0.0 for k in ("mlm_loss_sum", "nsp_loss_sum", "mlm_correct", "mlm_total",
                             "nsp_correct", "nsp_total")}
    steps = 0
    for features in batches:
        if max_steps is not None and steps >= max_steps:
            break
        out = forward(features)
        for k in sums:
            sums[k] += float(out[k])
        steps += 1
    if comm.world_size > 1:
        gathered = comm.allgather(sums)
        sums = {k: float(sum(g[k] for g in gathered)) for k in sums}
        steps = int(sum(comm.allgather(steps)))
    return {
        "masked_lm_accuracy": sums["mlm_correct"] / max(sums["mlm_total"], 1e-9),
        "masked_lm_loss": sums["mlm_loss_sum"] / max(sums["mlm_total"], 1e-9),
        "next_sentence_accuracy": sums["nsp_correct"] / max(sums["nsp_total"], 1e-9),
        "next_sentence_loss": sums["nsp_loss_sum"] / max(sums["nsp_total"], 1e-9),
        "eval_sequences": int(sums["nsp_total"]),
        "eval_batches": steps,
    }


# ---------------------------------------------------------------------------------------------
# RNG state of dropout layers (per rank, for exact resume)


def rng_state_variables(model) -> list:
    """The Keras seed-generator states (dropout) of ``model``, in a stable order."""
    return compat.rng_state_variables(model)


def get_rng_states(model) -> list[list[int]]:
    return [np.asarray(v.numpy()).astype(np.int64).tolist() for v in rng_state_variables(model)]


def set_rng_states(model, states: Sequence[Sequence[int]]) -> bool:
    variables = rng_state_variables(model)
    if len(states) != len(variables):
        return False
    for v, s in zip(variables, states):
        v.assign(np.asarray(s, dtype=np.dtype(getattr(v.dtype, "name", v.dtype))))
    return True
