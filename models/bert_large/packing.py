"""Sequence packing for BERT pretraining data (Krell et al., arXiv 2107.02027): several short
sequences in one ``max_sequence_length`` row instead of one sequence and padding.

Algorithms (on the histogram of sequence lengths, never on the sequences themselves):

* **SPFHP** (shortest-pack-first histogram packing, the default): lengths from the longest down;
  each group of equal-length sequences goes into the open packs with the least room that still
  fits them (best fit), a new pack otherwise. Packs are tracked per (contents, room) with a
  count, so the work depends on ``max_sequence_length``, not on the number of sequences.
* **NNLSHP** (non-negative least squares histogram packing): every multiset of at most
  ``min(max_sequences_per_pack, 3)`` present lengths that fills a row exactly is a strategy;
  ``scipy.optimize.nnls`` finds how often to use each so that the strategies reproduce the
  histogram; the solution is rounded, cut back where it uses more sequences of a length than
  there are, and whatever is left is packed by SPFHP (with the full ``max_sequences_per_pack``).

Both give a :class:`PackingPlan`: strategies (tuples of lengths, longest first) and how many
packs use each. Every sequence is in exactly one pack (:func:`check_plan`).

The packer (:func:`pack_dataset`, behind ``pack_pretraining_data_tfrec.py``) works in three
passes, so memory is bounded by one shard, not the dataset:

1. **histogram**: read each input shard, check its records (unpacked ``create_pretraining_data``
   records of the flags' shape) and count lengths; plan the packs from the histogram.
2. **scatter**: read each input shard again; the k-th sequence of length L (in file, then record
   order; copy c of ``--duplication-factor`` counts as k + c * count(L)) goes to slot
   ``perm_L(k)`` of the slots the plan has for length L, which names its pack and place in it;
   packs are put in output order by a second permutation. Both permutations are keyed
   bijections (a Feistel network with cycle walking, seeded by ``--seed``), computed, not
   stored. Each sequence is appended, compactly, to a temporary bucket of its output file.
3. **gather**: per output file, load its bucket, lay the sequences into rows (vectorised) and
   write the TFRecord file under a temporary name.

Only when every file is complete are they renamed into place and the metadata file
``<output dir name>_metadata.json`` written one level above the output directory; a failure or
Ctrl-C removes the temporary files. Input files are the sorted directory listing (or glob), the
first ``--max-files`` of them; the output has as many files, named like them. The same inputs,
flags and seed give byte-identical output (NNLSHP: with the same scipy on the same machine).

Packed record format (also docs/packing.md): per row ``input_ids``, ``input_mask`` (1-based
index of the token's sequence in the row, 0 for padding), ``segment_ids``, ``positions`` (0 at
each sequence's start), ``masked_lm_positions`` / ``masked_lm_ids`` / ``masked_lm_weights``
(``max_predictions_per_pack`` slots, Habana's convention: ``max_predictions_per_sequence +
max_sequences_per_pack`` by default; positions index the row; a weight is the prediction's
1-based sequence index, 0.0 for unused slots), ``next_sentence_positions`` (each sequence's
[CLS] position) / ``next_sentence_labels`` / ``next_sentence_weights`` (1.0 per sequence), with
``max_sequences_per_pack`` slots. Weights are floats, everything else int64.
"""

from __future__ import annotations

import bisect
import dataclasses
import glob
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from models.bert_large import tfrecord

__all__ = [
    "ALGORITHMS", "PackingError", "PackingMetadataError", "PackingPlan", "PackingMetadata",
    "spfhp", "nnlshp", "pack_histogram", "check_plan", "plan_summary", "KeyedPermutation",
    "list_input_files", "pack_dataset", "unpack_row", "metadata_path", "read_packing_metadata",
    "PACKED_FEATURES", "METADATA_KEYS",
]

ALGORITHMS = ("spfhp", "nnlshp")
NNLS_MAX_DEPTH = 3  # NNLSHP's exact-fill strategies hold at most this many sequences
UNPACKED_FEATURES = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions",
                     "masked_lm_ids", "masked_lm_weights", "next_sentence_labels")
PACKED_FEATURES = ("input_ids", "input_mask", "segment_ids", "positions", "masked_lm_positions",
                   "masked_lm_ids", "masked_lm_weights", "next_sentence_positions",
                   "next_sentence_labels", "next_sentence_weights")
# The metadata Habana's packer writes (int or float figures) plus top_8_strategies.
METADATA_INTS = ("sequences_dropped", "num_strategies_utilized", "new_number_of_samples",
                 "original_number_of_samples", "padding_tokens_original_dataset",
                 "padding_tokens_packed_dataset")
METADATA_FLOATS = ("compression_ratio", "expected_speedup", "theoretical_speedup",
                   "avg_seq_per_sample", "packing_efficiency")
METADATA_KEYS = METADATA_INTS + METADATA_FLOATS + ("top_8_strategies", "algorithm", "seed")
# What a data directory holds besides TFRecords (as run_pretraining's input listing skips).
_NOT_RECORDS = (".json", ".txt", ".md", ".log")


class PackingError(ValueError):
    """Input data or flags the packer cannot use; ``usage`` when found before any work."""

    def __init__(self, message: str, usage: bool = False):
        super().__init__(message)
        self.usage = usage


