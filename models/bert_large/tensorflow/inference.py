"""BERT SQuAD inference: a fine-tuned checkpoint served through one compiled ``tf.function``,
timed (benchmark) or scored (accuracy), and exported as a SavedModel.

Used by ``run_inference.py`` (the command line), ``benchmarks/launch_benchmark.py`` (Intel's
``--mode=inference``) and ``benchmarks/squad_inference.py``.

- :func:`build_model`: the Keras policy of the precision (``precision.set_precision``: bf16 =
  ``mixed_bfloat16``, float32 weights, softmax/LayerNorm/logits in float32), then
  ``BertForQuestionAnswering`` with the checkpoint's weights (``checkpoint.load_init_checkpoint``:
  this project's ``run_squad.py`` output or a google/Intel TF1 SQuAD checkpoint, head
  ``cls/squad/output_weights|bias``). A checkpoint without the SQuAD head is refused: its
  answers would come from random weights.
- :func:`serving_function`: ``tf.function`` with a fixed input signature (int32 ``[batch,
  max_seq_length]`` ``input_ids``/``input_mask``/``segment_ids`` -> float32 ``start_logits``/
  ``end_logits``), traced once; the same function is the SavedModel's ``serving_default``
  (:func:`export_saved_model`).
- :func:`benchmark`: warm-up batches (not timed), then timed batches; per-batch latency and
  examples/s (:func:`summarize`), with :func:`environment` (CPU model, ISA flags, TF version,
  thread settings) in the result.
- :func:`predict_logits`: every window's logits, for ``accuracy`` runs.
"""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

log = logging.getLogger("bert")

INPUT_KEYS = ("input_ids", "input_mask", "segment_ids")
OUTPUT_KEYS = ("start_logits", "end_logits")
SAVED_MODEL_DIR = "saved_model"
# Variables the launcher sets per instance (models/common/launch.py --num-instances).
INSTANCE_VAR = "LAUNCH_INSTANCE"
NUM_INSTANCES_VAR = "LAUNCH_NUM_INSTANCES"
RESULT_FILE_VAR = "LAUNCH_RESULT_FILE"
_THREAD_VARS = ("OMP_NUM_THREADS", "NUM_INTRA_THREADS", "NUM_INTER_THREADS", "KMP_AFFINITY",
                "KMP_BLOCKTIME", "DNNL_MAX_CPU_ISA")


class InferenceError(RuntimeError):
    """The work failed (a checkpoint without the SQuAD head, ...): exit status 1."""


def build_model(config, checkpoint_path: str | None, precision: str):
    """``BertForQuestionAnswering`` in ``precision`` with the weights of ``checkpoint_path``
    (prefix or folder). Call before any other Keras model is built in this process."""
    from models.bert_large.tensorflow import checkpoint, modeling  # noqa: PLC0415
    from models.bert_large.tensorflow import precision as tf_precision  # noqa: PLC0415

    tf_precision.set_precision(precision)
    model = modeling.BertForQuestionAnswering(config).ensure_built()
    if checkpoint_path:
        report = checkpoint.load_init_checkpoint(model, checkpoint_path)
        log.info("%s", report.summary())
        if report.initialized:
            raise InferenceError(
                f"checkpoint {report.path} has no fine-tuned SQuAD head "
                f"({', '.join(report.initialized)} missing): it is a pretrained model, not a "
                "SQuAD one. Pass the output of run_squad.py (model.ckpt-N) or a SQuAD "
                "fine-tuned checkpoint such as Intel's bert_large_checkpoints")
    return model


def serving_function(model, max_seq_length: int, batch_size: int | None = None,
                     jit_compile: bool = False) -> Callable:
    """The compiled forward pass: ``f(input_ids, input_mask, segment_ids)`` (int32 ``[B,S]``)
    -> ``{"start_logits", "end_logits"}`` float32 ``[B,S]``; ``batch_size`` None accepts any
    batch (the SavedModel's signature)."""
    import tensorflow as tf  # noqa: PLC0415

    spec = [tf.TensorSpec([batch_size, max_seq_length], tf.int32, name=k) for k in INPUT_KEYS]

    @tf.function(input_signature=spec, jit_compile=jit_compile, reduce_retracing=True)
    def serve(input_ids, input_mask, segment_ids):
        out = model({"input_ids": input_ids, "input_mask": input_mask,
                     "segment_ids": segment_ids}, training=False)
        return {k: tf.cast(out[k], tf.float32) for k in OUTPUT_KEYS}

    return serve


