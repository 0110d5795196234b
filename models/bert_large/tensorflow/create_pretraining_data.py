"""Plain text -> BERT pretraining TFRecords (masked LM + next sentence prediction).

Input: text files with one sentence per line and a blank line between documents. Output:
TFRecord files of ``tf.train.Example`` with the standard features ``input_ids``,
``input_mask``, ``segment_ids``, ``masked_lm_positions``, ``masked_lm_ids``,
``masked_lm_weights`` (float) and ``next_sentence_labels``, as read by ``run_pretraining.py``.

The instance logic follows google-research BERT: instances are built per document, packing
sentences up to ``max_seq_length`` (shorter with ``short_seq_prob``); segment B is a random
document's text half of the time (label 1) or the actual continuation (label 0); 15% of the
tokens (``masked_lm_prob``, at most ``max_predictions_per_seq``) are predicted, of which 80%
become ``[MASK]``, 10% a random vocabulary word and 10% stay unchanged; whole words are masked
together with ``--do_whole_word_mask``. One seeded ``random.Random`` drives every choice, so
the output is byte-identical for the same inputs, vocabulary and ``--random_seed``.

Tokenization runs through ``tokenization.FullTokenizer`` (the ``tokenizers`` library), many
lines per call, with a cache of already-seen words (:class:`CachedEncoder`), which is what
makes this fast; everything after it works on token ids.

Usage::

    python models/bert_large/tensorflow/create_pretraining_data.py \\
        --input_file='corpus/*.txt' --vocab_file=vocab.txt \\
        --output_dir=tfrecord/seq_len_128/training --num_shards=16 \\
        --max_seq_length=128 --max_predictions_per_seq=20 --masked_lm_prob=0.15 \\
        --dupe_factor=5 --random_seed=12345

``--output_file=a.tfrecord,b.tfrecord`` writes the given files instead (instances are dealt
round-robin over them). As in google's script, all input documents are held in memory (as
token ids) so that "random next" sentences come from any of them; for a corpus larger than
memory, run the script once per group of input files (with a different ``--random_seed``).

Exit status: 2 for a bad flag (an input pattern that matches no file, a vocab that is not a
file, ...: checked before any work), 1 when the work fails (no text in the input, a vocab
without the special tokens, an unwritable output), with one ``error: ...`` line on stderr.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import random
import sys
import time
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

if __package__ in (None, ""):  # run as a file: make the package root importable
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), *[".."] * 3)))

from models.bert_large.tensorflow import tokenization  # noqa: E402

CLS, SEP, MASK = "[CLS]", "[SEP]", "[MASK]"
_ENCODE_BATCH = 4096  # lines per tokenizers.encode_batch call


# ---------------------------------------------------------------------------------------------
# Configuration


@dataclasses.dataclass(frozen=True)
class InstanceConfig:
    max_seq_length: int = 128
    max_predictions_per_seq: int = 20
    masked_lm_prob: float = 0.15
    short_seq_prob: float = 0.1
    dupe_factor: int = 10
    do_whole_word_mask: bool = False

    def validate(self) -> None:
        if self.max_seq_length < 5:
            raise ValueError(f"--max_seq_length={self.max_seq_length} must be >= 5 "
                             "([CLS] A [SEP] B [SEP] with at least one token each)")
        if self.max_predictions_per_seq < 1:
            raise ValueError(f"--max_predictions_per_seq={self.max_predictions_per_seq} "
                             "must be >= 1")
        if self.max_predictions_per_seq > self.max_seq_length:
            raise ValueError(f"--max_predictions_per_seq={self.max_predictions_per_seq} "
                             f"cannot exceed --max_seq_length={self.max_seq_length}")
        if not 0.0 < self.masked_lm_prob < 1.0:
            raise ValueError(f"--masked_lm_prob={self.masked_lm_prob} must be in (0, 1)")
        if not 0.0 <= self.short_seq_prob <= 1.0:
            raise ValueError(f"--short_seq_prob={self.short_seq_prob} must be in [0, 1]")
        if self.dupe_factor < 1:
            raise ValueError(f"--dupe_factor={self.dupe_factor} must be >= 1")


@dataclasses.dataclass
class Instance:
    """One training example before padding (token ids, not strings)."""

    input_ids: list[int]
    segment_ids: list[int]
    masked_lm_positions: list[int]
    masked_lm_ids: list[int]
    is_random_next: bool


@dataclasses.dataclass(frozen=True)
class Vocab:
    """What the instance builder needs to know about the vocabulary, by token id."""

    size: int
    cls_id: int
    sep_id: int
    mask_id: int
    is_continuation: np.ndarray  # bool [size]: wordpiece starts with "##"

    @classmethod
    def from_vocab(cls, vocab: dict[str, int]) -> "Vocab":
        """From ``FullTokenizer.vocab`` ({token: id})."""
        tokens = [""] * (max(vocab.values()) + 1)
        for token, i in vocab.items():
            tokens[i] = token
        return cls.from_tokens(tokens)

    @classmethod
    def from_tokens(cls, tokens: Sequence[str]) -> "Vocab":
        index = {t: i for i, t in enumerate(tokens)}
        missing = [t for t in (CLS, SEP, MASK) if t not in index]
        if missing:
            raise ValueError(f"vocabulary lacks the special token(s) {', '.join(missing)}; "
                             "use a BERT vocab.txt (one wordpiece per line)")
        return cls(size=len(tokens), cls_id=index[CLS], sep_id=index[SEP],
                   mask_id=index[MASK],
                   is_continuation=np.array([t.startswith("##") for t in tokens], dtype=bool))


# ---------------------------------------------------------------------------------------------
# Reading and tokenizing


def expand_input_patterns(spec: str) -> list[str]:
    """Comma-separated paths and globs -> sorted, de-duplicated files; a pattern that matches
    nothing is an error (a typo would otherwise silently shrink the corpus)."""
    files: list[str] = []
    for pattern in [p.strip() for p in spec.split(",") if p.strip()]:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        matches = [m for m in matches if os.path.isfile(m)]
        if not matches and os.path.isdir(pattern):
            raise FileNotFoundError(f"--input_file: {pattern!r} is a directory; pass its files, "
                                    f"e.g. --input_file='{pattern.rstrip('/')}/*.txt'")
        if not matches:
            raise FileNotFoundError(f"--input_file: {pattern!r} matches no file")
        files.extend(matches)
    if not files:
        raise ValueError("--input_file is empty; pass text files (comma-separated, globs ok)")
    seen: set[str] = set()
    return [f for f in files if not (f in seen or seen.add(f))]


def read_documents(files: Sequence[str]) -> Iterator[list[str]]:
    """Yield documents as lists of non-empty lines. A blank line ends a document; so does the
    end of a file."""
    for path in files:
        doc: list[str] = []
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.strip()
                if line:
                    doc.append(line)
                elif doc:
                    yield doc
                    doc = []
        if doc:
            yield doc


class CachedEncoder:
    """Batched WordPiece ids with a cache per space-separated chunk of text.

    BERT's tokenization never crosses an ASCII space (cleaning, lower-casing, accent
    stripping and CJK splitting are per character; splitting is on whitespace and
    punctuation; WordPiece is per word), so a line's ids are the concatenation of its chunks'
    ids. Words repeat a lot in natural text, so most chunks are dictionary hits and only
    unseen ones go to ``encode_batch`` (the ``tokenizers`` library), many per call."""

    def __init__(self, encode_batch: Callable[[list[str]], list[list[int]]],
                 max_entries: int = 2_000_000):
        self._encode_batch = encode_batch
        self._cache: dict[str, list[int]] = {}
        self._max_entries = max_entries

    def __call__(self, lines: list[str]) -> list[list[int]]:
        cache = self._cache
        if len(cache) > self._max_entries:
            cache.clear()
        split = [line.split(" ") for line in lines]
        missing = list({c for chunks in split for c in chunks if c not in cache})
        if missing:
            for chunk, ids in zip(missing, self._encode_batch(missing)):
                cache[chunk] = ids
        out = []
        for chunks in split:
            ids: list[int] = []
            for c in chunks:
                ids += cache[c]
            out.append(ids)
        return out


def tokenize_documents(documents: Iterable[list[str]],
                       encode_batch: Callable[[list[str]], list[list[int]]],
                       on_lines: Callable[[int], None] = lambda n: None) -> list[list[list[int]]]:
    """Documents of text lines -> documents of token-id sentences, ``encode_batch`` (lines ->
    id lists) tokenizing many lines per call. Sentences that tokenize to nothing are dropped,
    then empty documents."""
    out: list[list[list[int]]] = []
    pending_lines: list[str] = []
    pending_docs: list[int] = []  # number of lines per pending document

    def flush():
        if not pending_lines:
            return
        ids = encode_batch(pending_lines)
        pos = 0
        for n in pending_docs:
            doc = ids[pos:pos + n]
            pos += n
            doc = [s for s in doc if s]
            if doc:
                out.append(doc)
        on_lines(len(pending_lines))
        pending_lines.clear()
        pending_docs.clear()

    for doc in documents:
        pending_lines.extend(doc)
        pending_docs.append(len(doc))
        if len(pending_lines) >= _ENCODE_BATCH:
            flush()
    flush()
    return out


# ---------------------------------------------------------------------------------------------
# Instances


def truncate_seq_pair(tokens_a: list[int], tokens_b: list[int], max_num_tokens: int,
                      rng: random.Random) -> None:
    """Trim the longer of the two sequences, one token at a time from a random end, until
    they fit (in place)."""
    while len(tokens_a) + len(tokens_b) > max_num_tokens:
        longer = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


def create_masked_lm_predictions(input_ids: list[int], cfg: InstanceConfig, vocab: Vocab,
                                 rng: random.Random) -> tuple[list[int], list[int]]:
    """Mask ``input_ids`` in place; return (positions, original ids), sorted by position."""
    candidates: list[list[int]] = []
    for i, tid in enumerate(input_ids):
        if tid == vocab.cls_id or tid == vocab.sep_id:
            continue
        if cfg.do_whole_word_mask and candidates and vocab.is_continuation[tid]:
            candidates[-1].append(i)
        else:
            candidates.append([i])
    rng.shuffle(candidates)

    num_to_predict = min(cfg.max_predictions_per_seq,
                         max(1, int(round(len(input_ids) * cfg.masked_lm_prob))))
    original = list(input_ids)
    covered: set[int] = set()
    masked: list[int] = []
    for word in candidates:
        if len(masked) >= num_to_predict:
            break
        # A whole word that would overshoot the budget is skipped, not split.
        if len(masked) + len(word) > num_to_predict:
            continue
        if any(i in covered for i in word):
            continue
        for i in word:
            covered.add(i)
            if rng.random() < 0.8:
                input_ids[i] = vocab.mask_id
            elif rng.random() < 0.5:
                pass  # keep the original token
            else:
                input_ids[i] = rng.randint(0, vocab.size - 1)
            masked.append(i)
    masked.sort()
    return masked, [original[i] for i in masked]


def create_instances_from_document(all_documents: list[list[list[int]]], document_index: int,
                                   cfg: InstanceConfig, vocab: Vocab,
                                   rng: random.Random) -> list[Instance]:
    document = all_documents[document_index]
    max_num_tokens = cfg.max_seq_length - 3  # [CLS] A [SEP] B [SEP]
    # Mostly fill the sequence; sometimes aim shorter so the model also sees short inputs.
    target_len = max_num_tokens
    if rng.random() < cfg.short_seq_prob:
        target_len = rng.randint(2, max_num_tokens)

    instances: list[Instance] = []
    chunk: list[list[int]] = []
    chunk_len = 0
    i = 0
    while i < len(document):
        chunk.append(document[i])
        chunk_len += len(document[i])
        if i == len(document) - 1 or chunk_len >= target_len:
            a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
            tokens_a = [t for sent in chunk[:a_end] for t in sent]
            tokens_b: list[int] = []
            is_random_next = len(chunk) == 1 or rng.random() < 0.5
            if is_random_next:
                target_b_len = target_len - len(tokens_a)
                for _ in range(10):  # another document, if there is one
                    other = rng.randint(0, len(all_documents) - 1)
                    if other != document_index:
                        break
                random_doc = all_documents[other]
                start = rng.randint(0, len(random_doc) - 1)
                for sent in random_doc[start:]:
                    tokens_b.extend(sent)
                    if len(tokens_b) >= target_b_len:
                        break
                # The sentences of this chunk not used for A are not wasted: start there next.
                i -= len(chunk) - a_end
            else:
                for sent in chunk[a_end:]:
                    tokens_b.extend(sent)
            truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)
            if tokens_a and tokens_b:
                input_ids = [vocab.cls_id, *tokens_a, vocab.sep_id, *tokens_b, vocab.sep_id]
                segment_ids = [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
                positions, labels = create_masked_lm_predictions(input_ids, cfg, vocab, rng)
                instances.append(Instance(input_ids, segment_ids, positions, labels,
                                          is_random_next))
            chunk = []
            chunk_len = 0
        i += 1
    return instances


def create_training_instances(documents: list[list[list[int]]], cfg: InstanceConfig,
                              vocab: Vocab, rng: random.Random,
                              on_document: Callable[[int], None] = lambda n: None
                              ) -> list[Instance]:
    """All instances: ``dupe_factor`` passes over the (shuffled) documents with different
    masks, shuffled together. Shuffles ``documents`` in place."""
    rng.shuffle(documents)
    instances: list[Instance] = []
    for _ in range(cfg.dupe_factor):
        for index in range(len(documents)):
            instances.extend(create_instances_from_document(documents, index, cfg, vocab, rng))
            on_document(1)
    rng.shuffle(instances)
    return instances


# ---------------------------------------------------------------------------------------------
# Writing


def padded_features(inst: Instance, cfg: InstanceConfig) -> dict[str, list]:
    """The feature lists of one instance, zero-padded to the configured lengths."""
    seq, pred = cfg.max_seq_length, cfg.max_predictions_per_seq
    n, p = len(inst.input_ids), len(inst.masked_lm_positions)
    if n > seq or p > pred:
        raise AssertionError(f"instance of {n} tokens / {p} predictions exceeds the limits")
    return {
        "input_ids": inst.input_ids + [0] * (seq - n),
        "input_mask": [1] * n + [0] * (seq - n),
        "segment_ids": inst.segment_ids + [0] * (seq - n),
        "masked_lm_positions": inst.masked_lm_positions + [0] * (pred - p),
        "masked_lm_ids": inst.masked_lm_ids + [0] * (pred - p),
        "masked_lm_weights": [1.0] * p + [0.0] * (pred - p),
        "next_sentence_labels": [1 if inst.is_random_next else 0],
    }


def serialize_instance(inst: Instance, cfg: InstanceConfig) -> bytes:
    import tensorflow as tf

    def ints(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    feats = padded_features(inst, cfg)
    feature = {k: ints(v) for k, v in feats.items() if k != "masked_lm_weights"}
    feature["masked_lm_weights"] = tf.train.Feature(
        float_list=tf.train.FloatList(value=feats["masked_lm_weights"]))
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    return example.SerializeToString(deterministic=True)  # sorted keys: same bytes every run


def write_instances(instances: Sequence[Instance], output_files: Sequence[str],
                    cfg: InstanceConfig, on_written: Callable[[int], None] = lambda n: None
                    ) -> list[int]:
    """Deal instances round-robin over ``output_files``. Each file is written under a
    temporary name and renamed when complete, so a crash never leaves a truncated shard with
    the final name. Returns the count per file."""
    import tensorflow as tf

    for path in output_files:
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
    tmp_files = [f"{path}.tmp{os.getpid()}" for path in output_files]
    writers = [tf.io.TFRecordWriter(p) for p in tmp_files]
    counts = [0] * len(output_files)
    try:
        for k, inst in enumerate(instances):
            w = k % len(writers)
            writers[w].write(serialize_instance(inst, cfg))
            counts[w] += 1
            if k % 1000 == 999:
                on_written(1000)
        on_written(len(instances) % 1000)
    finally:
        for w in writers:
            w.close()
    for tmp, final in zip(tmp_files, output_files):
        os.replace(tmp, final)
    return counts


def shard_names(output_dir: str, num_shards: int, prefix: str = "part") -> list[str]:
    width = max(5, len(str(num_shards)))
    return [os.path.join(output_dir, f"{prefix}-{i:0{width}d}-of-{num_shards:0{width}d}")
            for i in range(num_shards)]


# ---------------------------------------------------------------------------------------------
# Progress


class _Progress:
    """rich progress bars on a terminal-ish stderr when rich is importable; otherwise (or when
    ``plain``) one line per stage on stderr."""

    def __init__(self, plain: bool = False):
        self._rich = None
        if not plain:
            try:
                from rich.console import Console
                from rich.progress import (BarColumn, MofNCompleteColumn, Progress,
                                           TextColumn, TimeElapsedColumn)
                self._rich = Progress(TextColumn("{task.description:<22}"), BarColumn(),
                                      MofNCompleteColumn(), TimeElapsedColumn(),
                                      console=Console(stderr=True), transient=False)
            except ImportError:
                self._rich = None

    def __enter__(self):
        if self._rich is not None:
            self._rich.__enter__()
        return self

    def __exit__(self, *exc):
        if self._rich is not None:
            self._rich.__exit__(*exc)

    def stage(self, description: str, total: int | None):
        """Returns an ``advance(n)`` callable and a ``done()`` callable."""
        if self._rich is not None:
            task = self._rich.add_task(description, total=total)
            return (lambda n: self._rich.advance(task, n),
                    lambda: self._rich.update(task, completed=total or 0,
                                              total=total or 0))
        start = time.perf_counter()
        count = [0]

        def advance(n):
            count[0] += n

        def done():
            print(f"{description}: {count[0]} in {time.perf_counter() - start:.1f}s",
                  file=sys.stderr, flush=True)
        return advance, done


# ---------------------------------------------------------------------------------------------
# Entry points


def create_pretraining_data(input_files: Sequence[str], vocab_file: str,
                            output_files: Sequence[str], cfg: InstanceConfig,
                            do_lower_case: bool = True, random_seed: int = 12345,
                            plain_progress: bool = False,
                            encode_batch: Callable[[list[str]], list[list[int]]] | None = None
                            ) -> dict:
    """The whole pipeline; returns a summary dict (also what the CLI prints).
    ``encode_batch`` (lines -> id lists) replaces the default (:class:`CachedEncoder` over
    the tokenizer's batched encoding); the benchmark times reference tokenizers with it."""
    cfg.validate()
    if not output_files:
        raise ValueError("no output file: pass --output_file or --output_dir/--num_shards")
    import tensorflow as tf  # noqa: F401  (imported before timing starts: ~2 s)

    t0 = time.perf_counter()
    tokenizer = tokenization.FullTokenizer(vocab_file, do_lower_case=do_lower_case)
    vocab = Vocab.from_vocab(tokenizer.vocab)
    total_lines = 0
    for path in input_files:
        with open(path, "rb") as f:
            total_lines += sum(1 for line in f if line.strip())

    with _Progress(plain_progress) as progress:
        advance, done = progress.stage("tokenizing sentences", total_lines)
        encode = encode_batch or CachedEncoder(tokenizer.encode_batch_ids)
        documents = tokenize_documents(read_documents(input_files), encode, advance)
        done()
        if not documents:
            raise ValueError(f"no text in {', '.join(input_files)}: expected one sentence per "
                             "line and a blank line between documents")
        t_tok = time.perf_counter()
        rng = random.Random(random_seed)
        advance, done = progress.stage("building instances", len(documents) * cfg.dupe_factor)
        instances = create_training_instances(documents, cfg, vocab, rng, advance)
        done()
        t_inst = time.perf_counter()
        advance, done = progress.stage("writing records", len(instances))
        counts = write_instances(instances, output_files, cfg, advance)
        done()
    t_end = time.perf_counter()
    n_tokens = sum(len(i.input_ids) for i in instances)
    n_masked = sum(len(i.masked_lm_positions) for i in instances)
    return {
        "input_files": len(input_files), "sentences": total_lines, "documents": len(documents),
        "instances": len(instances), "output_files": list(output_files),
        "instances_per_file": counts,
        "random_next_fraction": (sum(i.is_random_next for i in instances) / len(instances)
                                 if instances else 0.0),
        "masked_fraction": n_masked / n_tokens if n_tokens else 0.0,
        "seconds": {"tokenize": t_tok - t0, "instances": t_inst - t_tok,
                    "write": t_end - t_inst, "total": t_end - t0},
    }


def _define_flags():
    from absl import flags

    f = flags
    f.DEFINE_string("input_file", None, "Input text file(s): comma-separated paths or globs.")
    f.DEFINE_string("output_file", None,
                    "Output TFRecord file(s), comma-separated (instances dealt round-robin).")
    f.DEFINE_string("output_dir", None, "Write --num_shards files named "
                    "<output_prefix>-NNNNN-of-NNNNN here (instead of --output_file).")
    f.DEFINE_integer("num_shards", 1, "Number of output files with --output_dir.")
    f.DEFINE_string("output_prefix", "part", "File name prefix with --output_dir.")
    f.DEFINE_string("vocab_file", None, "The BERT vocab.txt (one wordpiece per line).")
    f.DEFINE_bool("do_lower_case", True, "Lower-case and strip accents (uncased models).")
    f.DEFINE_bool("do_whole_word_mask", False, "Mask all wordpieces of a word together.")
    f.DEFINE_integer("max_seq_length", 128, "Maximum sequence length (tokens).")
    f.DEFINE_integer("max_predictions_per_seq", 20, "Maximum masked LM predictions per "
                     "sequence.")
    f.DEFINE_integer("random_seed", 12345, "Seed for every random choice (output is "
                     "deterministic for a seed).")
    f.DEFINE_integer("dupe_factor", 10, "Passes over the input, each with different masks.")
    f.DEFINE_float("masked_lm_prob", 0.15, "Fraction of tokens to predict.")
    f.DEFINE_float("short_seq_prob", 0.1, "Probability of a shorter-than-maximum sequence.")
    f.DEFINE_bool("plain_progress", False, "Plain progress lines on stderr instead of rich "
                  "bars.")
    return flags.FLAGS


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from absl import flags as absl_flags

    FLAGS = _define_flags()
    args = list(argv) if argv is not None else list(sys.argv)
    if any(a in ("-h", "--help", "-help", "--helpfull") for a in args[1:]):
        # absl defines --help only through absl.app; print this script's flags ourselves.
        print(f"usage: {os.path.basename(args[0] or 'create_pretraining_data.py')} "
              "--input_file=FILES --vocab_file=vocab.txt (--output_file=FILES | "
              "--output_dir=DIR [--num_shards=N]) [--flag=value ...]\n")
        print((__doc__ or "").split("\n\n")[0] + "\n")
        print(FLAGS.module_help(sys.modules[__name__]) if __name__ in sys.modules
              else FLAGS.get_help())
        return 0
    try:
        FLAGS(args)
    except absl_flags.Error as e:
        print(f"create_pretraining_data: {e}", file=sys.stderr)
        return 2
    try:
        for name in ("input_file", "vocab_file"):
            if not getattr(FLAGS, name):
                raise ValueError(f"--{name} is required")
        if not os.path.isfile(FLAGS.vocab_file):
            raise ValueError(f"--vocab_file={FLAGS.vocab_file}: not a file; pass the vocab.txt "
                             "of the BERT model the data is for")
        from models.bert_large.tensorflow import flags as tf_flags  # noqa: PLC0415

        try:
            tf_flags.check_vocab_tokens(FLAGS.vocab_file, tf_flags.PRETRAINING_SPECIAL_TOKENS)
        except tf_flags.FlagError as err:
            raise ValueError(str(err)) from None
        if bool(FLAGS.output_file) == bool(FLAGS.output_dir):
            raise ValueError("pass exactly one of --output_file (comma-separated files) or "
                             "--output_dir with --num_shards")
        if FLAGS.output_dir:
            if FLAGS.num_shards < 1:
                raise ValueError(f"--num_shards={FLAGS.num_shards} must be >= 1")
            outputs = shard_names(FLAGS.output_dir, FLAGS.num_shards, FLAGS.output_prefix)
        else:
            outputs = [p.strip() for p in FLAGS.output_file.split(",") if p.strip()]
        cfg = InstanceConfig(max_seq_length=FLAGS.max_seq_length,
                             max_predictions_per_seq=FLAGS.max_predictions_per_seq,
                             masked_lm_prob=FLAGS.masked_lm_prob,
                             short_seq_prob=FLAGS.short_seq_prob,
                             dupe_factor=FLAGS.dupe_factor,
                             do_whole_word_mask=FLAGS.do_whole_word_mask)
        inputs = expand_input_patterns(FLAGS.input_file)
    except (ValueError, OSError) as e:  # a flag, checked before any work: usage error
        print(f"create_pretraining_data: error: {e}", file=sys.stderr)
        return 2
    try:
        summary = create_pretraining_data(inputs, FLAGS.vocab_file, outputs, cfg,
                                          do_lower_case=FLAGS.do_lower_case,
                                          random_seed=FLAGS.random_seed,
                                          plain_progress=FLAGS.plain_progress)
    except (ValueError, OSError) as e:  # the work failed (unreadable input, no text, ...)
        print(f"create_pretraining_data: error: {e}", file=sys.stderr)
        return 1
    secs = summary["seconds"]
    print(f"Wrote {summary['instances']} instances from {summary['sentences']} sentences "
          f"({summary['documents']} documents, {summary['input_files']} input files) to "
          f"{len(outputs)} file(s) in {secs['total']:.1f}s "
          f"({summary['sentences'] / max(secs['total'], 1e-9):.0f} sentences/s); "
          f"masked {summary['masked_fraction']:.3f} of tokens, random next "
          f"{summary['random_next_fraction']:.3f}.")
    for path, n in zip(summary["output_files"], summary["instances_per_file"]):
        print(f"  {path}: {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
