"""What ``run_squad.py`` and ``run_classifier.py`` share: flags, runtime set-up (threads,
precision, MPI ranks), the training loop, batched prediction, checkpoints and the final
summary / best-rank report.

Multi-process modes (ranks from ``models.common.dist_env``, launched by mpirun):

- ``--mpi_workers_sync_gradients=False`` (default): every rank trains its own model on the
  whole training set with its own seed; rank 0 writes to ``output_dir``, rank r to
  ``output_dir/rank_<r>``; at the end the ranks' scores are gathered and rank 0 reports
  (and writes ``best_rank.json``) which rank scored best.
- ``--mpi_workers_sync_gradients=True``: one model; every rank starts from rank 0's weights,
  reads its own shard of the data, gradients are averaged every step (``distributed.py``)
  and the learning rate is scaled by sqrt(ranks). Rank 0 writes the outputs.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import hashlib
import json
import logging
import math
import os
import sys
import time
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from models.common import dist_env

log = logging.getLogger("bert")

# Flags of the original Intel / Habana / NVIDIA scripts that mean nothing here. Accepted so
# that existing command lines keep working; a warning says they are ignored.
IGNORED_SEED_FLAGS = frozenset({
    "use_horovod", "horovod", "enable_scoped_allocator", "experimental_gelu",
    "optimized_softmax", "amp", "use_xla", "use_tpu", "tpu_name", "tpu_zone", "gcp_project",
    "master", "num_tpu_cores", "dllog_path", "use_fp16", "inter_op_parallelism_threads",
    "intra_op_parallelism_threads", "profile", "benchmark_only", "verbose_logging",
    "iterations_per_loop", "save_checkpoints_steps", "allreduce_post_accumulation",
    "train_option", "mode", "framework", "model_name", "resume",
})


class FlagError(ValueError):
    """A bad command-line flag; the message names it and says what to do."""


# --------------------------------------------------------------------------------------------
# Flags
# --------------------------------------------------------------------------------------------
_TRUE = {"true", "1", "yes", "y", "t", "on"}
_FALSE = {"false", "0", "no", "n", "f", "off"}


def str2bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected True/False (or 1/0), got {value!r}")


def precision_flag(value: str) -> str:
    v = value.strip().lower()
    aliases = {"fp32": "fp32", "float32": "fp32", "bf16": "bf16", "bfloat16": "bf16",
               "mixed_bfloat16": "bf16"}
    if v not in aliases:
        raise argparse.ArgumentTypeError(f"expected fp32 or bf16 (or bfloat16), got {value!r}")
    return aliases[v]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse exits 2 with usage; keep that but name the fix
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_bool(parser: argparse.ArgumentParser, name: str, default: bool, help: str,
             aliases: Sequence[str] = ()) -> None:
    parser.add_argument(f"--{name}", *[f"--{a}" for a in aliases], dest=name, type=str2bool,
                        nargs="?", const=True, default=default, metavar="BOOL", help=help)


def common_parser(description: str) -> argparse.ArgumentParser:
    """Flags both fine-tuning scripts take (google-research names)."""
    p = _Parser(description=description, allow_abbrev=False)
    g = p.add_argument_group("model")
    g.add_argument("--bert_config_file", "--config_file", dest="bert_config_file",
                   help="bert_config.json of the pre-trained model")
    g.add_argument("--vocab_file", help="vocab.txt of the pre-trained model")
    g.add_argument("--init_checkpoint",
                   help="google-research checkpoint prefix (…/bert_model.ckpt) or one of ours")
    add_bool(g, "do_lower_case", True, "lower-case input (True for uncased models)")
    g.add_argument("--precision", type=precision_flag, default="fp32",
                   help="fp32 or bf16 (bfloat16 compute, float32 weights)")

    g = p.add_argument_group("training")
    g.add_argument("--output_dir", help="where checkpoints, predictions and logs go")
    add_bool(g, "do_train", False, "fine-tune")
    g.add_argument("--max_seq_length", type=int, default=128)
    g.add_argument("--train_batch_size", type=int, default=32, help="per rank")
    g.add_argument("--learning_rate", type=float, default=5e-5)
    g.add_argument("--num_train_epochs", type=float, default=3.0,
                   help="may be fractional; at least one step runs")
    g.add_argument("--warmup_proportion", type=float, default=0.1,
                   help="fraction of the steps with linear learning-rate warmup")
    g.add_argument("--num_warmup_steps", "--warmup_steps", dest="num_warmup_steps", type=int,
                   default=None, help="warmup steps (overrides --warmup_proportion)")
    g.add_argument("--optimizer", choices=("adamw", "lamb"), default="adamw")
    g.add_argument("--weight_decay_rate", type=float, default=0.01)
    g.add_argument("--log_steps", type=int, default=10,
                   help="log loss and examples/sec every N steps")
    g.add_argument("--seed", type=int, default=12345)

    g = p.add_argument_group("multi-process (mpirun)")
    add_bool(g, "mpi_workers_sync_gradients", False,
             "True: average gradients across ranks every step; False: independent ranks, "
             "best one reported at the end")
    add_bool(g, "checkpoint_all_ranks", False,
             "sync mode: every rank also saves its final weights in output_dir/rank_<r> "
             "(to check that ranks agree)")
    g.add_argument("--num_intra_threads", type=int, default=None,
                   help="TF intra-op threads (default: $NUM_INTRA_THREADS)")
    g.add_argument("--num_inter_threads", type=int, default=None,
                   help="TF inter-op threads (default: $NUM_INTER_THREADS)")
    return p


def _normalise_argv(argv: Sequence[str], bool_flags: set[str]) -> list[str]:
    """absl habits argparse lacks: ``--no<flag>`` for bools and dashes in names."""
    out = []
    for arg in argv:
        if arg.startswith("--") and len(arg) > 2:
            name, eq, value = arg[2:].partition("=")
            name = name.replace("-", "_")
            if not eq and name.startswith("no") and name[2:] in bool_flags:
                out.append(f"--{name[2:]}=False")
                continue
            out.append(f"--{name}{eq}{value}")
        else:
            out.append(arg)
    return out


def parse_flags(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None
                ) -> argparse.Namespace:
    argv = list(sys.argv[1:] if argv is None else argv)
    bool_flags = {a.dest for a in parser._actions if a.type is str2bool}
    flags, unknown = parser.parse_known_args(_normalise_argv(argv, bool_flags))
    ignored, unexpected = [], []
    for arg in unknown:
        name = arg[2:].partition("=")[0] if arg.startswith("--") else ""
        if name.startswith("no") and name[2:] in IGNORED_SEED_FLAGS:
            name = name[2:]
        (ignored if name in IGNORED_SEED_FLAGS else unexpected).append(arg)
    if unexpected:
        # A misspelt flag would otherwise be dropped and its default used (absl, which the
        # seed scripts use, refuses unknown flags too).
        parser.error(_unknown_flags_message(parser, unexpected))
    flags.ignored_flags = ignored
    flags.unknown_flags = unexpected
    return flags


def _unknown_flags_message(parser: argparse.ArgumentParser, args: Sequence[str]) -> str:
    known = sorted({o[2:] for a in parser._actions for o in a.option_strings
                    if o.startswith("--")})
    parts = []
    for arg in args:
        name = arg[2:].partition("=")[0] if arg.startswith("--") else ""
        close = difflib.get_close_matches(name, known, n=1) if name else []
        parts.append(f"{arg} (did you mean --{close[0]}?)" if close else arg)
    return (f"unknown argument(s): {', '.join(parts)}; see --help for the flags "
            "(use --name=value)")


def warn_about_ignored(flags: argparse.Namespace) -> None:
    if flags.ignored_flags:
        log.warning("ignoring flags that have no effect in this implementation: %s",
                    " ".join(flags.ignored_flags))
    if flags.unknown_flags:
        log.warning("ignoring unknown arguments (check their spelling): %s",
                    " ".join(flags.unknown_flags))


def require_file(value: str | None, flag: str, what: str) -> None:
    if not value:
        raise FlagError(f"--{flag} is required: {what}")
    if not os.path.isfile(value):
        raise FlagError(f"--{flag}={value}: file not found ({what})")


def _checkpoint_exists(prefix: str) -> bool:
    return (os.path.isfile(prefix + ".index") or os.path.isdir(prefix)
            or os.path.isfile(prefix))


def validate_common(flags: argparse.Namespace, needs_training_flags: bool) -> Any:
    """Check the shared flags; returns the loaded BertConfig."""
    from models.bert_large.tensorflow import modeling  # noqa: PLC0415 - TF import is slow

    require_file(flags.vocab_file, "vocab_file", "the vocab.txt of the pre-trained model")
    require_file(flags.bert_config_file, "bert_config_file",
                  "the bert_config.json of the pre-trained model")
    if not flags.output_dir:
        raise FlagError("--output_dir is required: the folder for checkpoints and results")
    if flags.init_checkpoint and not _checkpoint_exists(flags.init_checkpoint):
        raise FlagError(f"--init_checkpoint={flags.init_checkpoint}: no checkpoint there "
                        f"(expected {flags.init_checkpoint}.index); pass the prefix, e.g. "
                        ".../bert_model.ckpt")
    _check_case_matches_checkpoint(flags.do_lower_case, flags.init_checkpoint)
    try:
        config = modeling.BertConfig.from_json_file(flags.bert_config_file)
    except (ValueError, TypeError) as err:
        raise FlagError(f"--bert_config_file={flags.bert_config_file}: {err}") from None
    _check_vocab_fits_config(flags.vocab_file, flags.bert_config_file, config.vocab_size)
    if flags.max_seq_length > config.max_position_embeddings:
        raise FlagError(f"--max_seq_length={flags.max_seq_length} is longer than the model's "
                        f"max_position_embeddings ({config.max_position_embeddings}) in "
                        f"{flags.bert_config_file}; lower --max_seq_length")
    if flags.max_seq_length < 8:
        raise FlagError(f"--max_seq_length={flags.max_seq_length} is too short; use >= 8")
    if flags.log_steps < 1:
        raise FlagError(f"--log_steps={flags.log_steps} must be >= 1")
    if needs_training_flags:
        if flags.train_batch_size < 1:
            raise FlagError(f"--train_batch_size={flags.train_batch_size} must be >= 1")
        if flags.learning_rate <= 0:
            raise FlagError(f"--learning_rate={flags.learning_rate} must be > 0")
        if not flags.num_train_epochs > 0:
            raise FlagError(f"--num_train_epochs={flags.num_train_epochs} must be > 0")
        if not 0 <= flags.warmup_proportion <= 1:
            raise FlagError(f"--warmup_proportion={flags.warmup_proportion} must be in [0, 1]")
        if flags.num_warmup_steps is not None and flags.num_warmup_steps < 0:
            raise FlagError(f"--num_warmup_steps={flags.num_warmup_steps} must be >= 0")
    return config


def _check_vocab_fits_config(vocab_file: str, config_file: str, vocab_size: int) -> None:
    """A vocab.txt with more entries than the model's vocab_size (e.g. an uncased vocab with a
    cased model) yields token ids the embedding table lacks: fail here, not mid-training."""
    from models.bert_large.tensorflow import tokenization  # noqa: PLC0415

    try:  # ids are line numbers; blank lines at the end give no token
        count = 1 + max((i for t, i in tokenization.load_vocab(vocab_file).items() if t),
                        default=-1)
    except (ValueError, UnicodeDecodeError) as err:
        raise FlagError(f"--vocab_file={vocab_file}: {err}") from None
    if count > vocab_size:
        raise FlagError(f"--vocab_file={vocab_file} has {count} entries but vocab_size in "
                        f"--bert_config_file={config_file} is {vocab_size}; use the vocab.txt "
                        "and bert_config.json of the same model")


def _check_case_matches_checkpoint(do_lower_case: bool, init_checkpoint: str | None) -> None:
    """google's published checkpoints say their casing in the folder name."""
    if not init_checkpoint:
        return
    folder = os.path.basename(os.path.dirname(os.path.abspath(init_checkpoint)))
    if folder.startswith(("uncased_L-", "wwm_uncased_L-", "multilingual_L-", "chinese_L-")):
        if not do_lower_case:
            raise FlagError(f"--do_lower_case=False but {folder} is an uncased model; "
                            "set --do_lower_case=True")
    elif folder.startswith(("cased_L-", "wwm_cased_L-", "multi_cased_L-")):
        if do_lower_case:
            raise FlagError(f"--do_lower_case=True but {folder} is a cased model; "
                            "set --do_lower_case=False")


