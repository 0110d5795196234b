"""run_squad.py: flag handling, and end to end (train, predict, evaluate) on tiny data."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from models.bert_large.tensorflow import finetune_loop as loop
from models.bert_large.tensorflow import flags as tf_flags
from models.bert_large.tensorflow import run_squad
from tests.tf.finetune_fixtures import (TF_DIR, make_bert_dir, make_squad_dict, model_args,
                                        run_script, write_squad)

SQUAD_ARGS = ["--max_seq_length=64", "--doc_stride=24", "--max_query_length=16",
              "--train_batch_size=4", "--predict_batch_size=8", "--learning_rate=1e-4",
              "--n_best_size=20", "--max_answer_length=10"]


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return make_bert_dir(tmp_path_factory.mktemp("ckpt") / "uncased_L-2_H-64_A-4")


@pytest.fixture(scope="module")
def squad_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("squad")
    # 60-word contexts > 64 - 16 - 3 pieces: every context needs several windows.
    train = write_squad(folder / "train-v1.1.json", num_paragraphs=4, context_words=60)
    dev = write_squad(folder / "dev-v1.1.json", num_paragraphs=2, context_words=60, seed=1,
                      answers_per_question=3)
    return train, dev


# ------------------------------------------------------------------------------------------
# Flags
# ------------------------------------------------------------------------------------------
def _parse(*argv):
    return tf_flags.parse_flags(run_squad.build_parser(), list(argv))


@pytest.mark.parametrize("spelling, value", [
    ("--do_train=True", True), ("--do_train=true", True), ("--do_train=1", True),
    ("--do_train", True), ("--do_train=False", False), ("--do_train=0", False),
    ("--nodo_train", False), ("--do-train=yes", True),
])
def test_bool_flags_accept_absl_spellings(spelling, value):
    assert _parse(spelling).do_train is value


def test_seed_flags_are_accepted_and_reported(caplog):
    flags = _parse("--use_horovod=false", "--enable_scoped_allocator=False",
                   "--experimental-gelu=True", "--optimized_softmax=True", "--noamp",
                   "--precision=bfloat16", "--warmup-steps=0", "--config_file=c.json")
    assert flags.precision == "bf16" and flags.num_warmup_steps == 0
    assert flags.bert_config_file == "c.json"
    # Habana's flags are real (use_horovod, enable_scoped_allocator, amp), and so are Intel's
    # model switches (experimental_gelu selects tanh GELU; optimized_softmax=True the fused
    # softmax): nothing is ignored.
    assert (flags.horovod, flags.enable_scoped_allocator, flags.amp) == (False, False, False)
    assert (flags.experimental_gelu, flags.optimized_softmax) == (True, True)
    assert flags.ignored_flags == [] and flags.unknown_flags == []
    flags = _parse("--verbose_logging=True")
    with caplog.at_level(logging.WARNING, logger="bert"):
        tf_flags.warn_about_ignored(flags)
    assert "--verbose_logging=True" in caplog.text


def test_model_switches_change_the_config_or_are_refused():
    from models.bert_large.config import BertConfig

    config = BertConfig(vocab_size=10)
    gelu = tf_flags.apply_model_switches(_parse("--experimental_gelu=True"), config)
    assert gelu.hidden_act == "gelu_new" and config.hidden_act == "gelu"
    assert tf_flags.apply_model_switches(_parse("--optimized-softmax=True"), config) == config
    with pytest.raises(tf_flags.FlagError, match="unfused softmax"):
        tf_flags.apply_model_switches(_parse("--optimized_softmax=False"), config)


def test_misspelt_flag_is_an_error_with_a_suggestion(capsys):
    # Dropping it would train with the default (2 epochs) instead of the 0.01 asked for.
    with pytest.raises(SystemExit) as info:
        _parse("--do_train=True", "--num_train_epoch=0.01", "--train_fle=x.json")
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--num_train_epoch=0.01 (did you mean --num_train_epochs?)" in err
    assert "--train_fle=x.json (did you mean --train_file?)" in err
    with pytest.raises(SystemExit):
        _parse("--do_predict=True", "stray_positional.json")


def test_bad_values_fail_with_the_flag_name():
    with pytest.raises(SystemExit):
        _parse("--do_train=maybe")
    with pytest.raises(SystemExit):
        _parse("--precision=fp16")


def _error(tmp_path, bert_dir, *extra):
    args = [*model_args(bert_dir), f"--output_dir={tmp_path / 'out'}", "--max_seq_length=64",
            "--max_query_length=16", *extra]
    with pytest.raises(tf_flags.FlagError) as info:
        run_squad.main(args)
    return str(info.value)


def test_flag_validation(tmp_path, bert_dir, squad_files):
    train, dev = squad_files
    assert "--do_train=True and/or --do_predict=True" in _error(tmp_path, bert_dir)
    assert "--train_file is required" in _error(tmp_path, bert_dir, "--do_train=True")
    assert "--predict_file=nope.json" in _error(tmp_path, bert_dir, "--do_predict=True",
                                                "--predict_file=nope.json")
    assert "max_position_embeddings (128)" in _error(
        tmp_path, bert_dir, "--do_predict", f"--predict_file={dev}", "--max_seq_length=256")
    assert "--max_query_length + 3" in _error(
        tmp_path, bert_dir, "--do_predict", f"--predict_file={dev}", "--max_seq_length=64",
        "--max_query_length=61")
    assert "--num_train_epochs=0.0" in _error(
        tmp_path, bert_dir, "--do_train", f"--train_file={train}", "--num_train_epochs=0")
    assert "--do_lower_case=False" in _error(
        tmp_path, bert_dir, "--do_predict", f"--predict_file={dev}", "--do_lower_case=False")
    with pytest.raises(tf_flags.FlagError, match="--vocab_file is required"):
        run_squad.main(["--do_predict", f"--predict_file={dev}", f"--output_dir={tmp_path}"])


@pytest.mark.parametrize("content, message", [
    ("[1, 2]", "the top-level object has no 'data' list"),
    ('{"data": [{"title": "t", "paragraphs": [{"context": "a b", "qas": [{"question": "q"}]}]}]}',
     "data[0].paragraphs[0].qas[0] has no 'id'"),
    ("not json", "is not a JSON file"),
])
@pytest.mark.parametrize("mode", ["train_file", "predict_file"])
def test_squad_file_of_another_layout_names_the_flag_and_place(tmp_path, bert_dir, content,
                                                                message, mode):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    action = "--do_train=True" if mode == "train_file" else "--do_predict=True"
    text = _error(tmp_path, bert_dir, action, f"--{mode}={bad}")
    assert text.startswith(f"--{mode}={bad}: ") and message in text


def test_training_question_without_answer_start_names_the_flag(tmp_path, bert_dir):
    bad = tmp_path / "noffset.json"
    bad.write_text(json.dumps({"data": [{"paragraphs": [{"context": "a b", "qas": [
        {"id": "q1", "question": "q", "answers": [{"text": "b"}]}]}]}]}))
    proc = run_script("run_squad.py", [*model_args(bert_dir), f"--output_dir={tmp_path / 'o'}",
                                       "--do_train=True", f"--train_file={bad}",
                                       "--max_seq_length=64", "--max_query_length=16"])
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: --train_file={bad}:") and "'answer_start'" in last
    assert "Traceback" not in proc.stderr


def test_vocab_larger_than_the_config_stops_before_training(tmp_path, bert_dir, squad_files):
    # Token ids past vocab_size would fail deep inside the embedding lookup mid-training.
    vocab = tmp_path / "vocab.txt"
    vocab.write_text((bert_dir / "vocab.txt").read_text() + "extra1\nextra2\n")
    size = json.loads((bert_dir / "bert_config.json").read_text())["vocab_size"]
    text = _error(tmp_path, bert_dir, f"--vocab_file={vocab}", "--do_train",
                  f"--train_file={squad_files[0]}")
    assert f"--vocab_file={vocab} has {size + 2} entries but vocab_size" in text
    assert f"is {size}" in text


def test_config_that_does_not_fit_the_checkpoint_is_one_line_naming_the_variable(
        tmp_path, bert_dir, squad_files):
    config = json.loads((bert_dir / "bert_config.json").read_text())
    config["vocab_size"] += 5
    (tmp_path / "bert_config.json").write_text(json.dumps(config))
    proc = run_script("run_squad.py", [
        *model_args(bert_dir), f"--bert_config_file={tmp_path / 'bert_config.json'}",
        f"--output_dir={tmp_path / 'o'}", "--do_predict=True", f"--predict_file={squad_files[1]}",
        *SQUAD_ARGS])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "bert/embeddings/word_embeddings" in last
    assert "--bert_config_file" in last


@pytest.mark.slow
def test_predict_only_warns_when_the_checkpoint_has_no_trained_head(tmp_path, bert_dir,
                                                                     squad_files):
    proc = run_script("run_squad.py", [*model_args(bert_dir), f"--output_dir={tmp_path}",
                                       "--do_predict=True", f"--predict_file={squad_files[1]}",
                                       *SQUAD_ARGS])
    assert proc.returncode == 0, proc.stderr
    assert "has no trained task head (cls/squad/output_weights" in proc.stdout
    assert (tmp_path / "predictions.json").is_file()


def test_flag_error_exits_2_with_one_line(tmp_path, bert_dir):
    proc = run_script("run_squad.py", [*model_args(bert_dir), f"--output_dir={tmp_path}",
                                       "--do_train=True"])
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: --train_file is required")
    assert "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------------------
# End to end
# ------------------------------------------------------------------------------------------
def _contexts(dataset: dict) -> dict[str, str]:
    return {qa["id"]: p["context"] for a in dataset["data"] for p in a["paragraphs"]
            for qa in p["qas"]}


@pytest.mark.slow
def test_train_predict_evaluate(tmp_path, bert_dir, squad_files):
    train, dev = squad_files
    out = tmp_path / "out"
    proc = run_script("run_squad.py", [
        *model_args(bert_dir), "--do_train=True", f"--train_file={train}", "--do_predict=True",
        f"--predict_file={dev}", "--num_train_epochs=2", "--log_steps=3", *SQUAD_ARGS,
        f"--output_dir={out}", "--use_horovod=false", "--enable_scoped_allocator=False"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "ignoring flags" not in proc.stdout  # Habana's flags of the seed line are real
    assert "examples/sec" in proc.stdout

    dataset = json.loads(dev.read_text())
    contexts = _contexts(dataset)
    predictions = json.loads((out / "predictions.json").read_text())
    assert set(predictions) == set(contexts)
    for qid, text in predictions.items():
        assert text and text in contexts[qid]
    nbest = json.loads((out / "nbest_predictions.json").read_text())
    assert set(nbest) == set(contexts)
    for qid, entries in nbest.items():
        assert 1 <= len(entries) <= 20
        assert entries[0]["text"] == predictions[qid]
        assert sum(e["probability"] for e in entries) == pytest.approx(1.0)

    # The scores printed and written are those of the official evaluation contract.
    scores = json.loads((out / "eval_results.json").read_text())
    cli = subprocess.run([sys.executable, str(TF_DIR / "squad_evaluate.py"), str(dev),
                          str(out / "predictions.json")], capture_output=True, text=True)
    assert json.loads(cli.stdout) == pytest.approx(scores)
    assert json.dumps(scores) in proc.stdout
    assert 0 <= scores["exact_match"] <= scores["f1"] <= 100

    summary = json.loads((out / "train_summary.json").read_text())
    steps = int(summary["train_features"] / 4 * 2)
    assert summary["num_train_steps"] == steps
    assert summary["train_features"] > summary["train_examples"] == 8  # several windows each
    assert [e["step"] for e in summary["loss_log"]][:2] == [3, 6]
    assert summary["examples_per_sec"] > 0 and summary["eval"] == scores
    assert Path(summary["checkpoint"]) == out / f"model.ckpt-{steps}"
    assert (out / f"model.ckpt-{steps}.index").is_file()

    # The saved checkpoint holds the trained model: predicting from it gives the same answers.
    again = tmp_path / "again"
    proc = run_script("run_squad.py", [
        *model_args(bert_dir)[:2], f"--init_checkpoint={out / f'model.ckpt-{steps}'}",
        "--do_predict=True", f"--predict_file={dev}", *SQUAD_ARGS, f"--output_dir={again}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((again / "predictions.json").read_text()) == predictions


@pytest.mark.slow
def test_fractional_epoch_bf16_runs_one_step_without_answers(tmp_path, bert_dir, squad_files):
    train, _ = squad_files
    unanswered = make_squad_dict(num_paragraphs=1, context_words=20, seed=3)
    for article in unanswered["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                qa.pop("answers")
    predict_file = tmp_path / "test.json"
    predict_file.write_text(json.dumps(unanswered))
    out = tmp_path / "out"
    proc = run_script("run_squad.py", [
        *model_args(bert_dir), "--do_train", f"--train_file={train}", "--do_predict",
        f"--predict_file={predict_file}", "--num_train_epochs=0.01", "--precision=bf16",
        *SQUAD_ARGS, f"--output_dir={out}"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["num_train_steps"] == 1 and summary["precision"] == "bf16"
    # The logged rate is the one the step used (the peak: no warmup step, decay after it).
    assert summary["loss_log"][-1]["learning_rate"] == pytest.approx(1e-4)
    assert (out / "model.ckpt-1.index").is_file()
    assert len(json.loads((out / "predictions.json").read_text())) == 2
    assert not (out / "eval_results.json").exists()  # nothing to score against
    assert "not scored" in proc.stdout


def test_thread_counts_come_from_the_launcher_environment(monkeypatch):
    def threads(*argv):
        return tf_flags.check_thread_flags(_parse(*argv))

    monkeypatch.setenv("NUM_INTRA_THREADS", "3")
    monkeypatch.delenv("NUM_INTER_THREADS", raising=False)
    assert threads() == (3, None)
    assert threads("--num_intra_threads=5", "--num_inter_threads=2") == (5, 2)  # flags win
    monkeypatch.setenv("NUM_INTRA_THREADS", "many")
    with pytest.raises(tf_flags.FlagError, match="NUM_INTRA_THREADS='many'"):
        threads()
    with pytest.raises(tf_flags.FlagError, match="--num_intra_threads=-1"):
        threads("--num_intra_threads=-1")
    monkeypatch.delenv("NUM_INTRA_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "4")  # TF's intra-op pool does not follow OpenMP's
    assert threads() == (None, None)


def test_train_steps_are_at_least_one():
    assert loop.num_train_steps(100, 4, 0.01) == 1
    assert loop.num_train_steps(100, 4, 2.0) == 50
    assert loop.num_train_steps(100, 4, 2.0, shards=2) == 25
