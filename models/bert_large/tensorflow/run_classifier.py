"""Fine-tune BERT for sentence-pair classification (GLUE MRPC) and evaluate accuracy.

    python models/bert_large/tensorflow/run_classifier.py --task_name=MRPC \\
        --do_train=true --do_eval=true --data_dir=$GLUE/MRPC \\
        --vocab_file=$BERT/vocab.txt --bert_config_file=$BERT/bert_config.json \\
        --init_checkpoint=$BERT/bert_model.ckpt --max_seq_length=128 \\
        --train_batch_size=32 --learning_rate=2e-5 --num_train_epochs=3 \\
        --precision=bf16 --output_dir=/tmp/mrpc

Writes to ``output_dir``: ``model.ckpt-<steps>``, ``eval_results.txt`` / ``eval_results.json``
(dev accuracy and loss), ``test_results.tsv`` (with --do_predict) and ``train_summary.json``.
Several ranks (mpirun): see ``runtime``.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Sequence

if __package__ in (None, ""):  # run as a file: make the package root importable
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), *[".."] * 3)))

import numpy as np  # noqa: E402

from models.bert_large.tensorflow import classifier_data  # noqa: E402
from models.bert_large.tensorflow import flags as tf_flags  # noqa: E402
from models.bert_large.tensorflow.flags import FlagError  # noqa: E402

log = logging.getLogger("bert")


def build_parser():
    p = tf_flags.common_parser("Fine-tune BERT for sentence-pair classification (MRPC).")
    p.set_defaults(max_seq_length=128, train_batch_size=32, learning_rate=2e-5,
                   num_train_epochs=3.0)
    g = p.add_argument_group("classification")
    g.add_argument("--task_name", help="MRPC")
    g.add_argument("--data_dir", help="GLUE task folder with train.tsv and dev.tsv")
    g.add_argument("--dataset_path", help="Habana's name for --data_dir (the MRPC folder "
                   "download/download_dataset.py writes)")
    tf_flags.add_bool(g, "do_eval", False, "evaluate accuracy on dev.tsv")
    tf_flags.add_bool(g, "do_predict", False, "write class probabilities for test.tsv")
    g.add_argument("--eval_batch_size", "--predict_batch_size", dest="eval_batch_size",
                   type=int, default=8)
    return p


def validate_flags(flags):
    if not (flags.do_train or flags.do_eval or flags.do_predict):
        raise FlagError("nothing to do: set --do_train, --do_eval and/or --do_predict to True")
    if not flags.task_name:
        raise FlagError("--task_name is required (MRPC)")
    try:
        processor = classifier_data.get_processor(flags.task_name)
    except ValueError as err:
        raise FlagError(str(err)) from None
    if flags.dataset_path:
        if flags.data_dir and os.path.abspath(flags.data_dir) != os.path.abspath(
                flags.dataset_path):
            raise FlagError(f"--data_dir={flags.data_dir} and --dataset_path="
                            f"{flags.dataset_path} name different folders; give one")
        flags.data_dir = flags.dataset_path
    if not flags.data_dir or not os.path.isdir(flags.data_dir):
        raise FlagError(f"--data_dir={flags.data_dir}: not a folder; point it at the GLUE "
                        f"{flags.task_name} folder holding train.tsv and dev.tsv")
    needed = (["train.tsv"] if flags.do_train else []) + (["dev.tsv"] if flags.do_eval else [])
    needed += ["test.tsv"] if flags.do_predict else []
    for name in needed:
        if not os.path.isfile(os.path.join(flags.data_dir, name)):
            raise FlagError(f"--data_dir={flags.data_dir} has no {name}")
    if flags.eval_batch_size < 1:
        raise FlagError(f"--eval_batch_size={flags.eval_batch_size} must be >= 1")
    config = tf_flags.validate_common(flags, needs_training_flags=flags.do_train)
    return config, processor


def read_splits(processor, flags) -> dict:
    """The examples of every split the run needs, read before any model is built; a
    malformed file is a FlagError naming the file and line."""
    wanted = {"train": flags.do_train, "dev": flags.do_eval, "test": flags.do_predict}
    readers = {"train": processor.train_examples, "dev": processor.dev_examples,
               "test": processor.test_examples}
    try:
        return {name: readers[name](flags.data_dir) for name, on in wanted.items() if on}
    except (ValueError, FileNotFoundError) as err:
        raise FlagError(f"--data_dir={flags.data_dir}: {err}") from None


def _softmax_np(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def evaluate_logits(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy and mean cross-entropy of ``logits`` [N, K] against ``labels`` [N]."""
    probs = _softmax_np(logits.astype(np.float64))
    loss = float(-np.mean(np.log(probs[np.arange(len(labels)), labels] + 1e-12)))
    accuracy = float(np.mean(np.argmax(logits, axis=-1) == labels))
    return {"eval_accuracy": accuracy, "eval_loss": loss, "eval_examples": int(len(labels))}


