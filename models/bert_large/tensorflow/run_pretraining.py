"""BERT pretraining (masked LM + next sentence prediction) with LAMB, phase 1 and phase 2.

Phase 1 (sequence length 128, 20 predictions), then phase 2 (512 / 80) from phase 1's final
checkpoint::

    python models/bert_large/tensorflow/run_pretraining.py \\
        --input_files_dir=$DATA/seq_len_128/training --eval_files_dir=$DATA/seq_len_128/test \\
        --bert_config_file=bert_config.json --output_dir=/tmp/bert/phase_1 \\
        --do_train=True --do_eval=False --train_batch_size=64 --eval_batch_size=8 \\
        --max_seq_length=128 --max_predictions_per_seq=20 --num_train_steps=7038 \\
        --num_accumulation_steps=1024 --num_warmup_steps=2000 --save_checkpoints_steps=100 \\
        --learning_rate=0.006 --allreduce_post_accumulation=True \\
        --dllog_path=/tmp/bert/phase_1/bert_dllog.json --resume=False --precision=bf16

    python models/bert_large/tensorflow/run_pretraining.py ... --max_seq_length=512 \\
        --max_predictions_per_seq=80 --init_checkpoint=/tmp/bert/phase_1/model.ckpt-7038 \\
        --output_dir=/tmp/bert/phase_2 ...

Several processes: ``mpirun -np N python run_pretraining.py ...`` (or ``models/common/
launch.py``). Each rank reads its own share of the input files; gradients are averaged over
ranks after accumulation. ``--train_batch_size`` is per rank and micro-batch: one optimizer
step sees ``train_batch_size * num_accumulation_steps * ranks`` sequences.

``--resume=True`` continues from the newest checkpoint in ``--output_dir`` at its step,
learning rate, optimizer state, dropout RNG state and input position, so the weights end up
the same as in an uninterrupted run. Rank 0 writes checkpoints, the dllog and results.

Habana's flags: ``--horovod`` (several ranks always train one model here, the gradients
averaged by Horovod when it is importable, else mpi4py; ``$MODELPKG_COLLECTIVES`` forces
one and the log names it), ``--noamp
--nouse_xla`` (``True`` is refused: not supported), ``--enable_scoped_allocator`` (TF's graph
option), ``--device hpu|cpu|auto``, ``--profile START,STOP`` (a TF profiler trace),
``--deterministic_run``. ``TF_BF16_CONVERSION`` or ``--bf16_config_path`` (Habana's bf16
recipe, ``bf16_config.py``) selects ``--precision=bf16`` unless that flag is given.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from typing import Sequence

if __package__ in (None, ""):  # run as a file: make the package root importable
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), *[".."] * 3)))

from models.bert_large.tensorflow import flags as tf_flags  # noqa: E402
from models.bert_large.tensorflow.flags import FlagError, add_bool  # noqa: E402
from models.bert_large.tensorflow.runtime import setup_logging  # noqa: E402
from models.common import dist_env  # noqa: E402

log = logging.getLogger("bert")


# ---------------------------------------------------------------------------------------------
# Flags


def build_parser() -> argparse.ArgumentParser:
    p = tf_flags.new_parser("BERT pretraining (MLM + NSP, LAMB, gradient accumulation).")
    g = p.add_argument_group("data")
    g.add_argument("--input_files_dir", help="TFRecord folder (or glob / comma list) for "
                   "training, from create_pretraining_data.py")
    g.add_argument("--eval_files_dir", help="TFRecord folder (or glob / comma list) for eval")
    g.add_argument("--max_seq_length", type=int, default=128)
    g.add_argument("--max_predictions_per_seq", type=int, default=20)
    add_bool(g, "verify_input_files", False,
             "read every training file once before training to check its records (CRCs)")
    add_bool(g, "packed_data", None,
             "packed rows from pack_pretraining_data_tfrec.py (docs/packing.md); default: on "
             "when the packing metadata (<folder>_metadata.json) is beside the input folder; "
             "False forces it off, True requires the metadata")

    g = p.add_argument_group("model")
    g.add_argument("--bert_config_file", "--config_file", dest="bert_config_file",
                   help="bert_config.json of the model")
    g.add_argument("--init_checkpoint", help="initial weights: google-research checkpoint or "
                   "phase 1's model.ckpt-<step> (prefix, or a folder = its latest)")
    g.add_argument("--precision", type=tf_flags.precision_flag, default=None,
                   help=f"{tf_flags.PRECISION_HELP}; default: bf16 when TF_BF16_CONVERSION is "
                        "set, else fp32")

    g = p.add_argument_group("training")
    g.add_argument("--output_dir", help="checkpoints, dllog and eval results")
    add_bool(g, "do_train", False, "train")
    add_bool(g, "do_eval", False, "evaluate masked LM / next sentence accuracy")
    g.add_argument("--train_batch_size", type=int, default=32,
                   help="sequences per micro-batch and rank")
    g.add_argument("--eval_batch_size", type=int, default=8)
    g.add_argument("--num_train_steps", type=int, default=100000,
                   help="optimizer steps (each of num_accumulation_steps micro-batches)")
    g.add_argument("--num_accumulation_steps", type=int, default=1,
                   help="micro-batches per optimizer step")
    g.add_argument("--num_warmup_steps", type=int, default=10000)
    g.add_argument("--learning_rate", type=float, default=5e-5,
                   help="peak learning rate (for the whole global batch; not scaled)")
    g.add_argument("--optimizer_type", choices=("lamb", "adamw"), default="lamb")
    g.add_argument("--weight_decay_rate", type=float, default=0.01)
    add_bool(g, "allreduce_post_accumulation", False,
             "average gradients across ranks once per optimizer step (True) or after every "
             "micro-batch (False); the result is the same")
    g.add_argument("--save_checkpoints_steps", type=int, default=1000)
    g.add_argument("--keep_checkpoint_max", type=int, default=5)
    add_bool(g, "resume", False, "continue from the newest checkpoint in --output_dir")
    g.add_argument("--max_eval_steps", type=int, default=100,
                   help="eval batches per rank (0 = all)")
    tf_flags.add_seed_flags(g)
    g.add_argument("--log_steps", "--display_loss_steps", dest="log_steps", type=int,
                   default=1, help="log every N optimizer steps")
    tf_flags.add_collective_timeout_flag(g)
    tf_flags.add_thread_flags(g)

    g = p.add_argument_group("device, precision and Habana's flags")
    tf_flags.add_gaudi_flags(g, "Habana's switch for Horovod under mpirun; pretraining with "
                                "several ranks always averages gradients (one model), with "
                                "Horovod when importable, else mpi4py "
                                "($MODELPKG_COLLECTIVES=horovod|mpi4py forces one)")
    tf_flags.add_xla_flag(g)
    return p


def validate_flags_or_throw(flags: argparse.Namespace):
    """Check flags before any heavy work; returns the BertConfig."""
    if not (flags.do_train or flags.do_eval):
        raise FlagError("nothing to do: set --do_train=True and/or --do_eval=True")
    tf_flags.require_file(flags.bert_config_file, "bert_config_file",
                          "the model's bert_config.json")
    if not flags.output_dir:
        raise FlagError("--output_dir is required: the folder for checkpoints and logs")
    if flags.do_train and not flags.input_files_dir:
        raise FlagError("--do_train=True needs --input_files_dir (TFRecords from "
                        "create_pretraining_data.py)")
    if flags.do_eval and not flags.eval_files_dir:
        raise FlagError("--do_eval=True needs --eval_files_dir")
    tf_flags.check_init_checkpoint(flags.init_checkpoint, ".../model.ckpt-7038")
    for name in ("train_batch_size", "eval_batch_size", "num_train_steps",
                 "num_accumulation_steps", "save_checkpoints_steps", "log_steps",
                 "max_seq_length", "max_predictions_per_seq"):
        if getattr(flags, name) < 1:
            raise FlagError(f"--{name}={getattr(flags, name)} must be >= 1")
    if flags.num_warmup_steps < 0 or flags.num_warmup_steps > flags.num_train_steps:
        raise FlagError(f"--num_warmup_steps={flags.num_warmup_steps} must be between 0 and "
                        f"--num_train_steps={flags.num_train_steps}")
    if not flags.learning_rate > 0:
        raise FlagError(f"--learning_rate={flags.learning_rate} must be > 0")
    if flags.max_eval_steps < 0:
        raise FlagError(f"--max_eval_steps={flags.max_eval_steps} must be >= 0")
    if flags.max_predictions_per_seq > flags.max_seq_length:
        raise FlagError(f"--max_predictions_per_seq={flags.max_predictions_per_seq} exceeds "
                        f"--max_seq_length={flags.max_seq_length}")
    tf_flags.check_thread_flags(flags)
    tf_flags.check_collective_timeout(flags)
    tf_flags.check_collectives_engine()
    tf_flags.check_gaudi_flags(flags)
    # Several ranks always average gradients here.
    world = dist_env.from_environ().world_size
    tf_flags.check_xla_ranks(flags, world, sync=world > 1)
    config = tf_flags.load_bert_config(flags.bert_config_file)
    tf_flags.check_max_seq_length(flags, config)
    return config


# ---------------------------------------------------------------------------------------------
# Run


def _data_positions_for_rank(extra: dict, env, flags, num_files: int) -> "object":
    """This rank's saved input position, if the checkpoint was written by the same layout."""
    from models.bert_large.tensorflow.pretraining_data import DataPosition  # noqa: PLC0415

    positions = extra.get("data_positions")
    same_layout = (extra.get("world_size") == env.world_size
                   and extra.get("train_batch_size") == flags.train_batch_size
                   and extra.get("seed") == flags.seed
                   and extra.get("input_files") == num_files)
    if positions and same_layout and len(positions) == env.world_size:
        return DataPosition.from_dict(positions[env.rank])
    if positions:
        # Another layout reads the files in another order: start a fresh epoch after the
        # furthest one reached rather than replaying data from the start.
        epoch = max(int(p["epoch"]) for p in positions) + 1
        log.warning("checkpoint was written with another rank count / batch size / seed / "
                    "number of input files; input restarts at epoch %d instead of the exact "
                    "position", epoch)
        return DataPosition(epoch, 0, 0)
    return DataPosition()