def export_saved_model(model, directory: str, max_seq_length: int) -> str:
    """Write ``directory`` as a SavedModel whose ``serving_default`` signature takes
    ``input_ids``/``input_mask``/``segment_ids`` (int32 ``[None, max_seq_length]``) and returns
    ``start_logits``/``end_logits``; written beside then renamed, so a reader never sees half."""
    import shutil  # noqa: PLC0415

    import tensorflow as tf  # noqa: PLC0415

    module = tf.Module()
    module.model = model
    module.serve = serving_function(model, max_seq_length)
    tmp = f"{directory}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tf.saved_model.save(module, tmp, signatures={"serving_default": module.serve})
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(tmp, directory)
    return directory


def batches(arrays: Mapping[str, np.ndarray], batch_size: int, count: int
            ) -> list[tuple[np.ndarray, ...]]:
    """``count`` full batches of ``batch_size`` windows, cycling through ``arrays`` (a small
    predict file still fills a large batch)."""
    n = len(arrays["input_ids"])
    if n == 0:
        raise InferenceError("the predict file produced no windows to run")
    out = []
    for b in range(count):
        idx = (np.arange(batch_size) + b * batch_size) % n
        out.append(tuple(np.ascontiguousarray(arrays[k][idx], dtype=np.int32)
                         for k in INPUT_KEYS))
    return out


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation (numpy's default)."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else math.nan


def summarize(latencies_s: Sequence[float], batch_size: int) -> dict[str, Any]:
    """Throughput and latency figures of timed batches (seconds each)."""
    total = float(sum(latencies_s))
    ms = [1000.0 * x for x in latencies_s]
    return {
        "examples_per_sec": batch_size * len(latencies_s) / total if total > 0 else math.nan,
        "latency_ms": {"p50": percentile(ms, 50), "p90": percentile(ms, 90),
                       "p99": percentile(ms, 99), "mean": float(np.mean(ms)),
                       "min": min(ms), "max": max(ms)},
        "latencies_ms": ms,
        "timed_batches": len(latencies_s),
        "timed_examples": batch_size * len(latencies_s),
        "seconds": total,
    }


def benchmark(serve: Callable, data: Sequence[tuple[np.ndarray, ...]], warmup: int
              ) -> list[float]:
    """Run ``warmup`` batches untimed (tracing, oneDNN primitive creation), then time each of
    the rest; returns the timed batches' seconds."""
    import tensorflow as tf  # noqa: PLC0415

    tensors = [tuple(tf.constant(a) for a in batch) for batch in data]
    for batch in tensors[:warmup]:
        out = serve(*batch)
        out["start_logits"].numpy()
    latencies = []
    for batch in tensors[warmup:]:
        start = time.perf_counter()
        out = serve(*batch)
        out["start_logits"].numpy()  # the result on the host: the whole batch is done
        latencies.append(time.perf_counter() - start)
    return latencies


def predict_logits(serve: Callable, arrays: Mapping[str, np.ndarray], batch_size: int
                   ) -> dict[str, np.ndarray]:
    """Logits of every window, in order; the last batch is padded to ``batch_size`` (one
    traced shape) and the padding dropped."""
    import tensorflow as tf  # noqa: PLC0415

    n = len(arrays["input_ids"])
    got: dict[str, list[np.ndarray]] = {k: [] for k in OUTPUT_KEYS}
    for start in range(0, n, batch_size):
        rows = np.arange(start, start + batch_size)
        real = int(min(batch_size, n - start))
        rows[real:] = start  # padding rows repeat the first window
        out = serve(*(tf.constant(np.asarray(arrays[k][rows], np.int32)) for k in INPUT_KEYS))
        for k in OUTPUT_KEYS:
            got[k].append(out[k].numpy()[:real])
    return {k: np.concatenate(v) if v else np.zeros((0,), np.float32) for k, v in got.items()}


def environment(intra: int | None, inter: int | None) -> dict[str, Any]:
    """What the figures depend on: CPU model and ISA flags, the CPUs this process may use,
    TensorFlow/Keras versions and the thread settings."""
    import keras  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415

    from models.common import platform_info  # noqa: PLC0415
    from models.common.platform_info import format_cpu_list  # noqa: PLC0415

    platform = platform_info.detect(use_lscpu=False)
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return {
        "cpu_model": platform.model_name,
        "isa_flags": platform.to_dict()["isa_flags"],
        "cpus": format_cpu_list(cpus),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "intra_op_threads": intra if intra else tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": inter if inter else tf.config.threading.get_inter_op_parallelism_threads(),
        "env": {k: os.environ[k] for k in _THREAD_VARS if k in os.environ},
    }


def instance_info(environ: Mapping[str, str] | None = None) -> tuple[int, int]:
    """(this instance, instances) as the launcher's ``--num-instances`` sets them; (0, 1)."""
    environ = os.environ if environ is None else environ
    try:
        return int(environ.get(INSTANCE_VAR, "0")), int(environ.get(NUM_INSTANCES_VAR, "1"))
    except ValueError:
        return 0, 1
