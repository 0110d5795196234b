"""SQuAD reading, window features and answer post-processing on crafted inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.bert_large.tensorflow import squad_data, tokenization
from tests.tf.conftest import make_vocab_file

# Every one of these is a single word piece in the tiny vocab.
WORDS = ("the quick brown fox jumps over lazy dog paris france capital city river bank "
         "model train school cafe world hello one two three four five six seven eight nine "
         "ten").split()


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    vocab = make_vocab_file(tmp_path_factory.mktemp("vocab") / "vocab.txt")
    return tokenization.FullTokenizer(vocab, do_lower_case=True)


def _example(words, question="what fox", start=None, end=None, answer=None, qid="q"):
    return squad_data.SquadExample(qas_id=qid, question_text=question, doc_tokens=list(words),
                                   orig_answer_text=answer, start_position=start,
                                   end_position=end)


def _context(n):
    return [WORDS[i % len(WORDS)] for i in range(n)]


def _squad(context, qas):
    return {"version": "1.1", "data": [{"title": "t", "paragraphs": [
        {"context": context, "qas": qas}]}]}


# ------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------
def test_whitespace_split_maps_every_character_to_its_word():
    words, char_to_word = squad_data.whitespace_split("ab  c\td")
    assert words == ["ab", "c", "d"]
    assert char_to_word == [0, 0, 0, 0, 1, 1, 2]


def test_reader_turns_character_offsets_into_word_positions():
    context = "The quick brown fox jumps over the lazy dog."
    data = _squad(context, [
        {"id": "a", "question": "who jumps?", "answers": [
            {"text": "brown fox", "answer_start": context.index("brown")},
            {"text": "fox", "answer_start": context.index("fox")}]},
        {"id": "b", "question": "over what?", "answers": [
            {"text": "dog", "answer_start": context.index("dog")}]},
    ])
    examples = squad_data.read_squad_examples(data, is_training=True)
    a, b = examples
    assert (a.start_position, a.end_position, a.orig_answer_text) == (2, 3, "brown fox")
    assert a.answers == ["brown fox", "fox"]  # all references kept for scoring
    # "dog." is one whitespace word: the answer "dog" lies inside it.
    assert (b.start_position, b.end_position) == (8, 8)
    assert a.doc_tokens is b.doc_tokens  # one paragraph, one token list


def test_reader_skips_answers_that_do_not_match_their_offset():
    context = "the quick brown fox"
    data = _squad(context, [
        {"id": "ok", "question": "q", "answers": [{"text": "fox", "answer_start": 16}]},
        {"id": "bad", "question": "q", "answers": [{"text": "dog", "answer_start": 16}]},
    ])
    examples = squad_data.read_squad_examples(data, is_training=True)
    assert [e.qas_id for e in examples] == ["ok"]
    # Prediction keeps every question, answers or not.
    assert len(squad_data.read_squad_examples(data, is_training=False)) == 2


def test_reader_rejects_a_non_squad_file(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"rows": []}))
    with pytest.raises(ValueError, match="not a SQuAD file"):
        squad_data.read_squad_examples(str(path), is_training=False)


@pytest.mark.parametrize("content, where", [
    ({"data": [{"paragraphs": [{"qas": []}]}]}, "data[0].paragraphs[0] has no 'context'"),
    ({"data": [{"paragraphs": [{"context": "a", "qas": [{"id": "1"}]}]}]},
     "data[0].paragraphs[0].qas[0] has no 'question'"),
    ({"data": [{"paragraphs": [{"context": "a", "qas": [
        {"id": "1", "question": "q", "answers": [{"answer_start": 0}]}]}]}]},
     "data[0].paragraphs[0].qas[0].answers[0] has no 'text'"),
])
def test_reader_names_the_file_and_where_its_layout_breaks(tmp_path, content, where):
    path = tmp_path / "odd.json"
    path.write_text(json.dumps(content))
    with pytest.raises(squad_data.SquadFormatError) as info:
        squad_data.read_squad_examples(str(path), is_training=False)
    assert str(info.value).startswith(f"{path} is not a SQuAD file: {where}")


def test_prediction_files_need_no_answer_start():
    data = {"data": [{"paragraphs": [{"context": "a b", "qas": [
        {"id": "1", "question": "q", "answers": [{"text": "b"}]}]}]}]}
    assert squad_data.read_squad_examples(data, is_training=False)[0].answers == ["b"]
    with pytest.raises(squad_data.SquadFormatError, match="'answer_start'"):
        squad_data.read_squad_examples(data, is_training=True)


# ------------------------------------------------------------------------------------------
# Windows
# ------------------------------------------------------------------------------------------
def _convert(tokenizer, examples, max_seq_length=15, doc_stride=4, max_query_length=8,
             is_training=False):
    return squad_data.convert_examples_to_features(
        examples, tokenizer, max_seq_length=max_seq_length, doc_stride=doc_stride,
        max_query_length=max_query_length, is_training=is_training)


def test_long_context_is_split_into_strided_windows(tokenizer):
    words = _context(30)
    # query "what fox" = 2 pieces -> 15 - 2 - 3 = 10 context pieces per window.
    features = _convert(tokenizer, [_example(words)])
    starts = [f.token_to_orig_map[4] for f in features]
    assert starts == [0, 4, 8, 12, 16, 20]  # the last window ends exactly at word 29
    for f, start in zip(features, starts):
        assert f.tokens == ["[CLS]", "what", "fox", "[SEP]", *words[start:start + 10], "[SEP]"]
        assert f.segment_ids == [0] * 4 + [1] * 11
        assert f.input_mask == [1] * 15
        assert f.input_ids == tokenizer.convert_tokens_to_ids(f.tokens)
        assert f.example_index == 0
    assert [f.doc_span_index for f in features] == list(range(6))
    assert len({f.unique_id for f in features}) == 6


def test_short_context_is_one_padded_window(tokenizer):
    features = _convert(tokenizer, [_example(_context(5))], max_seq_length=20)
    (f,) = features
    assert len(f.tokens) == 2 + 2 + 5 + 1
    assert f.input_mask == [1] * 10 + [0] * 10
    assert f.input_ids[10:] == [0] * 10 and f.segment_ids[10:] == [0] * 10
    assert all(f.token_is_max_context.values())


def test_each_token_is_scored_in_exactly_its_max_context_window(tokenizer):
    features = _convert(tokenizer, [_example(_context(30))])
    owners = {}
    for f in features:
        for pos, is_max in f.token_is_max_context.items():
            if is_max:
                word = f.token_to_orig_map[pos]
                assert word not in owners, f"word {word} scored in two windows"
                owners[word] = f.doc_span_index
    assert sorted(owners) == list(range(30))
    # Windows cover words [0,9] [4,13] [8,17] [12,21] [16,25] [20,29].
    # Word 10: window 1 has min(6 left, 3 right) = 3 > window 2's min(2, 7) = 2.
    assert owners[10] == 1
    # Word 12: window 1 -> min(8, 1) = 1, window 2 -> min(4, 5) = 4, window 3 -> min(0, 9).
    assert owners[12] == 2
    assert owners[0] == 0 and owners[29] == 5
    # Word 14: window 2 -> min(6, 3) = 3 beats window 3 -> min(2, 7) = 2.
    assert owners[14] == 2


def test_answer_positions_inside_and_outside_windows(tokenizer):
    words = _context(30)
    ex = _example(words, start=11, end=12, answer=f"{words[11]} {words[12]}")
    features = _convert(tokenizer, [ex], is_training=True)
    # Windows holding both words 11 and 12 start at 4 and 8; the others point at [CLS].
    positions = [(f.start_position, f.end_position) for f in features]
    assert positions[0] == (0, 0)
    assert positions[1] == (11 - 4 + 4, 12 - 4 + 4)
    assert positions[2] == (11 - 8 + 4, 12 - 8 + 4)
    assert positions[3:] == [(0, 0)] * 3  # window 3 starts at word 12: answer cut in half
    for f in features[1:3]:
        assert f.tokens[f.start_position:f.end_position + 1] == [words[11], words[12]]
    arrays = squad_data.features_to_arrays(features, is_training=True)
    assert arrays["start_positions"].tolist() == [p[0] for p in positions]
    assert arrays["input_ids"].shape == (6, 15) and arrays["input_ids"].dtype == np.int32


def test_question_is_truncated_to_max_query_length(tokenizer):
    question = " ".join(_context(20))
    features = _convert(tokenizer, [_example(_context(8), question=question)],
                        max_seq_length=32, max_query_length=5)
    (f,) = features
    assert f.tokens[:7] == ["[CLS]", *_context(5), "[SEP]"]
    assert f.tokens[7:] == [*_context(8), "[SEP]"]


def test_answer_span_is_narrowed_to_the_answer_pieces(tokenizer):
    # "fox-dog." is one whitespace word but four pieces: fox - dog .
    words = ["the", "quick", "fox-dog.", "jumps"]
    ex = _example(words, start=2, end=2, answer="dog")
    (f,) = _convert(tokenizer, [ex], max_seq_length=20, is_training=True)
    assert f.tokens[f.start_position:f.end_position + 1] == ["dog"]


def test_multi_piece_words_map_back_to_their_word(tokenizer):
    words = ["the", "running", "schools", "fox"]
    ex = _example(words, start=1, end=2, answer="running schools")
    (f,) = _convert(tokenizer, [ex], max_seq_length=24, is_training=True)
    doc = f.tokens[4:-1]
    assert doc == ["the", "runn", "##ing", "school", "##s", "fox"]
    assert [f.token_to_orig_map[4 + i] for i in range(6)] == [0, 1, 1, 2, 2, 3]
    assert f.tokens[f.start_position:f.end_position + 1] == ["runn", "##ing", "school", "##s"]


def test_impossible_lengths_are_rejected(tokenizer):
    with pytest.raises(ValueError, match="max_query_length"):
        _convert(tokenizer, [_example(_context(4))], max_seq_length=10, max_query_length=7)


# ------------------------------------------------------------------------------------------
# Post-processing
# ------------------------------------------------------------------------------------------
def _logits(length, hot: dict[int, float]):
    values = np.full(length, -10.0, np.float32)
    for i, v in hot.items():
        values[i] = v
    return values


def test_best_span_maps_back_to_original_text(tokenizer, tmp_path):
    words = ["The", "Quick", "Fox.", "jumps", "over", "the", "lazy", "dog"]
    ex = _example(words, question="what fox")
    (f,) = _convert(tokenizer, [ex], max_seq_length=20)
    # tokens: [CLS] what fox [SEP] the quick fox . jumps ...; pick "quick fox" (pos 5-6).
    result = squad_data.RawResult(f.unique_id, _logits(20, {5: 5.0, 4: 1.0}),
                                  _logits(20, {6: 5.0, 7: 4.0}))
    preds, nbest = squad_data.write_predictions(
        [ex], [f], [result], n_best_size=3, max_answer_length=30, do_lower_case=True,
        output_prediction_file=str(tmp_path / "p.json"),
        output_nbest_file=str(tmp_path / "n.json"))
    # Original case kept, the trailing "." of "Fox." (outside the span) dropped.
    assert preds == {"q": "Quick Fox"}
    texts = [e["text"] for e in nbest["q"]]
    assert texts[0] == "Quick Fox" and "Quick Fox." in texts and len(texts) == 3
    probs = [e["probability"] for e in nbest["q"]]
    assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1.0)
    assert json.loads((tmp_path / "p.json").read_text()) == preds
    assert json.loads((tmp_path / "n.json").read_text())["q"][0]["text"] == "Quick Fox"


def test_invalid_spans_are_never_predicted(tokenizer):
    words = _context(8)
    ex = _example(words, question="what fox")
    (f,) = _convert(tokenizer, [ex], max_seq_length=20)
    # tokens: [CLS] what fox [SEP] w0..w7 (positions 4-11) [SEP] + padding to 20.
    # The highest scores are on the question (start 1, end 2), padding (end 19), a reversed
    # span (9 -> 6) and spans longer than max_answer_length=2 (9 -> 11, 4 -> 6); the best
    # valid span is 6..6.
    start = _logits(20, {1: 9.0, 9: 8.0, 4: 7.0, 6: 1.0})
    end = _logits(20, {2: 9.0, 6: 6.0, 11: 8.5, 19: 9.5})
    preds, _ = squad_data.write_predictions(
        [ex], [f], [squad_data.RawResult(f.unique_id, start, end)], n_best_size=20,
        max_answer_length=2, do_lower_case=True)
    assert preds["q"] == words[2]  # position 6 = context word 2


def test_a_token_is_predicted_only_from_its_max_context_window(tokenizer):
    words = _context(30)
    ex = _example(words)
    features = _convert(tokenizer, [ex])
    # Word 12 belongs to window 2, word 8 to window 1. Window 1 gives word 12 a huge score,
    # window 2 a modest one; word 8 gets a middling score in window 1.
    results = []
    for f in features:
        start = np.full(15, -10.0, np.float32)
        end = np.full(15, -10.0, np.float32)
        pos = {w: p for p, w in f.token_to_orig_map.items()}
        if f.doc_span_index == 1:
            start[pos[12]] = end[pos[12]] = 50.0
            start[pos[8]] = end[pos[8]] = 3.0
        if f.doc_span_index == 2:
            start[pos[12]] = end[pos[12]] = 2.0
        results.append(squad_data.RawResult(f.unique_id, start, end))
    preds, nbest = squad_data.write_predictions([ex], features, results, n_best_size=5,
                                                max_answer_length=3, do_lower_case=True)
    assert preds["q"] == words[8]
    assert [e["text"] for e in nbest["q"]][:2] == [words[8], words[12]]


def test_missing_model_output_is_an_error(tokenizer):
    ex = _example(_context(4))
    features = _convert(tokenizer, [ex], max_seq_length=20)
    with pytest.raises(ValueError, match="no model output"):
        squad_data.write_predictions([ex], features, [], 5, 10, True)


@pytest.mark.parametrize("pred, orig, expected", [
    ("fox", "Fox.", "Fox"),
    ("quick fox", "(Quick  Fox)", "Quick  Fox"),
    ("steve smith", "Steve Smith's", "Steve Smith"),
    ("dog", "cat", "cat"),  # cannot align: fall back to the original words
])
def test_get_final_text(pred, orig, expected):
    assert squad_data.get_final_text(pred, orig, do_lower_case=True) == expected


def test_squad_v2_unanswerable_questions(tokenizer):
    context = "the quick brown fox"
    data = _squad(context, [
        {"id": "yes", "question": "what fox", "answers": [{"text": "fox", "answer_start": 16}]},
        {"id": "no", "question": "what dog", "answers": [], "is_impossible": True},
    ])
    examples = squad_data.read_squad_examples(data, is_training=True,
                                              version_2_with_negative=True)
    assert [e.is_impossible for e in examples] == [False, True]
    features = _convert(tokenizer, examples, max_seq_length=20, is_training=True)
    assert (features[1].start_position, features[1].end_position) == (0, 0)
    assert features[1].is_impossible and not features[0].is_impossible

    # Null span ([CLS]) scored above the best answer by more than the threshold -> "".
    results = []
    for f in features:
        start = _logits(20, {0: 6.0, 7: 4.0})  # position 7 = "fox"
        end = _logits(20, {0: 6.0, 7: 4.0})
        results.append(squad_data.RawResult(f.unique_id, start, end))
    preds, nbest = squad_data.write_predictions(
        examples, features, results, n_best_size=5, max_answer_length=5, do_lower_case=True,
        version_2_with_negative=True, null_score_diff_threshold=1.0)
    assert preds == {"yes": "", "no": ""}
    assert "fox" in [e["text"] for e in nbest["yes"]]
    preds, _ = squad_data.write_predictions(
        examples, features, results, n_best_size=5, max_answer_length=5, do_lower_case=True,
        version_2_with_negative=True, null_score_diff_threshold=5.0)
    assert preds["yes"] == "fox"
