"""BERT SQuAD inference from a fine-tuned checkpoint: throughput/latency or accuracy.

    python models/bert_large/tensorflow/run_inference.py \\
        --vocab_file=$BERT/vocab.txt --bert_config_file=$BERT/bert_config.json \\
        --init_checkpoint=$CKPT --predict_file=$SQUAD/dev-v1.1.json \\
        --mode=benchmark --batch_size=32 --precision=bf16 --output_dir=/tmp/infer

``--mode=benchmark``: ``--warmup_steps`` batches untimed, then ``--steps`` timed batches of
``--batch_size`` windows of the predict file (cycled when it has fewer); ``--mode=accuracy``:
every window, ``predictions.json`` and exact match / F1 (``squad_evaluate``, the official
v1.1 semantics) in ``eval_results.json``.

Writes to ``output_dir``: ``inference_results.json`` (``inference_results_instance_<i>.json``
for instance i of several started by ``launch.py --num-instances``; also
``$LAUNCH_RESULT_FILE`` when the launcher sets it) with throughput, latency p50/p90/p99,
batch, instances, precision and the environment (CPU model, ISA flags, TF version, threads),
and ``saved_model/`` (a SavedModel with a ``serving_default`` signature; instance 0 only).
Exit status: 0 done, 2 a flag to fix (nothing started), 1 the work failed.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Sequence

if __package__ in (None, ""):  # run as a file: make the package root importable
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), *[".."] * 3)))

from models.bert_large.tensorflow import flags as tf_flags  # noqa: E402
from models.bert_large.tensorflow.flags import FlagError  # noqa: E402

log = logging.getLogger("bert")
MODES = ("benchmark", "accuracy")


def build_parser():
    p = tf_flags.new_parser("BERT SQuAD inference: throughput/latency (benchmark) or exact "
                            "match/F1 (accuracy) of a fine-tuned checkpoint.")
    g = p.add_argument_group("model")
    g.add_argument("--bert_config_file", "--config_file", dest="bert_config_file",
                   help="bert_config.json of the model")
    g.add_argument("--vocab_file", help="vocab.txt of the model")
    g.add_argument("--init_checkpoint", "--checkpoint", dest="init_checkpoint",
                   help="fine-tuned SQuAD checkpoint: prefix (model.ckpt-N) or its folder")
    tf_flags.add_bool(g, "do_lower_case", True, "lower-case input (True for uncased models)")
    g.add_argument("--precision", type=tf_flags.precision_flag, default="fp32",
                   help=tf_flags.PRECISION_HELP)
    tf_flags.add_model_switches(g)
    g = p.add_argument_group("inference")
    g.add_argument("--mode", choices=MODES, default="benchmark")
    g.add_argument("--predict_file", help="SQuAD v1.1 JSON (dev-v1.1.json)")
    g.add_argument("--output_dir", help="results, predictions and the SavedModel go here")
    g.add_argument("--batch_size", "--predict_batch_size", dest="batch_size", type=int,
                   default=32, help="windows per batch")
    g.add_argument("--max_seq_length", type=int, default=384)
    g.add_argument("--doc_stride", type=int, default=128)
    g.add_argument("--max_query_length", type=int, default=64)
    g.add_argument("--n_best_size", type=int, default=20)
    g.add_argument("--max_answer_length", type=int, default=30)
    g.add_argument("--warmup_steps", type=int, default=3,
                   help="benchmark: untimed batches first (tracing, kernel set-up)")
    g.add_argument("--steps", type=int, default=20, help="benchmark: timed batches")
    tf_flags.add_bool(g, "export_saved_model", True,
                      "write output_dir/saved_model (serving_default signature)")
    tf_flags.add_bool(g, "jit_compile", False, "compile the serving function with XLA")
    g.add_argument("--results_file", help="default: output_dir/inference_results.json")
    tf_flags.add_thread_flags(g)
    return p


def validate_flags(flags):
    """Every check before work; returns the BertConfig (with the model switches applied)."""
    tf_flags.require_file(flags.vocab_file, "vocab_file", "the vocab.txt of the model")
    tf_flags.require_file(flags.bert_config_file, "bert_config_file",
                          "the bert_config.json of the model")
    tf_flags.require_file(flags.predict_file, "predict_file", "the SQuAD JSON to run")
    if not flags.init_checkpoint:
        raise FlagError("--init_checkpoint is required: the fine-tuned SQuAD checkpoint "
                        "(run_squad.py's output_dir or its model.ckpt-N)")
    if not os.path.isdir(flags.init_checkpoint):
        tf_flags.check_init_checkpoint(flags.init_checkpoint, ".../model.ckpt-3649")
    if not flags.output_dir:
        raise FlagError("--output_dir is required: the folder for results")
    config = tf_flags.apply_model_switches(flags, tf_flags.load_bert_config(
        flags.bert_config_file))
    tf_flags.check_vocab_tokens(flags.vocab_file, tf_flags.FINETUNE_SPECIAL_TOKENS)
    tf_flags.check_max_seq_length(flags, config)
    for name in ("batch_size", "steps", "doc_stride", "max_query_length", "n_best_size",
                 "max_answer_length"):
        if getattr(flags, name) < 1:
            raise FlagError(f"--{name}={getattr(flags, name)} must be >= 1")
    if flags.warmup_steps < 0:
        raise FlagError(f"--warmup_steps={flags.warmup_steps} must be >= 0")
    if flags.max_seq_length <= flags.max_query_length + 3:
        raise FlagError(f"--max_seq_length={flags.max_seq_length} must be larger than "
                        f"--max_query_length + 3 ({flags.max_query_length + 3})")
    tf_flags.check_thread_flags(flags)
    return config


def main(argv: Sequence[str] | None = None) -> int:
    flags = tf_flags.parse_flags(build_parser(), argv)
    config = validate_flags(flags)
    from models.bert_large.tensorflow.run_squad import load_squad_flag_file  # noqa: PLC0415

    dataset = load_squad_flag_file(flags.predict_file, "predict_file")

    from models.bert_large.tensorflow import inference  # noqa: PLC0415

    instance, instances = inference.instance_info()  # the launcher prefixes their output
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, force=True,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    tf_flags.warn_about_ignored(flags)

    from models.bert_large.tensorflow import (  # noqa: PLC0415
        runtime,
        squad_data,
        squad_evaluate,
        tokenization,
    )

    intra, inter = runtime.configure_tf(flags, flags.precision)
    os.makedirs(flags.output_dir, exist_ok=True)
    tokenizer = tokenization.FullTokenizer(flags.vocab_file, do_lower_case=flags.do_lower_case)
    examples = squad_data.read_squad_examples(dataset, is_training=False)
    if flags.mode == "accuracy" and not any(ex.answers for ex in examples):
        raise FlagError(f"--predict_file={flags.predict_file} has no answers to score: "
                        "--mode=accuracy needs dev-v1.1.json (or use --mode=benchmark)")
    features = squad_data.convert_examples_to_features(
        examples, tokenizer, max_seq_length=flags.max_seq_length, doc_stride=flags.doc_stride,
        max_query_length=flags.max_query_length, is_training=False)
    arrays = squad_data.features_to_arrays(features, is_training=False)
    log.info("%d questions -> %d windows of %d tokens", len(examples), len(features),
             flags.max_seq_length)

    try:
        model = inference.build_model(config, flags.init_checkpoint, flags.precision)
    except inference.InferenceError as err:
        print(f"error: {err}", file=sys.stderr)
        return tf_flags.FAILURE_EXIT
    serve = inference.serving_function(model, flags.max_seq_length, flags.batch_size,
                                       jit_compile=flags.jit_compile)
    result = {"mode": flags.mode, "precision": flags.precision, "batch_size": flags.batch_size,
              "max_seq_length": flags.max_seq_length, "instance": instance,
              "instances": instances, "hidden_act": config.hidden_act,
              "checkpoint": os.path.abspath(flags.init_checkpoint),
              "predict_file": os.path.abspath(flags.predict_file),
              "questions": len(examples), "windows": len(features)}

    if flags.mode == "benchmark":
        data = inference.batches(arrays, flags.batch_size, flags.warmup_steps + flags.steps)
        latencies = inference.benchmark(serve, data, flags.warmup_steps)
        result.update(inference.summarize(latencies, flags.batch_size),
                      warmup_batches=flags.warmup_steps)
        lat = result["latency_ms"]
        print(f"Throughput: {result['examples_per_sec']:.3f} examples/sec "
              f"(batch {flags.batch_size}, {flags.precision})", flush=True)
        print(f"Latency ms: p50 {lat['p50']:.2f} p90 {lat['p90']:.2f} "
              f"p99 {lat['p99']:.2f}", flush=True)
    else:
        start = time.perf_counter()
        outputs = inference.predict_logits(serve, arrays, flags.batch_size)
        seconds = time.perf_counter() - start
        rows = [squad_data.RawResult(int(uid), s, e) for uid, s, e in
                zip(arrays["unique_ids"], outputs["start_logits"], outputs["end_logits"])]
        suffix = f"_instance_{instance}" if instances > 1 else ""
        predictions, _ = squad_data.write_predictions(
            examples, features, rows, n_best_size=flags.n_best_size,
            max_answer_length=flags.max_answer_length, do_lower_case=flags.do_lower_case,
            output_prediction_file=os.path.join(flags.output_dir, f"predictions{suffix}.json"),
            output_nbest_file=os.path.join(flags.output_dir, f"nbest_predictions{suffix}.json"),
            output_null_log_odds_file=None)
        scores = squad_evaluate.evaluate(dataset["data"], predictions,
                                         warn=lambda m: log.warning("%s", m))
        runtime.write_json(os.path.join(flags.output_dir, f"eval_results{suffix}.json"), scores)
        result.update(scores, examples_per_sec=len(features) / max(seconds, 1e-9),
                      seconds=seconds)
        print(json.dumps(scores), flush=True)
        print(f"exact_match {scores['exact_match']:.2f} f1 {scores['f1']:.2f}",
              flush=True)

    result["environment"] = inference.environment(intra, inter)
    if flags.export_saved_model and instance == 0:
        path = inference.export_saved_model(
            model, os.path.join(flags.output_dir, inference.SAVED_MODEL_DIR),
            flags.max_seq_length)
        result["saved_model"] = path
        log.info("SavedModel (serving_default) written to %s", path)
    default_name = ("inference_results.json" if instances == 1
                    else f"inference_results_instance_{instance}.json")
    results_file = flags.results_file or os.path.join(flags.output_dir, default_name)
    runtime.write_json(results_file, result)
    launcher_file = os.environ.get(inference.RESULT_FILE_VAR)
    if launcher_file:
        runtime.write_json(launcher_file, result)
    log.info("results in %s", results_file)
    return 0


if __name__ == "__main__":
    tf_flags.run_main(main)
