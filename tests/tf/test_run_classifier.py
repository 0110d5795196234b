"""run_classifier.py (MRPC): data reading, flag checks, and end to end on tiny data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.bert_large.tensorflow import classifier_data, run_classifier, tokenization
from models.bert_large.tensorflow import flags as tf_flags
from tests.tf.conftest import make_vocab_file
from tests.tf.finetune_fixtures import make_bert_dir, model_args, run_script, write_mrpc


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return make_bert_dir(tmp_path_factory.mktemp("ckpt") / "uncased_L-2_H-64_A-4")


@pytest.fixture(scope="module")
def mrpc_dir(tmp_path_factory):
    return write_mrpc(tmp_path_factory.mktemp("glue") / "MRPC", num_train=24, num_dev=10)


def test_mrpc_reader_uses_quality_and_both_strings(tmp_path):
    folder = tmp_path / "MRPC"
    folder.mkdir()
    (folder / "dev.tsv").write_text(
        "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
        "1\t11\t12\tHe said \"hello\".\tHe said hello.\n"
        "0\t13\t14\tthe fox\tthe dog\n", encoding="utf-8")
    examples = classifier_data.MrpcProcessor().dev_examples(str(folder))
    assert [(e.label, e.text_a, e.text_b) for e in examples] == [
        ("1", 'He said "hello".', "He said hello."), ("0", "the fox", "the dog")]


def test_mrpc_reader_errors_name_the_file_and_line(tmp_path):
    proc = classifier_data.MrpcProcessor()
    with pytest.raises(FileNotFoundError, match="train.tsv"):
        proc.train_examples(str(tmp_path))
    (tmp_path / "train.tsv").write_text("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
                                        "2\t1\t2\ta\tb\n")
    with pytest.raises(ValueError, match=r"train.tsv:2: label '2'"):
        proc.train_examples(str(tmp_path))
    with pytest.raises(ValueError, match="--task_name=COLA"):
        classifier_data.get_processor("COLA")


def test_pairs_are_encoded_and_the_longer_sentence_trimmed_first(tmp_path):
    tokenizer = tokenization.FullTokenizer(make_vocab_file(tmp_path / "v.txt"))
    ex = classifier_data.InputExample("g", "one two three four five six", "seven eight", "1")
    arrays = classifier_data.convert_examples_to_arrays([ex], ["0", "1"], 10, tokenizer)
    tokens = tokenizer.convert_ids_to_tokens(arrays["input_ids"][0])
    # 10 - 3 = 7 word pieces: a is cut from 6 to 5, b keeps 2.
    assert tokens == ["[CLS]", "one", "two", "three", "four", "five", "[SEP]", "seven",
                      "eight", "[SEP]"]
    assert arrays["segment_ids"][0].tolist() == [0] * 7 + [1] * 3
    assert arrays["input_mask"][0].tolist() == [1] * 10
    assert arrays["label_ids"].tolist() == [1]


def test_evaluate_logits():
    logits = np.array([[2.0, 0.0], [0.0, 2.0], [1.0, 0.0]])
    result = run_classifier.evaluate_logits(logits, np.array([0, 1, 1]))
    assert result["eval_accuracy"] == pytest.approx(2 / 3)
    expected_loss = -np.mean(np.log([1 / (1 + np.exp(-2)), 1 / (1 + np.exp(-2)),
                                     1 / (1 + np.exp(1))]))
    assert result["eval_loss"] == pytest.approx(expected_loss)


def test_flag_validation(tmp_path, bert_dir, mrpc_dir):
    def error(*extra):
        with pytest.raises(tf_flags.FlagError) as info:
            run_classifier.main([*model_args(bert_dir), f"--output_dir={tmp_path}", *extra])
        return str(info.value)

    assert "nothing to do" in error("--task_name=MRPC", f"--data_dir={mrpc_dir}")
    assert "--task_name is required" in error("--do_train")
    assert "choose one of ['MRPC']" in error("--do_train", "--task_name=SST5")
    assert f"--data_dir={tmp_path / 'x'}" in error("--do_train", "--task_name=MRPC",
                                                   f"--data_dir={tmp_path / 'x'}")
    assert "--train_batch_size=0" in error("--do_train", "--task_name=MRPC",
                                           f"--data_dir={mrpc_dir}", "--train_batch_size=0")


def test_malformed_tsv_stops_before_the_model_naming_file_and_line(tmp_path, bert_dir):
    data = write_mrpc(tmp_path / "MRPC", num_train=4, num_dev=4)
    rows = (data / "dev.tsv").read_text().splitlines()
    rows[2] = "maybe" + rows[2][1:]
    (data / "dev.tsv").write_text("\n".join(rows) + "\n")
    proc = run_script("run_classifier.py", [*model_args(bert_dir), f"--output_dir={tmp_path}/o",
                                            "--task_name=MRPC", "--do_train=True",
                                            "--do_eval=True", f"--data_dir={data}"])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert f"{data / 'dev.tsv'}:3: label 'maybe'" in last
    assert not (tmp_path / "o").exists()  # nothing trained, nothing written


@pytest.mark.slow
def test_train_and_evaluate_mrpc(tmp_path, bert_dir, mrpc_dir):
    out = tmp_path / "out"
    proc = run_script("run_classifier.py", [
        "--task_name=MRPC", "--do_train=true", "--do_eval=true", "--do_predict=true",
        f"--data_dir={mrpc_dir}", *model_args(bert_dir), "--max_seq_length=32",
        "--train_batch_size=4", "--learning_rate=1e-4", "--num_train_epochs=1",
        "--log_steps=2", f"--output_dir={out}", "--use_horovod=false",
        "--enable_scoped_allocator=False"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "examples/sec" in proc.stdout

    result = json.loads((out / "eval_results.json").read_text())
    assert result["eval_examples"] == 10 and result["global_step"] == 6
    assert result["eval_accuracy"] in {i / 10 for i in range(11)}
    assert np.isfinite(result["eval_loss"]) and result["eval_loss"] > 0
    text = dict(line.split(" = ") for line in
                (out / "eval_results.txt").read_text().splitlines())
    assert float(text["eval_accuracy"]) == result["eval_accuracy"]
    assert int(text["global_step"]) == 6

    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["num_train_steps"] == 6 == 24 // 4
    assert [e["step"] for e in summary["loss_log"]] == [2, 4, 6]
    assert summary["eval"]["eval_accuracy"] == result["eval_accuracy"]
    assert (out / "model.ckpt-6.index").is_file()

    rows = (out / "test_results.tsv").read_text().splitlines()
    assert len(rows) == 10
    assert all(sum(map(float, r.split("\t"))) == pytest.approx(1.0, abs=1e-5) for r in rows)