def run_main(main: Callable[[Sequence[str] | None], int]) -> None:
    """Entry point wrapper: flag errors print one line and exit 2; a checkpoint that does not
    fit the model (``CheckpointError``, which names the variable) one line and exit 1; no
    traceback for either."""
    try:
        sys.exit(main(None))
    except FlagError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except ValueError as err:
        # Only loaded once a checkpoint was read, so no CheckpointError can exist before.
        ckpt = sys.modules.get("models.bert_large.tensorflow.checkpoint")
        if ckpt is None or not isinstance(err, ckpt.CheckpointError):
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)


# --------------------------------------------------------------------------------------------
# Runtime
# --------------------------------------------------------------------------------------------
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


def thread_setting(flag_value: int | None, env_name: str) -> int | None:
    """A thread count: the flag when given, else the launcher's ``env_name``, else None."""
    if flag_value is not None:
        return flag_value
    raw = os.environ.get(env_name, "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise FlagError(f"{env_name}={raw!r} is not an integer; unset it or set a "
                        "thread count") from None


def configure_tf_threads(flags: argparse.Namespace) -> tuple[int | None, int | None]:
    """TF's intra/inter-op pools from --num_intra_threads/--num_inter_threads, else the
    launcher's NUM_INTRA_THREADS/NUM_INTER_THREADS (None: TF's default). Call before the first
    TF op."""
    import tensorflow as tf  # noqa: PLC0415

    intra = thread_setting(flags.num_intra_threads, "NUM_INTRA_THREADS")
    inter = thread_setting(flags.num_inter_threads, "NUM_INTER_THREADS")
    if intra:
        tf.config.threading.set_intra_op_parallelism_threads(intra)
    if inter:
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    return intra, inter