def run(flags: argparse.Namespace, config, env: dist_env.DistEnv) -> int:
    import keras  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415

    from models.bert_large.tensorflow import (  # noqa: PLC0415
        checkpoint,
        distributed,
        modeling,
        optimization,
        runtime,
    )
    from models.bert_large import packing  # noqa: PLC0415
    from models.bert_large.tensorflow import pretraining_data as pdata  # noqa: PLC0415
    from models.bert_large.tensorflow import pretraining_loop as loop  # noqa: PLC0415

    prec = flags.precision  # resolved by check_gaudi_flags (TF_BF16_CONVERSION, ...)
    runtime.configure_tf(flags, prec)
    comm = distributed.get_communicator(env=env,
                                        timeout=tf_flags.check_collective_timeout(flags))
    primary = env.is_primary
    world = env.world_size

    # Input files first: a bad path fails in seconds, before the model is built.
    train_data = eval_data = None
    train_files: list[str] = []
    if flags.do_train:
        train_files = pdata.list_input_files(flags.input_files_dir, "input_files_dir")
        meta = packing.packed_input(train_files[0], flags.packed_data, "--packed_data")
        layout = pdata.check_record_shapes(train_files, flags.max_seq_length,
                                           flags.max_predictions_per_seq, meta)
        if meta is not None:
            acc = packing.packed_accumulation_steps(flags.num_accumulation_steps, meta)
            log.info("packed data (%s): %.3f sequences per row, packing efficiency %.2f%%; "
                     "--num_accumulation_steps %d -> %d (divided by the sequences per row, as "
                     "Habana's run_pretraining does)", meta.path, meta.avg_seq_per_sample,
                     100 * meta.packing_efficiency, flags.num_accumulation_steps, acc)
            flags.num_accumulation_steps = acc
        if flags.verify_input_files:
            n = pdata.verify_files(train_files[env.rank::world] or train_files)
            log.info("verified %d records", n)
        train_data = pdata.PretrainingData(
            train_files, flags.train_batch_size, layout.seq, layout.pred, rank=env.rank,
            world_size=world, seed=flags.seed, sequences_per_pack=layout.sequences_per_pack)
        if len(train_files) < world:
            log.warning("%d input files for %d ranks: every rank reads all files and keeps "
                        "every %d-th record; write more shards for faster input",
                        len(train_files), world, world)
    if flags.do_eval:
        eval_files = pdata.list_input_files(flags.eval_files_dir, "eval_files_dir")
        meta = packing.packed_input(eval_files[0], flags.packed_data, "--packed_data")
        layout = pdata.check_record_shapes(eval_files, flags.max_seq_length,
                                           flags.max_predictions_per_seq, meta)
        if meta is not None:
            log.info("packed data (%s) for evaluation: %.3f sequences per row", meta.path,
                     meta.avg_seq_per_sample)
        eval_data = pdata.PretrainingData(
            eval_files, flags.eval_batch_size, layout.seq, layout.pred, rank=env.rank,
            world_size=world, seed=flags.seed, shuffle=False, repeat=False,
            drop_remainder=False, sequences_per_pack=layout.sequences_per_pack)

    # Ranks differ in dropout; weights are made equal below (broadcast or same checkpoint).
    keras.utils.set_random_seed(flags.seed + env.rank)
    model = modeling.BertForPreTraining(config)
    model.ensure_built()
    optimizer = optimization.create_optimizer(
        flags.optimizer_type, flags.learning_rate, flags.num_train_steps,
        flags.num_warmup_steps, weight_decay_rate=flags.weight_decay_rate)
    optimizer.build(model.trainable_variables)

    dllog = loop.DLLogger((flags.dllog_path or os.path.join(flags.output_dir,
                                                            "bert_dllog.json"))
                          if primary else None)
    if primary:
        os.makedirs(flags.output_dir, exist_ok=True)
        dllog.log("PARAMETER", dict(tf_flags.flag_values(flags), precision=prec, world_size=world,
                                    global_batch_size=flags.train_batch_size
                                    * flags.num_accumulation_steps * world,
                                    num_parameters=int(sum(int(tf.size(v)) for v in
                                                           model.trainable_variables))),
                  kind="METADATA")

    step = 0
    position = pdata.DataPosition()
    resumed_from = checkpoint.latest_training_checkpoint(flags.output_dir) if flags.resume \
        else None
    if flags.resume and not resumed_from:
        log.info("--resume=True but no checkpoint in %s: starting from the beginning",
                 flags.output_dir)
    elif not flags.resume and flags.do_train and primary:
        existing = checkpoint.latest_training_checkpoint(flags.output_dir)
        if existing:
            log.warning("%s already holds checkpoints (latest %s); this run starts over "
                        "and writes its own next to them (use --resume=True to continue, "
                        "or an empty --output_dir)", flags.output_dir, existing)
    if resumed_from:
        step, extra = checkpoint.restore_training_checkpoint(resumed_from, model, optimizer)
        if int(optimizer.iterations.numpy()) != step:
            optimizer.iterations.assign(step)
        position = _data_positions_for_rank(extra, env, flags, len(train_files))
        rng = extra.get("rng_states")
        if rng and len(rng) == world and not loop.set_rng_states(model, rng[env.rank]):
            log.warning("dropout RNG state in %s does not fit the model", resumed_from)
        log.info("resumed from %s at step %d (input position %s)", resumed_from, step,
                 position)
        dllog.log("RESUME", {"checkpoint": resumed_from, "step": step}, kind="METADATA")
    elif flags.init_checkpoint:
        report = checkpoint.load_init_checkpoint(model, flags.init_checkpoint)
        log.info("%s", report.summary())
        dllog.log("INIT_CHECKPOINT", {"path": report.path, "loaded": len(report.loaded),
                                      "initialized": report.initialized}, kind="METADATA")
    else:
        log.info("no --init_checkpoint: starting from random weights")
    if world > 1 and not resumed_from:
        comm.broadcast_variables(model.trainable_variables, root=0)

    status = 0
    if flags.do_train:
        status = _train(flags, env, comm, model, optimizer, train_data, position, step,
                        train_files, dllog, loop, checkpoint, pdata, prec, runtime)
        if status:
            dllog.close()
            return status
    if flags.do_eval:
        results = loop.evaluate(model, (f for f, _ in eval_data.batches()), comm,
                                max_steps=flags.max_eval_steps or None)
        results["global_step"] = int(optimizer.iterations.numpy())
        (log.info if primary else log.debug)(
            "eval: masked LM accuracy %.4f, loss %.4f; next sentence accuracy %.4f, "
            "loss %.4f (%d sequences)", results["masked_lm_accuracy"],
            results["masked_lm_loss"], results["next_sentence_accuracy"],
            results["next_sentence_loss"], results["eval_sequences"])
        dllog.log(["eval"], results)
        if primary:
            runtime.write_key_values(os.path.join(flags.output_dir, "eval_results.txt"),
                                     results)
    dllog.close()
    return status