def main(argv: Sequence[str] | None = None) -> int:
    flags = tf_flags.parse_flags(build_parser(), argv)
    config, processor = validate_flags(flags)
    splits = read_splits(processor, flags)

    # TensorFlow only now that the flags are known to be good.
    from models.bert_large.tensorflow import modeling, runtime, tokenization  # noqa: PLC0415
    from models.bert_large.tensorflow import finetune_loop as loop  # noqa: PLC0415

    rt = runtime.setup_runtime(flags)

    tokenizer = tokenization.FullTokenizer(flags.vocab_file, do_lower_case=flags.do_lower_case)
    labels = processor.labels
    model = modeling.BertForSequenceClassification(config, num_labels=len(labels))
    loop.init_model(model, rt, flags.init_checkpoint, trains=flags.do_train)
    summary: dict = {"task": processor.name, "max_seq_length": flags.max_seq_length,
                     "train_batch_size": flags.train_batch_size}
    global_step = 0

    def to_arrays(examples):
        return classifier_data.convert_examples_to_arrays(examples, labels,
                                                          flags.max_seq_length, tokenizer)

    def predict_logits(arrays):
        features = {k: v for k, v in arrays.items() if k != "label_ids"}
        return loop.predict(model, features, flags.eval_batch_size, ("logits",))["logits"]

    if flags.do_train:
        examples = splits["train"]
        if not examples:
            raise FlagError(f"--data_dir={flags.data_dir}: train.tsv has no examples")
        arrays = to_arrays(examples)

        def loss_fn(outputs, batch):
            return modeling.classification_loss(outputs, batch["label_ids"])

        summary["train_examples"] = len(examples)
        summary.update(loop.fine_tune(model, arrays, loss_fn, flags, rt, task=processor.name))
        global_step = summary["num_train_steps"]

    metric = None
    if flags.do_eval and rt.writes_outputs:
        arrays = to_arrays(splits["dev"])
        result = evaluate_logits(predict_logits(arrays), arrays["label_ids"])
        result["global_step"] = global_step
        if "final_loss" in summary:
            result["loss"] = summary["final_loss"]
        runtime.write_key_values(os.path.join(rt.output_dir, "eval_results.txt"), result)
        runtime.write_json(os.path.join(rt.output_dir, "eval_results.json"), result)
        log.info("eval accuracy %.4f loss %.4f on %d examples", result["eval_accuracy"],
                 result["eval_loss"], result["eval_examples"])
        summary["eval"] = result
        metric = result["eval_accuracy"]

    if flags.do_predict and rt.writes_outputs:
        logits = predict_logits(to_arrays(splits["test"]))
        probs = _softmax_np(logits.astype(np.float64))
        path = os.path.join(rt.output_dir, "test_results.tsv")
        with open(path, "w", encoding="utf-8") as f:
            for row in probs:
                f.write("\t".join(f"{p:.6f}" for p in row) + "\n")
        log.info("wrote %s", path)

    loop.finish_with_metric(rt, summary, "eval_accuracy", metric)
    return 0


if __name__ == "__main__":
    tf_flags.run_main(main)