def setup_runtime(flags: argparse.Namespace) -> Runtime:
    """Logging, TF threads, precision, ranks and this rank's output folder. Call before any
    TensorFlow op runs (thread pools are fixed at first use)."""
    env = dist_env.from_environ()
    setup_logging(env)
    warn_about_ignored(flags)

    import keras  # noqa: PLC0415

    from models.bert_large.tensorflow import distributed, precision  # noqa: PLC0415

    intra, inter = configure_tf_threads(flags)
    precision.set_precision(flags.precision)

    sync = bool(flags.mpi_workers_sync_gradients) and env.world_size > 1
    comm = distributed.get_communicator(env=env)
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


def weights_fingerprint(variables) -> str:
    """sha256 over all variable values: equal on two ranks iff the weights are equal."""
    h = hashlib.sha256()
    for v in variables:
        h.update(np.ascontiguousarray(v.numpy()).tobytes())
    return h.hexdigest()


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


def make_train_step(model, loss_fn: Callable, optimizer, comm=None) -> Callable:
    """A compiled training step ``step(batch) -> float32 loss``: forward, ``loss_fn(outputs,
    batch)``, gradients and the optimizer update. With ``comm`` (sync mode) the gradients and
    the loss are averaged across ranks before the update."""
    import tensorflow as tf  # noqa: PLC0415

    @tf.function(reduce_retracing=True)
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
          rt: Runtime, log_steps: int) -> TrainStats:
    """Run ``steps`` optimizer steps. ``loss_fn(outputs, batch)`` returns a scalar loss.
    In sync mode the gradients are averaged across ranks before clipping and the update."""
    sync = rt.sync
    step_fn = make_train_step(model, loss_fn, optimizer, rt.comm if sync else None)
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
        loss_value = float(step_fn(next(batches)))
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
    num_rows = len(next(iter(arrays.values())))
    shards = rt.env.world_size if rt.sync else 1
    steps = num_train_steps(num_rows, flags.train_batch_size, flags.num_train_epochs, shards)
    optimizer, peak_lr = make_optimizer(flags, rt, steps)
    batches = iter(train_dataset(arrays, flags.train_batch_size, flags.seed + rt.env.rank,
                                 rt.data_shard))
    stats = train(model, batches, loss_fn, optimizer, steps, flags.train_batch_size, rt,
                  flags.log_steps)
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
def write_json(path: str, obj: Any) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


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