class PackingMetadataError(ValueError):
    """A packing metadata file that is not valid JSON or has a missing or wrong key."""


# ---------------------------------------------------------------------------------------------
# Plans and the two algorithms


@dataclasses.dataclass(frozen=True)
class PackingPlan:
    """``strategies[i]`` (lengths, longest first) is used by ``counts[i]`` packs; strategies in
    descending order, each once, counts > 0."""

    max_sequence_length: int
    max_sequences_per_pack: int
    strategies: tuple[tuple[int, ...], ...]
    counts: tuple[int, ...]
    algorithm: str

    @property
    def num_packs(self) -> int:
        return sum(self.counts)

    def placed_histogram(self) -> np.ndarray:
        placed = np.zeros(self.max_sequence_length + 1, dtype=np.int64)
        for strategy, count in zip(self.strategies, self.counts):
            for length in strategy:
                placed[length] += count
        return placed


def _histogram(histogram: Sequence[int] | np.ndarray, max_len: int) -> np.ndarray:
    """``h[L]`` = number of sequences of length L, L = 0..max_len (h[0] must be 0)."""
    h = np.asarray(histogram, dtype=np.int64)
    if h.ndim != 1 or h.size != max_len + 1:
        raise ValueError(f"histogram must have max_sequence_length + 1 = {max_len + 1} entries "
                         f"(index = length), got shape {h.shape}")
    if (h < 0).any() or h[0] != 0:
        raise ValueError("histogram counts must be >= 0 and there are no sequences of length 0")
    return h


def _make_plan(packs: dict[tuple[int, ...], int], max_len: int, depth: int,
               algorithm: str) -> PackingPlan:
    items = sorted(((s, c) for s, c in packs.items() if c > 0), reverse=True)
    return PackingPlan(max_len, depth, tuple(s for s, _ in items), tuple(c for _, c in items),
                       algorithm)