def _train(flags, env, comm, model, optimizer, data, position, step, train_files, dllog,
           loop, checkpoint, pdata, prec, runtime) -> int:
    world = env.world_size
    global_batch = flags.train_batch_size * flags.num_accumulation_steps * world
    trainer = loop.PretrainingStep(model, optimizer, comm, flags.num_accumulation_steps,
                                   flags.allreduce_post_accumulation, jit_compile=flags.xla)
    if flags.xla and env.is_primary:
        log.info("train step: XLA (jit_compile)")
    log.info("training steps %d -> %d; %d rank(s) x %d micro-batches x %d sequences = %d "
             "per step; LAMB peak lr %g, warmup %d; precision %s", step,
             flags.num_train_steps, world, flags.num_accumulation_steps,
             flags.train_batch_size, global_batch, flags.learning_rate,
             flags.num_warmup_steps, prec)

    def save(at_step: int, pos) -> None:
        positions = comm.allgather(pos.to_dict())
        rng_states = comm.allgather(loop.get_rng_states(model))
        if env.is_primary:
            extra = {"data_positions": positions, "rng_states": rng_states,
                     "world_size": world, "train_batch_size": flags.train_batch_size,
                     "num_accumulation_steps": flags.num_accumulation_steps,
                     "seed": flags.seed, "input_files": len(train_files),
                     "max_seq_length": flags.max_seq_length}
            path = checkpoint.save_training_checkpoint(
                flags.output_dir, at_step, model, optimizer, extra=extra,
                max_to_keep=flags.keep_checkpoint_max)
            log.info("saved %s", path)

    from models.bert_large.tensorflow import profiling  # noqa: PLC0415

    batches = pdata.prefetch(data.batches(position), depth=2 * flags.num_accumulation_steps)
    train_start = time.perf_counter()
    first_step = step + 1

    profiler = profiling.StepProfiler(flags.profile_steps, flags.output_dir,
                                      enabled=env.is_primary)
    profiler.check_reachable(flags.num_train_steps)
    try:
        status = _train_loop(flags, env, comm, optimizer, trainer, batches, step, dllog, loop,
                             save, profiler)
    finally:
        profiler.stop()
    if isinstance(status, int):
        return status
    step, last, timed_seconds, timed_steps = status
    seconds = time.perf_counter() - train_start
    sps = timed_steps * global_batch / timed_seconds if timed_steps else \
        (step - first_step + 1) * global_batch / max(seconds, 1e-9)
    summary = dict(last or {}, global_step=step, training_seconds=round(seconds, 3),
                   throughput_train=sps, sequences_per_sec=sps,
                   final_loss=(last or {}).get("loss"))
    if world > 1:  # every rank applied the same averaged updates: the weights must agree
        same = comm.all_equal(runtime.weights_fingerprint(model.trainable_variables))
        summary["weights_identical_across_ranks"] = same
        if not same:
            log.error("ranks ended with different weights")
    dllog.log([], summary)
    if env.is_primary:
        log.info("training done at step %d in %.1fs, %.1f sequences/s", step, seconds, sps)
    return 0


