"""Fine-tune BERT on SQuAD v1.1 (v2.0 with --version_2_with_negative), predict, evaluate.

    python models/bert_large/tensorflow/run_squad.py \\
        --vocab_file=$BERT/vocab.txt --bert_config_file=$BERT/bert_config.json \\
        --init_checkpoint=$BERT/bert_model.ckpt \\
        --do_train=True --train_file=$SQUAD/train-v1.1.json \\
        --do_predict=True --predict_file=$SQUAD/dev-v1.1.json \\
        --train_batch_size=24 --learning_rate=3e-5 --num_train_epochs=2.0 \\
        --max_seq_length=384 --doc_stride=128 --precision=bf16 --output_dir=/tmp/squad

Writes to ``output_dir``: ``model.ckpt-<steps>`` (after training), ``predictions.json``,
``nbest_predictions.json``, ``eval_results.json`` (exact match / F1, when the predict file
has answers) and ``train_summary.json``. Several ranks (mpirun): see ``runtime``.
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


def build_parser():
    p = tf_flags.common_parser("Fine-tune BERT on SQuAD and predict answers.")
    p.set_defaults(max_seq_length=384, train_batch_size=12, learning_rate=3e-5,
                   num_train_epochs=2.0)
    g = p.add_argument_group("SQuAD")
    g.add_argument("--train_file", help="SQuAD JSON for training (train-v1.1.json)")
    g.add_argument("--dataset_path", help="folder holding train-v1.1.json and dev-v1.1.json: "
                   "the defaults of --train_file and --predict_file (Habana's flag)")
    tf_flags.add_bool(g, "do_predict", False, "predict answers for --predict_file")
    tf_flags.add_bool(g, "do_eval", True,
                  "score predictions (exact match, F1) when --predict_file has answers")
    g.add_argument("--predict_file", help="SQuAD JSON to predict (dev-v1.1.json)")
    g.add_argument("--predict_batch_size", "--eval_batch_size", dest="predict_batch_size",
                   type=int, default=8)
    g.add_argument("--doc_stride", type=int, default=128,
                   help="word pieces between the starts of two windows of a long context")
    g.add_argument("--max_query_length", type=int, default=64,
                   help="questions are cut to this many word pieces")
    g.add_argument("--n_best_size", type=int, default=20)
    g.add_argument("--max_answer_length", type=int, default=30,
                   help="longest answer in word pieces")
    tf_flags.add_bool(g, "version_2_with_negative", False, "SQuAD 2.0: questions may be "
                  "unanswerable")
    g.add_argument("--null_score_diff_threshold", type=float, default=0.0,
                   help="SQuAD 2.0: predict no answer when null score - best > this")
    return p


def validate_flags(flags):
    """All flag checks before any work; returns the BertConfig."""
    if not flags.do_train and not flags.do_predict:
        raise FlagError("nothing to do: set --do_train=True and/or --do_predict=True")
    if flags.dataset_path:
        if not os.path.isdir(flags.dataset_path):
            raise FlagError(f"--dataset_path={flags.dataset_path}: not a folder; point it at "
                            "the folder holding train-v1.1.json and dev-v1.1.json")
        flags.train_file = flags.train_file or os.path.join(flags.dataset_path,
                                                            "train-v1.1.json")
        flags.predict_file = flags.predict_file or os.path.join(flags.dataset_path,
                                                                "dev-v1.1.json")
    if flags.do_train:
        tf_flags.require_file(flags.train_file, "train_file",
                           "--do_train needs the SQuAD training JSON")
    if flags.do_predict:
        tf_flags.require_file(flags.predict_file, "predict_file",
                           "--do_predict needs the SQuAD JSON to predict")
        if flags.predict_batch_size < 1:
            raise FlagError(f"--predict_batch_size={flags.predict_batch_size} must be >= 1")
    config = tf_flags.validate_common(flags, needs_training_flags=flags.do_train)
    if flags.max_query_length < 1:
        raise FlagError(f"--max_query_length={flags.max_query_length} must be >= 1")
    if flags.max_seq_length <= flags.max_query_length + 3:
        raise FlagError(f"--max_seq_length={flags.max_seq_length} must be larger than "
                        f"--max_query_length + 3 ({flags.max_query_length + 3}) to leave room "
                        "for the context")
    if flags.doc_stride < 1:
        raise FlagError(f"--doc_stride={flags.doc_stride} must be >= 1")
    if flags.doc_stride > flags.max_seq_length - flags.max_query_length - 3:
        log.warning("--doc_stride=%d is larger than a window's context (%d word pieces): "
                    "parts of long contexts will be skipped", flags.doc_stride,
                    flags.max_seq_length - flags.max_query_length - 3)
    if flags.n_best_size < 1:
        raise FlagError(f"--n_best_size={flags.n_best_size} must be >= 1")
    if flags.max_answer_length < 1:
        raise FlagError(f"--max_answer_length={flags.max_answer_length} must be >= 1")
    return config


def _features(flags, tokenizer, examples, is_training):
    from models.bert_large.tensorflow import squad_data  # noqa: PLC0415

    start = time.perf_counter()
    features = squad_data.convert_examples_to_features(
        examples, tokenizer, max_seq_length=flags.max_seq_length, doc_stride=flags.doc_stride,
        max_query_length=flags.max_query_length, is_training=is_training)
    log.info("%d questions -> %d windows in %.1fs", len(examples), len(features),
             time.perf_counter() - start)
    return features


def load_squad_flag_file(path: str, flag: str) -> dict:
    """The parsed SQuAD JSON of ``--<flag>``; a file of another layout is a FlagError naming
    the flag and the place, before any model is built."""
    from models.bert_large.tensorflow import squad_data  # noqa: PLC0415

    try:
        return squad_data.load_squad_file(path)
    except squad_data.SquadFormatError as err:
        raise FlagError(f"--{flag}={path}: {err}") from None


def main(argv: Sequence[str] | None = None) -> int:
    flags = tf_flags.parse_flags(build_parser(), argv)
    config = validate_flags(flags)
    train_json = load_squad_flag_file(flags.train_file, "train_file") if flags.do_train else None
    predict_json = (load_squad_flag_file(flags.predict_file, "predict_file")
                    if flags.do_predict else None)

    # TensorFlow only now that the flags are known to be good.
    from models.bert_large.tensorflow import (  # noqa: PLC0415
        modeling,
        runtime,
        squad_data,
        squad_evaluate,
        tokenization,
    )
    from models.bert_large.tensorflow import finetune_loop as loop  # noqa: PLC0415

    rt = runtime.setup_runtime(flags)

    tokenizer = tokenization.FullTokenizer(flags.vocab_file, do_lower_case=flags.do_lower_case)
    model = modeling.BertForQuestionAnswering(config)
    loop.init_model(model, rt, flags.init_checkpoint, trains=flags.do_train)
    summary: dict = {"task": "squad", "max_seq_length": flags.max_seq_length,
                     "train_batch_size": flags.train_batch_size}

    if flags.do_train:
        try:
            examples = squad_data.read_squad_examples(
                train_json, is_training=True,
                version_2_with_negative=flags.version_2_with_negative)
        except squad_data.SquadFormatError as err:
            raise FlagError(f"--train_file={flags.train_file}: {err}") from None
        if not examples:
            raise FlagError(f"--train_file={flags.train_file} holds no usable questions")
        features = _features(flags, tokenizer, examples, is_training=True)
        arrays = squad_data.features_to_arrays(features, is_training=True)

        def loss_fn(outputs, batch):
            return modeling.squad_loss(outputs, batch["start_positions"], batch["end_positions"])

        summary.update(train_examples=len(examples), train_features=len(features))
        summary.update(loop.fine_tune(model, arrays, loss_fn, flags, rt, task="squad"))

    metric = None
    if flags.do_predict and rt.writes_outputs:
        dataset = predict_json
        examples = squad_data.read_squad_examples(
            dataset, is_training=False, version_2_with_negative=flags.version_2_with_negative)
        features = _features(flags, tokenizer, examples, is_training=False)
        arrays = squad_data.features_to_arrays(features, is_training=False)
        start = time.perf_counter()
        outputs = loop.predict(model, arrays, flags.predict_batch_size,
                               ("start_logits", "end_logits"))
        seconds = time.perf_counter() - start
        log.info("predicted %d windows in %.1fs (%.2f examples/sec)", len(features), seconds,
                 len(features) / max(seconds, 1e-9))
        results = [squad_data.RawResult(int(uid), s, e) for uid, s, e in
                   zip(arrays["unique_ids"], outputs["start_logits"], outputs["end_logits"])]
        predictions, _ = squad_data.write_predictions(
            examples, features, results, n_best_size=flags.n_best_size,
            max_answer_length=flags.max_answer_length, do_lower_case=flags.do_lower_case,
            output_prediction_file=os.path.join(rt.output_dir, "predictions.json"),
            output_nbest_file=os.path.join(rt.output_dir, "nbest_predictions.json"),
            output_null_log_odds_file=os.path.join(rt.output_dir, "null_odds.json"),
            version_2_with_negative=flags.version_2_with_negative,
            null_score_diff_threshold=flags.null_score_diff_threshold)
        log.info("wrote %s", os.path.join(rt.output_dir, "predictions.json"))
        summary.update(predict_examples=len(examples), predict_features=len(features),
                       predict_examples_per_sec=len(features) / max(seconds, 1e-9))
        has_answers = any(ex.answers for ex in examples)
        if flags.do_eval and has_answers:
            scores = squad_evaluate.evaluate(dataset["data"], predictions,
                                             warn=lambda m: log.warning("%s", m))
            print(json.dumps(scores), flush=True)
            log.info("exact_match %.2f f1 %.2f", scores["exact_match"], scores["f1"])
            runtime.write_json(os.path.join(rt.output_dir, "eval_results.json"), scores)
            summary["eval"] = scores
            metric = scores["f1"]
        elif flags.do_eval:
            log.info("%s has no answers: predictions written, not scored", flags.predict_file)

    loop.finish_with_metric(rt, summary, "f1", metric)
    return 0


if __name__ == "__main__":
    tf_flags.run_main(main)