def _spfhp_packs(h: np.ndarray, max_len: int, depth: int) -> dict[tuple[int, ...], int]:
    closed: dict[tuple[int, ...], int] = {}
    open_by_room: dict[int, list[list]] = {}  # room -> [[count, strategy], ...]
    rooms: list[int] = []                     # sorted rooms with open packs

    def add(strategy: tuple[int, ...], count: int, room: int) -> None:
        if room == 0 or len(strategy) >= depth:
            closed[strategy] = closed.get(strategy, 0) + count
            return
        bucket = open_by_room.get(room)
        if bucket is None:
            open_by_room[room] = [[count, strategy]]
            bisect.insort(rooms, room)
        elif bucket[-1][1] == strategy:
            bucket[-1][0] += count
        else:
            bucket.append([count, strategy])

    for length in range(max_len, 0, -1):
        n = int(h[length])
        while n:
            i = bisect.bisect_left(rooms, length)
            if i == len(rooms):  # no open pack has room: new packs, each as full as it gets
                per = min(depth, max_len // length)  # (one by one, each joins the newest pack)
                if n // per:
                    add((length,) * per, n // per, max_len - per * length)
                if n % per:
                    add((length,) * (n % per), 1, max_len - (n % per) * length)
                break
            room = rooms[i]
            bucket = open_by_room[room]
            count, strategy = bucket[-1]
            take = min(n, count)
            if take == count:
                bucket.pop()
                if not bucket:
                    del open_by_room[room]
                    rooms.pop(i)
            else:
                bucket[-1][0] = count - take
            add(strategy + (length,), take, room - length)
            n -= take
    for bucket in open_by_room.values():
        for count, strategy in bucket:
            closed[strategy] = closed.get(strategy, 0) + count
    return closed


def spfhp(histogram, max_sequence_length: int, max_sequences_per_pack: int = 3) -> PackingPlan:
    """Shortest-pack-first histogram packing (best fit, longest lengths first)."""
    h = _histogram(histogram, max_sequence_length)
    return _make_plan(_spfhp_packs(h, max_sequence_length, max_sequences_per_pack),
                      max_sequence_length, max_sequences_per_pack, "spfhp")


def _exact_strategies(present: Sequence[int], max_len: int, depth: int) -> list[tuple[int, ...]]:
    """Multisets (longest first) of at most ``depth`` lengths from ``present`` summing to max_len."""
    avail = set(present)
    desc = sorted(avail, reverse=True)
    out: list[tuple[int, ...]] = []

    def extend(prefix: tuple[int, ...], room: int, largest: int, left: int) -> None:
        if room in avail and room <= largest:
            out.append(prefix + (room,))
        if left == 1:
            return
        # the next length x <= largest, and what follows (at most left - 1 lengths <= x) fills room - x
        for x in desc:
            if x > largest or x >= room:
                continue
            if x * left < room:
                break
            extend(prefix + (x,), room - x, x, left - 1)

    extend((), max_len, max_len, depth)
    return out


def nnlshp(histogram, max_sequence_length: int, max_sequences_per_pack: int = 3) -> PackingPlan:
    """Non-negative least squares histogram packing (needs scipy), leftovers by SPFHP."""
    from scipy.optimize import nnls

    max_len, depth = max_sequence_length, max_sequences_per_pack
    h = _histogram(histogram, max_len)
    present = [int(x) for x in np.flatnonzero(h)]
    strategies = _exact_strategies(present, max_len, min(depth, NNLS_MAX_DEPTH))
    packs: dict[tuple[int, ...], int] = {}
    left = h.copy()
    if strategies:
        rows = {length: i for i, length in enumerate(present)}
        a = np.zeros((len(present), len(strategies)))
        for j, strategy in enumerate(strategies):
            for length in strategy:
                a[rows[length], j] += 1
        # residuals weighted by length: a sequence left over costs its tokens
        weight = np.sqrt(np.asarray(present, dtype=np.float64))
        solution, _ = nnls(a * weight[:, None], h[present] * weight, maxiter=50 * a.shape[1])
        counts = np.floor(solution + 1e-6).astype(np.int64)
        # never more sequences of a length than there are: cut the largest users back
        use = a.astype(np.int64) @ counts
        for length in present:
            i = rows[length]
            excess = int(use[i] - h[length])
            while excess > 0:
                users = np.flatnonzero((a[i] > 0) & (counts > 0))
                j = users[np.argmax(counts[users])]
                cut = min(int(counts[j]), math.ceil(excess / a[i, j]))
                counts[j] -= cut
                use -= a[:, j].astype(np.int64) * cut
                excess = int(use[i] - h[length])
        for j in np.flatnonzero(counts):
            packs[strategies[j]] = int(counts[j])
            for length in strategies[j]:
                left[length] -= int(counts[j])
    for strategy, count in _spfhp_packs(left, max_len, depth).items():
        packs[strategy] = packs.get(strategy, 0) + count
    return _make_plan(packs, max_len, depth, "nnlshp")


def pack_histogram(histogram, max_sequence_length: int, max_sequences_per_pack: int = 3,
                   algorithm: str = "spfhp") -> PackingPlan:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown packing algorithm {algorithm!r}; use one of {ALGORITHMS}")
    if max_sequences_per_pack < 1:
        raise ValueError("max_sequences_per_pack must be >= 1")
    fn = spfhp if algorithm == "spfhp" else nnlshp
    plan = fn(histogram, max_sequence_length, max_sequences_per_pack)
    check_plan(histogram, plan)
    return plan


def check_plan(histogram, plan: PackingPlan) -> None:
    """Every sequence of ``histogram`` in exactly one pack; no pack too long or too full."""
    h = _histogram(histogram, plan.max_sequence_length)
    for strategy, count in zip(plan.strategies, plan.counts):
        if (count <= 0 or not strategy or sum(strategy) > plan.max_sequence_length
                or len(strategy) > plan.max_sequences_per_pack or min(strategy) < 1):
            raise AssertionError(f"invalid pack {strategy} x {count}")
    placed = plan.placed_histogram()
    if not np.array_equal(placed, h):
        bad = np.flatnonzero(placed != h)
        raise AssertionError(f"plan places {placed[bad].tolist()} sequences of lengths "
                             f"{bad.tolist()}, the histogram has {h[bad].tolist()}")


def plan_summary(histogram, plan: PackingPlan) -> dict:
    """The figures Habana's packer reports (the metadata keys without algorithm and seed)."""
    max_len = plan.max_sequence_length
    h = _histogram(histogram, max_len)
    lengths = np.arange(max_len + 1)
    n_seq = int(h.sum())
    tokens = int((h * lengths).sum())
    placed = plan.placed_histogram()
    packs = plan.num_packs
    placed_tokens = int((placed * lengths).sum())
    order = sorted(range(len(plan.counts)), key=lambda i: (-plan.counts[i], i))[:8]
    return {
        "sequences_dropped": n_seq - int(placed.sum()),
        "num_strategies_utilized": len(plan.strategies),
        "new_number_of_samples": packs,
        "original_number_of_samples": n_seq,
        "compression_ratio": 1.0 - packs / n_seq if n_seq else 0.0,
        "expected_speedup": n_seq / packs if packs else 1.0,
        "theoretical_speedup": n_seq * max_len / tokens if tokens else 1.0,
        "avg_seq_per_sample": int(placed.sum()) / packs if packs else 0.0,
        "padding_tokens_original_dataset": n_seq * max_len - tokens,
        "padding_tokens_packed_dataset": packs * max_len - placed_tokens,
        "packing_efficiency": placed_tokens / (packs * max_len) if packs else 0.0,
        "top_8_strategies": [{"strategy": list(plan.strategies[i]), "count": plan.counts[i]}
                             for i in order],
    }


# ---------------------------------------------------------------------------------------------
# Keyed permutations (shuffling without storing a permutation)

_M64 = (1 << 64) - 1


def _mix64(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def _mix64_array(z: np.ndarray) -> np.ndarray:
    z = z ^ (z >> np.uint64(30))
    z = z * np.uint64(0xBF58476D1CE4E5B9)
    z = z ^ (z >> np.uint64(27))
    z = z * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


class KeyedPermutation:
    """A bijection of ``range(n)`` chosen by ``key`` (ints): a 4-round Feistel network on the
    smallest even number of bits covering n, walked until the value falls below n."""

    def __init__(self, n: int, *key: int):
        self.n = n
        bits = max(2, (max(n, 1) - 1).bit_length())
        bits += bits % 2
        self.half = np.uint64(bits // 2)
        self.mask = np.uint64((1 << (bits // 2)) - 1)
        state = 0x5EED
        for k in key:
            state = _mix64(state ^ (k & _M64))
        self.round_keys = []
        for _ in range(4):
            state = _mix64(state)
            self.round_keys.append(np.uint64(state))

    def _feistel(self, x: np.ndarray) -> np.ndarray:
        left, right = x >> self.half, x & self.mask
        for k in self.round_keys:
            left, right = right, left ^ (_mix64_array(right ^ k) & self.mask)
        return (left << self.half) | right

    def __call__(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.uint64)
        if x.size and int(x.max()) >= self.n:
            raise ValueError(f"permutation of {self.n} applied to {int(x.max())}")
        y = self._feistel(x)
        outside = y >= np.uint64(self.n)
        while outside.any():
            y[outside] = self._feistel(y[outside])
            outside = y >= np.uint64(self.n)
        return y.astype(np.int64)


class _SlotMap:
    """Where the plan's slots are: slot j of length L -> (pack, index in the pack). Packs are
    numbered strategy by strategy; a strategy's slots of length L go pack by pack."""

    def __init__(self, plan: PackingPlan):
        self.pack_start = np.concatenate([[0], np.cumsum(plan.counts)]).astype(np.int64)
        per_length: dict[int, list[tuple[int, int, int]]] = {}
        for i, strategy in enumerate(plan.strategies):
            for length in sorted(set(strategy), reverse=True):
                per_length.setdefault(length, []).append(
                    (i, strategy.count(length), strategy.index(length)))
        self.tables = {}
        for length, entries in per_length.items():
            strat = np.array([e[0] for e in entries], dtype=np.int64)
            mult = np.array([e[1] for e in entries], dtype=np.int64)
            first = np.array([e[2] for e in entries], dtype=np.int64)
            sizes = np.asarray(plan.counts, dtype=np.int64)[strat] * mult
            base = np.concatenate([[0], np.cumsum(sizes)])
            self.tables[length] = (strat, mult, first, base)

    def locate(self, length: int, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        strat, mult, first, base = self.tables[length]
        k = np.searchsorted(base, slots, side="right") - 1
        within = slots - base[k]
        return self.pack_start[strat[k]] + within // mult[k], first[k] + within % mult[k]


# ---------------------------------------------------------------------------------------------
# Reading unpacked records


@dataclasses.dataclass
class _Shard:
    """The unpacked sequences of one input file, unpadded: lengths, predictions, flat arrays."""

    lengths: np.ndarray
    npred: np.ndarray
    labels: np.ndarray
    ids: np.ndarray        # concatenated input_ids[:length]
    segments: np.ndarray
    mlm_pos: np.ndarray    # concatenated masked_lm_positions[:npred]
    mlm_ids: np.ndarray


def list_input_files(spec: str, max_files: int | None = None) -> list[str]:
    """``--input-glob``: a directory (its regular, non-hidden files, metadata skipped) or a glob;
    sorted; the first ``max_files``. Nothing there is a usage error."""
    if os.path.isdir(spec):
        found = [os.path.join(spec, n) for n in sorted(os.listdir(spec))
                 if not n.startswith(".") and ".tmp" not in n and not n.endswith(_NOT_RECORDS)]
    else:
        found = sorted(glob.glob(spec))
    files = [f for f in found if os.path.isfile(f)]
    if not files:
        what = "no TFRecord files in that directory" if os.path.isdir(spec) else (
            "no file matches it" if glob.has_magic(spec) else "no such file or directory")
        raise PackingError(f"--input-glob={spec}: {what}", usage=True)
    return files[:max_files] if max_files else files


def _read_shard(path: str, seq: int, pred: int) -> _Shard:
    lengths, npred, labels = [], [], []
    ids, segs, mpos, mids = [], [], [], []
    try:
        for k, ex in enumerate(tfrecord.iter_examples(path)):
            where = f"{path}: record {k}"
            missing = [f for f in UNPACKED_FEATURES if f not in ex]
            if "positions" in ex or "next_sentence_positions" in ex:
                raise PackingError(f"{where} is already packed (it has 'positions'); pack the "
                                   "unpacked output of create_pretraining_data.py")
            if missing:
                raise PackingError(f"{where} lacks {', '.join(missing)}; expected the output of "
                                   "create_pretraining_data.py")
            mask = ex["input_mask"]
            if ex["input_ids"].size != seq or mask.size != seq or ex["segment_ids"].size != seq:
                raise PackingError(f"{where} has {ex['input_ids'].size} tokens, not "
                                   f"--max-sequence-length={seq}")
            if ex["masked_lm_positions"].size != pred or ex["masked_lm_ids"].size != pred or \
                    ex["masked_lm_weights"].size != pred:
                raise PackingError(f"{where} has {ex['masked_lm_positions'].size} masked LM "
                                   f"slots, not --max-predictions-per-sequence={pred}")
            n = int(np.count_nonzero(mask))
            if n == 0 or not (mask[:n] == 1).all() or mask[n:].any():
                raise PackingError(f"{where}: input_mask is not ones followed by zeros (packed "
                                   "or damaged data)")
            w = ex["masked_lm_weights"]
            m = int(np.count_nonzero(w))
            positions = ex["masked_lm_positions"]
            if (w[m:] != 0).any() or (m and ((positions[:m] >= n).any() or (positions[:m] < 0).any())):
                raise PackingError(f"{where}: masked LM predictions are not a prefix of "
                                   "positions inside the sequence")
            if ex["next_sentence_labels"].size != 1:
                raise PackingError(f"{where}: next_sentence_labels must hold one value")
            lengths.append(n)
            npred.append(m)
            labels.append(int(ex["next_sentence_labels"][0]))
            ids.append(ex["input_ids"][:n])
            segs.append(ex["segment_ids"][:n])
            mpos.append(positions[:m])
            mids.append(ex["masked_lm_ids"][:m])
    except tfrecord.TFRecordError as err:
        msg = str(err)
        raise PackingError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    except OSError as err:
        raise PackingError(f"{path}: cannot read ({err.strerror or err})") from None
    if not lengths:
        raise PackingError(f"{path}: no records; remove it or regenerate it with "
                           "create_pretraining_data.py")

    def cat(parts):
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)

    return _Shard(np.asarray(lengths, np.int64), np.asarray(npred, np.int64),
                  np.asarray(labels, np.int64), cat(ids), cat(segs), cat(mpos), cat(mids))


def probe_record_shape(path: str) -> tuple[int, int]:
    """(sequence length, masked LM slots) of the first record of ``path``."""
    try:
        for ex in tfrecord.iter_examples(path):
            return int(ex.get("input_ids", np.zeros(0)).size), \
                int(ex.get("masked_lm_positions", np.zeros(0)).size)
    except (tfrecord.TFRecordError, OSError) as err:
        raise PackingError(f"{path}: {err}" if str(path) not in str(err) else str(err)) from None
    raise PackingError(f"{path}: no records; remove it or regenerate it with "
                       "create_pretraining_data.py")


# ---------------------------------------------------------------------------------------------
# The packer


def _ragged_arange(lengths: np.ndarray) -> np.ndarray:
    """concatenate(arange(n) for n in lengths), vectorised."""
    total = int(lengths.sum())
    starts = np.cumsum(lengths) - lengths
    return np.arange(total, dtype=np.int64) - np.repeat(starts, lengths)


_HDR = 5  # bucket header per sequence: row, place in pack, length, predictions, NSP label


def _append_bucket(stem: Path, header: np.ndarray, data: np.ndarray) -> None:
    """One block of sequences for an output file: their headers (``.hdr``), their data laid out
    as [all ids][all segments][all mlm positions][all mlm ids] (``.dat``), and the block's
    sequence count (``.blk``)."""
    for suffix, values in ((".hdr", header), (".dat", data), (".blk", [len(header)])):
        with open(f"{stem}{suffix}", "ab") as f:
            f.write(np.ascontiguousarray(values, dtype="<i4").tobytes())


def _scatter_shard(shard: _Shard, copies: int, counters: np.ndarray, hist1: np.ndarray,
                   perms: dict[int, KeyedPermutation], slots: _SlotMap,
                   pack_order: KeyedPermutation, file_bounds: np.ndarray,
                   pred_total: np.ndarray, buckets: list[Path]) -> None:
    n = shard.lengths.size
    index = np.zeros(n, dtype=np.int64)  # k: the sequence's rank among those of its length
    for length in np.unique(shard.lengths).tolist():
        sel = np.flatnonzero(shard.lengths == length)
        index[sel] = counters[length] + np.arange(sel.size)
        counters[length] += sel.size
    tok_start = np.cumsum(shard.lengths) - shard.lengths
    pred_start = np.cumsum(shard.npred) - shard.npred
    for c in range(copies):
        pack = np.empty(n, dtype=np.int64)
        place = np.empty(n, dtype=np.int64)
        for length in np.unique(shard.lengths).tolist():
            sel = np.flatnonzero(shard.lengths == length)
            slot = perms[length](index[sel] + c * int(hist1[length]))
            pack[sel], place[sel] = slots.locate(length, slot)
        np.add.at(pred_total, pack, shard.npred)
        position = pack_order(pack)
        out_file = np.searchsorted(file_bounds, position, side="right") - 1
        row = position - file_bounds[out_file]
        for f in np.unique(out_file).tolist():
            sel = np.flatnonzero(out_file == f)
            header = np.stack([row[sel], place[sel], shard.lengths[sel], shard.npred[sel],
                               shard.labels[sel]], axis=1)
            lens, preds = shard.lengths[sel], shard.npred[sel]
            tok = np.repeat(tok_start[sel], lens) + _ragged_arange(lens)
            prd = np.repeat(pred_start[sel], preds) + _ragged_arange(preds)
            data = np.concatenate([shard.ids[tok], shard.segments[tok], shard.mlm_pos[prd],
                                   shard.mlm_ids[prd]])
            _append_bucket(buckets[f], header, data)


def _gather_rows(stem: Path, rows: int, seq: int, preds: int, per_pack: int) -> dict:
    """The packed feature arrays of one output file from its bucket."""
    if os.path.exists(f"{stem}.hdr"):
        hdr = np.fromfile(f"{stem}.hdr", dtype="<i4").astype(np.int64).reshape(-1, _HDR)
        data = np.fromfile(f"{stem}.dat", dtype="<i4").astype(np.int64)
    else:
        hdr, data = np.zeros((0, _HDR), np.int64), np.zeros(0, np.int64)
    row, place, lens, npred, label = hdr.T
    order = np.lexsort((place, row))
    out = {
        "input_ids": np.zeros((rows, seq), np.int64),
        "input_mask": np.zeros((rows, seq), np.int64),
        "segment_ids": np.zeros((rows, seq), np.int64),
        "positions": np.zeros((rows, seq), np.int64),
        "masked_lm_positions": np.zeros((rows, preds), np.int64),
        "masked_lm_ids": np.zeros((rows, preds), np.int64),
        "masked_lm_weights": np.zeros((rows, preds), np.float32),
        "next_sentence_positions": np.zeros((rows, per_pack), np.int64),
        "next_sentence_labels": np.zeros((rows, per_pack), np.int64),
        "next_sentence_weights": np.zeros((rows, per_pack), np.float32),
    }
    if not len(row):
        return out
    ids_at, seg_at, mpos_at, mids_at = _bucket_offsets(stem, lens, npred)
    r, L, P = row[order], lens[order], npred[order]
    first = np.r_[True, r[1:] != r[:-1]]
    group_start = np.maximum.accumulate(np.where(first, np.arange(r.size), 0))
    rank = np.arange(r.size) - group_start                     # 0-based place in the row
    tok_off = np.cumsum(L) - L
    tok_off = tok_off - tok_off[group_start]
    pred_off = np.cumsum(P) - P
    pred_off = pred_off - pred_off[group_start]
    within = _ragged_arange(L)
    dest = np.repeat(r * seq + tok_off, L) + within
    src = np.repeat(ids_at[order], L) + within
    out["input_ids"].reshape(-1)[dest] = data[src]
    out["segment_ids"].reshape(-1)[dest] = data[np.repeat(seg_at[order], L) + within]
    out["input_mask"].reshape(-1)[dest] = np.repeat(rank + 1, L)
    out["positions"].reshape(-1)[dest] = within
    pw = _ragged_arange(P)
    pdest = np.repeat(r * preds + pred_off, P) + pw
    out["masked_lm_positions"].reshape(-1)[pdest] = (data[np.repeat(mpos_at[order], P) + pw]
                                                     + np.repeat(tok_off, P))
    out["masked_lm_ids"].reshape(-1)[pdest] = data[np.repeat(mids_at[order], P) + pw]
    out["masked_lm_weights"].reshape(-1)[pdest] = np.repeat(rank + 1, P)
    ndest = r * per_pack + rank
    out["next_sentence_positions"].reshape(-1)[ndest] = tok_off
    out["next_sentence_labels"].reshape(-1)[ndest] = label[order]
    out["next_sentence_weights"].reshape(-1)[ndest] = 1.0
    return out


def _bucket_offsets(stem: Path, lens: np.ndarray, npred: np.ndarray):
    """Start of each sequence's ids / segments / mlm positions / mlm ids in the bucket data
    (block by block, as :func:`_append_bucket` wrote them)."""
    blocks = np.fromfile(f"{stem}.blk", dtype="<i4").astype(np.int64)  # sequences per block
    ids_at = np.empty(lens.size, np.int64)
    seg_at, mpos_at, mids_at = np.empty_like(ids_at), np.empty_like(ids_at), np.empty_like(ids_at)
    seq0 = base = 0
    for count in blocks.tolist():
        sl = slice(seq0, seq0 + count)
        L, P = lens[sl], npred[sl]
        tl, tp = int(L.sum()), int(P.sum())
        ids_at[sl] = base + np.cumsum(L) - L
        seg_at[sl] = base + tl + np.cumsum(L) - L
        mpos_at[sl] = base + 2 * tl + np.cumsum(P) - P
        mids_at[sl] = base + 2 * tl + tp + np.cumsum(P) - P
        base += 2 * tl + 2 * tp
        seq0 += count
    return ids_at, seg_at, mpos_at, mids_at


def unpack_row(row: dict, max_predictions_per_sequence: int) -> list[dict[str, np.ndarray]]:
    """The unpacked records a packed row holds (the inverse of the packer, for tests and checks):
    one dict per sequence with the features of ``create_pretraining_data.py``, padded to the
    row's length and ``max_predictions_per_sequence`` slots."""
    mask = np.asarray(row["input_mask"])
    seq = mask.size
    weights = np.asarray(row["masked_lm_weights"])
    out = []
    for j in range(1, int(mask.max(initial=0)) + 1):
        tokens = np.flatnonzero(mask == j)
        start, n = int(tokens[0]), tokens.size
        preds = np.flatnonzero(weights == j)
        m = preds.size

        def pad(values, width, dtype=np.int64):
            padded = np.zeros(width, dtype=dtype)
            padded[:len(values)] = values
            return padded

        out.append({
            "input_ids": pad(np.asarray(row["input_ids"])[tokens], seq),
            "input_mask": pad(np.ones(n), seq),
            "segment_ids": pad(np.asarray(row["segment_ids"])[tokens], seq),
            "masked_lm_positions": pad(np.asarray(row["masked_lm_positions"])[preds] - start,
                                       max_predictions_per_sequence),
            "masked_lm_ids": pad(np.asarray(row["masked_lm_ids"])[preds],
                                 max_predictions_per_sequence),
            "masked_lm_weights": pad(np.ones(m), max_predictions_per_sequence, np.float32),
            "next_sentence_labels": np.asarray(row["next_sentence_labels"])[j - 1:j],
            # what the row says about the sequence besides its features (checked by tests)
            "_start": start,
            "_contiguous": bool(tokens[-1] - start + 1 == n),
            "_positions_ok": bool((np.asarray(row["positions"])[tokens] == np.arange(n)).all()),
            "_nsp_position": int(np.asarray(row["next_sentence_positions"])[j - 1]),
            "_nsp_weight": float(np.asarray(row["next_sentence_weights"])[j - 1]),
        })
    return out


def metadata_path(output_dir: str | Path) -> Path:
    """``<parent>/<name>_metadata.json`` for ``<parent>/<name>`` (one level above the data)."""
    d = Path(os.path.abspath(output_dir))
    return d.parent / f"{d.name}_metadata.json"


class _Progress:
    def __init__(self, log: Callable[[str], None], every: float = 10.0):
        self.log, self.every, self.last = log, every, time.monotonic()

    def __call__(self, message: str, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last >= self.every:
            self.last = now
            self.log(message)


def pack_dataset(input_files: Sequence[str], output_dir: str | Path, max_sequence_length: int,
                 max_predictions_per_sequence: int, max_sequences_per_pack: int = 3,
                 duplication_factor: int = 1, algorithm: str = "spfhp", seed: int = 12345,
                 max_predictions_per_pack: int | None = None,
                 log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True)
                 ) -> dict:
    """Pack ``input_files`` into ``output_dir`` (three passes, see the module docstring); returns
    the metadata written. Raises :class:`PackingError` for unusable data; removes its
    temporary files on any failure."""
    seq, pred, depth = max_sequence_length, max_predictions_per_sequence, max_sequences_per_pack
    slots_mlm = max_predictions_per_pack or pred + depth
    out_dir = Path(output_dir)
    names = [os.path.basename(p) for p in input_files]
    if len(set(names)) != len(names):
        raise PackingError("--input-glob matches files of the same name in different "
                           "directories; the output files are named after the inputs",
                           usage=True)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(f"{out_dir}/.packing.tmp{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    finals = [out_dir / n for n in names]
    temps = [out_dir / f".{n}.tmp{os.getpid()}" for n in names]
    meta_path = metadata_path(out_dir)
    meta_tmp = meta_path.with_name(f".{meta_path.name}.tmp{os.getpid()}")
    progress = _Progress(log)
    t0 = time.perf_counter()
    try:
        # pass 1: histogram
        hist1 = np.zeros(seq + 1, dtype=np.int64)
        for i, path in enumerate(input_files):
            shard = _read_shard(path, seq, pred)
            hist1 += np.bincount(shard.lengths, minlength=seq + 1)
            progress(f"histogram: {i + 1}/{len(input_files)} files, {int(hist1.sum())} sequences")
        histogram = hist1 * duplication_factor
        t_plan = time.perf_counter()
        plan = pack_histogram(histogram, seq, depth, algorithm)
        t_plan = time.perf_counter() - t_plan
        summary = plan_summary(histogram, plan)
        log(f"{algorithm}: {summary['original_number_of_samples']} sequences -> "
            f"{plan.num_packs} packs in {t_plan:.2f}s; packing efficiency "
            f"{summary['packing_efficiency']:.4f}, {summary['avg_seq_per_sample']:.3f} "
            f"sequences per pack, expected speed-up {summary['expected_speedup']:.3f} "
            f"(theoretical {summary['theoretical_speedup']:.3f})")
        # pass 2: scatter into per-output-file buckets
        n_files = len(input_files)
        file_bounds = np.array([plan.num_packs * f // n_files for f in range(n_files + 1)],
                               dtype=np.int64)
        slots = _SlotMap(plan)
        perms = {length: KeyedPermutation(int(histogram[length]), seed, 1, length)
                 for length in np.flatnonzero(histogram).tolist()}
        pack_order = KeyedPermutation(plan.num_packs, seed, 2)
        counters = np.zeros(seq + 1, dtype=np.int64)
        pred_total = np.zeros(plan.num_packs, dtype=np.int64)
        buckets = [work / f"b{f:06d}" for f in range(n_files)]
        for i, path in enumerate(input_files):
            shard = _read_shard(path, seq, pred)
            _scatter_shard(shard, duplication_factor, counters, hist1, perms, slots, pack_order,
                           file_bounds, pred_total, buckets)
            progress(f"scatter: {i + 1}/{n_files} files")
        over = np.flatnonzero(pred_total > slots_mlm)
        if over.size:
            raise PackingError(
                f"{over.size} pack(s) hold more masked LM predictions (up to "
                f"{int(pred_total.max())}) than the {slots_mlm} slots of a packed row; pass "
                "--max-predictions-per-pack with at least that many")
        # pass 3: gather, encode, write under temporary names
        for f in range(n_files):
            rows = int(file_bounds[f + 1] - file_bounds[f])
            feats = _gather_rows(buckets[f], rows, seq, slots_mlm, depth)
            with tfrecord.TFRecordWriter(temps[f], atomic=False) as writer:
                for start in range(0, rows, 256):
                    batch = {k: v[start:start + 256] for k, v in feats.items()}
                    for record in tfrecord.encode_examples(batch):
                        writer.write(record)
            for suffix in (".hdr", ".dat", ".blk"):
                Path(f"{buckets[f]}{suffix}").unlink(missing_ok=True)
            progress(f"write: {f + 1}/{n_files} files, {int(file_bounds[f + 1])}/"
                     f"{plan.num_packs} packs")
        metadata = dict(summary, algorithm=algorithm, seed=seed)
        meta_tmp.write_text(json.dumps(metadata, indent=2) + "\n")
        for tmp, final in zip(temps, finals):
            os.replace(tmp, final)
        os.replace(meta_tmp, meta_path)
    except BaseException:
        for tmp in temps + [meta_tmp]:
            tmp.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    shutil.rmtree(work, ignore_errors=True)
    log(f"wrote {plan.num_packs} packed rows to {n_files} file(s) in {out_dir} and {meta_path} "
        f"in {time.perf_counter() - t0:.1f}s")
    return metadata


# ---------------------------------------------------------------------------------------------
# Metadata for the training scripts


@dataclasses.dataclass(frozen=True)
class PackingMetadata:
    path: str
    sequences_dropped: int
    num_strategies_utilized: int
    new_number_of_samples: int
    original_number_of_samples: int
    compression_ratio: float
    expected_speedup: float
    theoretical_speedup: float
    avg_seq_per_sample: float
    padding_tokens_original_dataset: int
    padding_tokens_packed_dataset: int
    packing_efficiency: float
    top_8_strategies: list
    algorithm: str | None = None
    seed: int | None = None


def read_packing_metadata(input_dir: str | Path) -> PackingMetadata | None:
    """The metadata beside a packed data directory (``<dir>_metadata.json`` one level up), or
    None when there is none (unpacked data). Raises :class:`PackingMetadataError` (one line
    naming the file and the key) for a file that is not JSON or a missing or wrong key.
    ``algorithm`` and ``seed`` are optional (Habana's packer does not write them)."""
    path = metadata_path(input_dir)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise PackingMetadataError(f"{path}: cannot read ({getattr(err, 'strerror', None) or err})"
                                   ) from None
    except json.JSONDecodeError as err:
        raise PackingMetadataError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})"
                                   ) from None
    if not isinstance(data, dict):
        raise PackingMetadataError(f"{path}: expected a JSON object of packing figures")

    def bad(key: str, what: str) -> PackingMetadataError:
        got = "missing" if key not in data else f"got {data[key]!r}"
        return PackingMetadataError(f"{path}: key {key!r} must be {what} ({got}); regenerate it "
                                    "with pack_pretraining_data_tfrec.py")

    values: dict = {"path": str(path)}
    for key in METADATA_INTS:
        v = data.get(key)
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise bad(key, "an integer >= 0")
        values[key] = v
    for key in METADATA_FLOATS:
        v = data.get(key)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            raise bad(key, "a number")
        values[key] = float(v)
    if values["new_number_of_samples"] < 1:
        raise bad("new_number_of_samples", "an integer >= 1")
    if values["avg_seq_per_sample"] < 1.0:
        raise bad("avg_seq_per_sample", "a number >= 1 (sequences per packed row)")
    if not 0.0 < values["packing_efficiency"] <= 1.0:
        raise bad("packing_efficiency", "a fraction in (0, 1]")
    if not isinstance(data.get("top_8_strategies"), list):
        raise bad("top_8_strategies", "a list")
    values["top_8_strategies"] = data["top_8_strategies"]
    if "algorithm" in data and data["algorithm"] not in ALGORITHMS:
        raise bad("algorithm", f"one of {', '.join(ALGORITHMS)}")
    if "seed" in data and (not isinstance(data["seed"], int) or isinstance(data["seed"], bool)):
        raise bad("seed", "an integer")
    values["algorithm"] = data.get("algorithm")
    values["seed"] = data.get("seed")
    return PackingMetadata(**values)


def packed_input(first_file: str | Path, mode: bool | None, flag: str = "--packed_data"
                 ) -> PackingMetadata | None:
    """The packing metadata of the folder holding ``first_file`` (a training script's input),
    or None to train unpacked. ``mode``: None detects (packed when the metadata is there),
    False forces unpacked, True requires the metadata (``PackingMetadataError`` naming the
    file it looked for)."""
    folder = os.path.dirname(os.path.abspath(first_file))
    if mode is False:
        return None
    meta = read_packing_metadata(folder)
    if mode is True and meta is None:
        raise PackingMetadataError(f"{flag}=true but {metadata_path(folder)} does not exist; "
                                   "pack the data with pack_pretraining_data_tfrec.py")
    return meta


def packed_accumulation_steps(steps: int, meta: PackingMetadata) -> int:
    """Habana's rule for packed data: a packed row holds ``avg_seq_per_sample`` sequences, so
    the gradient accumulation is divided by it (rounded, at least 1) to keep the sequences per
    optimizer step about the same."""
    return max(1, round(steps / meta.avg_seq_per_sample))