def _train_loop(flags, env, comm, optimizer, trainer, batches, step, dllog, loop, save,
                profiler):
    """Optimizer steps until ``--num_train_steps``: (step, last logged metrics, timed
    seconds, timed steps), or exit status 1 when the loss is not finite."""
    global_batch = flags.train_batch_size * flags.num_accumulation_steps * env.world_size
    window: list[dict] = []
    window_start = time.perf_counter()
    timed_seconds, timed_steps = 0.0, 0
    first_step = step + 1
    last = None
    position = None
    while step < flags.num_train_steps:
        micro = []
        for _ in range(flags.num_accumulation_steps):
            features, position = next(batches)
            micro.append(features)
        lr = float(optimizer.learning_rate)  # the schedule at this step: what it applies
        comm.step = step + 1  # named if a collective of this step times out
        profiler.begin(step + 1)
        t0 = time.perf_counter()
        metrics = trainer(micro)
        step += 1
        dt = time.perf_counter() - t0
        profiler.end(step, last_step=flags.num_train_steps)
        if step != first_step:  # the first step includes tracing
            timed_seconds += dt
            timed_steps += 1
        if not math.isfinite(metrics["loss"]):
            log.error("loss is %s at step %d; lower --learning_rate or check the data",
                      metrics["loss"], step)
            return 1
        window.append(metrics)
        if step % flags.log_steps == 0 or step == flags.num_train_steps:
            summed = {k: sum(m[k] for m in window) for k in window[0]}
            for k in ("loss", "mlm_loss", "nsp_loss"):
                summed[k] /= len(window)
            last = loop.summarize(loop.mean_over_ranks(comm, summed))
            now = time.perf_counter()
            sps = len(window) * global_batch / max(now - window_start, 1e-9)
            last.update(learning_rate=lr, sequences_per_sec=sps)
            dllog.log(step, last)
            if env.is_primary:
                log.info("step %d/%d loss %.4f (mlm %.4f nsp %.4f) mlm_acc %.3f lr %.3g "
                         "seq/s %.1f", step, flags.num_train_steps, last["loss"],
                         last["mlm_loss"], last["nsp_loss"], last["mlm_accuracy"], lr, sps)
            window = []
            window_start = now
        if step % flags.save_checkpoints_steps == 0 or step == flags.num_train_steps:
            save(step, position)
    return step, last, timed_seconds, timed_steps


def _abort_other_ranks(env: dist_env.DistEnv) -> None:
    """An error on one rank would leave the others waiting in a collective forever. With
    Horovod (which initialised MPI itself) mpi4py, when present, joins that MPI to abort."""
    if env.world_size < 2 or not {"mpi4py.MPI", "horovod.tensorflow"} & set(sys.modules):
        return
    try:
        from mpi4py import MPI  # noqa: PLC0415
    except ImportError:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    MPI.COMM_WORLD.Abort(1)


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    flags = tf_flags.parse_flags(build_parser(), argv)
    env = dist_env.from_environ()
    setup_logging(env)
    tf_flags.warn_about_ignored(flags)
    try:
        config = validate_flags_or_throw(flags)
    except FlagError as err:
        print(f"run_pretraining: error: {err}", file=sys.stderr)
        return tf_flags.USAGE_EXIT
    from models.bert_large.packing import PackingMetadataError  # noqa: PLC0415
    from models.bert_large.tensorflow.checkpoint import CheckpointError  # noqa: PLC0415
    from models.bert_large.tensorflow.pretraining_data import (  # noqa: PLC0415
        PretrainingDataError,
    )
    try:
        return run(flags, config, env)
    except (PretrainingDataError, PackingMetadataError, CheckpointError, FlagError,
            FileNotFoundError) as err:
        log.error("%s", err)
        print(f"run_pretraining: error: {err}", file=sys.stderr)
        _abort_other_ranks(env)
        return tf_flags.FAILURE_EXIT
    except BaseException:
        _abort_other_ranks(env)
        raise


if __name__ == "__main__":
    sys.exit(main())
