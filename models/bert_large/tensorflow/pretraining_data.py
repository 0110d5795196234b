"""Reading BERT pretraining TFRecords into batches, deterministically and resumably.

Order of the records a rank sees (an infinite stream when ``repeat``):

- the rank's files: ``files[rank::world_size]`` (every rank reads all files and keeps every
  ``world_size``-th record when there are fewer files than ranks);
- per epoch, the files in an order drawn from ``(seed, epoch)``, cut into groups of
  ``files_per_group``; a group's files are read interleaved (one record from each in turn),
  then mixed by a shuffle buffer seeded by ``(seed, epoch, group)``.

So the stream depends only on the files, the seed and the rank, and a point in it is
``DataPosition(epoch, group, offset)`` (``offset`` = records already taken from the group).
``run_pretraining.py`` stores the position of the next batch in each checkpoint; resuming
re-reads at most one group to get back to it.

Corrupt or truncated files raise :class:`CorruptRecordError` naming the file (TensorFlow's own
``DataLossError`` does not say which file); records of another ``max_seq_length`` /
``max_predictions_per_seq`` raise :class:`RecordShapeError` naming the file and the flag.
Packed rows (docs/packing.md) are read with their extra features (``positions``,
``next_sentence_positions/labels/weights``) when the run knows the data is packed.

Before TensorFlow opens a file, :func:`check_framing` walks its record headers with the
standard library (8-byte length + masked CRC32C of the length; payloads are seeked over, not
read): a header whose length does not fit in the rest of the file (TensorFlow would try to
allocate it and can crash the process) or fails its CRC is a :class:`CorruptRecordError`
naming the file and the byte offset. Payload CRCs are left to TensorFlow's reader; a payload
that is not a ``tf.train.Example`` is a :class:`CorruptRecordError` naming the file.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import queue
import random
import struct
import threading
from typing import Iterator, Sequence

import numpy as np
import tensorflow as tf

from models.bert_large.tfrecord import masked_crc32c as _masked_crc32c

INT_FEATURES = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions",
                "masked_lm_ids", "next_sentence_labels")
# Files in a data directory that are not TFRecords: metadata written beside the records, and
# the temporary names create_pretraining_data.py writes before renaming a finished shard.
_SKIP_SUFFIXES = (".json", ".txt", ".md", ".log")


class PretrainingDataError(ValueError):
    """Input data problem a user can fix (bad path, corrupt file, wrong sequence length)."""


class CorruptRecordError(PretrainingDataError):
    pass


class RecordShapeError(PretrainingDataError):
    pass


# --------------------------------------------------------------------------------------------
# Record framing (standard library; before TensorFlow reads a file)
# --------------------------------------------------------------------------------------------
# A TFRecord is: uint64 length (little endian), uint32 masked CRC32C of those 8 bytes, the
# payload (length bytes), uint32 masked CRC32C of the payload.
_HEADER = 12
_FOOTER = 4


_NOT_TFRECORD = ("the files are empty or not TFRecord files; create them with "
                 "create_pretraining_data.py")
_framing_checked: set[tuple[str, int, int]] = set()


def scan_framing(path: str) -> int:
    """Walk the record headers of ``path`` (payloads are skipped, not read); returns the record
    count. Raises :class:`CorruptRecordError` naming the file and the offset of the first
    header that is cut short, fails its CRC or claims more bytes than the file has left."""
    try:
        size = os.path.getsize(path)
        f = open(path, "rb", buffering=1 << 16)
    except OSError as err:
        raise PretrainingDataError(f"{path}: cannot read ({err.strerror})") from None
    count = offset = 0
    with f:
        while offset < size:
            left = size - offset
            header = f.read(_HEADER) if left >= _HEADER else b""
            problem = None
            if len(header) < _HEADER:
                problem = (f"truncated TFRecord file: {left} byte(s) at offset {offset}, less "
                           f"than a record header ({_HEADER} bytes)")
            else:
                length, crc = struct.unpack("<QI", header)
                if _masked_crc32c(header[:8]) != crc:
                    problem = (f"corrupt TFRecord file: the record header at offset {offset} "
                               "fails its CRC")
                elif length > left - _HEADER - _FOOTER:
                    problem = (f"corrupt or truncated TFRecord file: the record at offset "
                               f"{offset} claims {length} bytes but only "
                               f"{max(left - _HEADER - _FOOTER, 0)} remain in the file "
                               f"({size} bytes)")
            if problem:
                if count == 0:  # not one valid record: most likely not a TFRecord at all
                    raise CorruptRecordError(f"{path}: {_NOT_TFRECORD} ({problem})")
                raise CorruptRecordError(
                    f"{path}: {problem}; regenerate it with create_pretraining_data.py or move "
                    "it out of the input directory")
            offset += _HEADER + length + _FOOTER
            count += 1
            f.seek(offset)
    return count


def check_framing(paths: Sequence[str]) -> None:
    """:func:`scan_framing` for each of ``paths`` not already checked (unchanged since);
    call it before TensorFlow opens the files."""
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue  # TF's own error names it
        key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
        if key not in _framing_checked:
            scan_framing(path)
            _framing_checked.add(key)


def feature_spec(max_seq_length: int, max_predictions_per_seq: int,
                 sequences_per_pack: int = 0) -> dict:
    """The record features. ``sequences_per_pack`` > 0: packed rows (docs/packing.md) with
    ``positions`` and that many next-sentence slots; ``max_predictions_per_seq`` is then the
    row's masked-LM slot count."""
    s, p = max_seq_length, max_predictions_per_seq
    spec = {
        "input_ids": tf.io.FixedLenFeature([s], tf.int64),
        "input_mask": tf.io.FixedLenFeature([s], tf.int64),
        "segment_ids": tf.io.FixedLenFeature([s], tf.int64),
        "masked_lm_positions": tf.io.FixedLenFeature([p], tf.int64),
        "masked_lm_ids": tf.io.FixedLenFeature([p], tf.int64),
        "masked_lm_weights": tf.io.FixedLenFeature([p], tf.float32),
        "next_sentence_labels": tf.io.FixedLenFeature([1], tf.int64),
    }
    if sequences_per_pack:
        k = sequences_per_pack
        spec.update(positions=tf.io.FixedLenFeature([s], tf.int64),
                    next_sentence_positions=tf.io.FixedLenFeature([k], tf.int64),
                    next_sentence_labels=tf.io.FixedLenFeature([k], tf.int64),
                    next_sentence_weights=tf.io.FixedLenFeature([k], tf.float32))
    return spec


@dataclasses.dataclass(frozen=True)
class RecordLayout:
    """What one record holds: ``seq`` tokens, ``pred`` masked-LM slots and, for packed rows,
    ``sequences_per_pack`` next-sentence slots (0: one unpacked sequence)."""

    seq: int
    pred: int
    sequences_per_pack: int = 0

    @property
    def packed(self) -> bool:
        return self.sequences_per_pack > 0


def list_input_files(spec: str, flag: str = "input_files_dir") -> list[str]:
    """A directory (all regular, non-hidden files in it), a glob, or a comma-separated list of
    those -> sorted file list. Nothing found is an error naming the flag."""
    files: list[str] = []
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        if os.path.isdir(part):
            found = [os.path.join(part, n) for n in sorted(os.listdir(part))
                     if not n.startswith(".") and ".tmp" not in n
                     and not n.endswith(_SKIP_SUFFIXES)
                     and os.path.isfile(os.path.join(part, n))]
        elif glob.has_magic(part):
            found = [f for f in sorted(glob.glob(part)) if os.path.isfile(f)]
        elif os.path.isfile(part):
            found = [part]
        else:
            raise PretrainingDataError(f"--{flag}={part}: no such file or directory")
        if not found:
            raise PretrainingDataError(f"--{flag}={part}: no TFRecord files there; create them "
                                       "with create_pretraining_data.py")
        files.extend(found)
    if not files:
        raise PretrainingDataError(f"--{flag} is empty; pass a directory of TFRecord files")
    return sorted(dict.fromkeys(files))


@dataclasses.dataclass(frozen=True)
class DataPosition:
    epoch: int = 0
    group: int = 0
    offset: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DataPosition":
        return cls(int(d["epoch"]), int(d["group"]), int(d["offset"]))


def _raise_corrupt(paths: Sequence[str], err: Exception) -> None:
    """Find which of ``paths`` is damaged (TF's error does not say) and raise naming it."""
    for path in paths:
        try:
            for _ in tf.data.TFRecordDataset(path, buffer_size=1 << 20).batch(4096):
                pass
        except tf.errors.DataLossError as file_err:
            detail = str(file_err).split("}}")[-1].split("[Op:")[0].strip()
            raise CorruptRecordError(
                f"{path}: corrupt or truncated TFRecord file ({detail}); regenerate it with "
                "create_pretraining_data.py or move it out of the input directory") from None
        except tf.errors.OpError:
            break
    raise CorruptRecordError(f"corrupt or truncated TFRecord among {', '.join(paths)}: "
                             f"{err}") from None


def verify_files(paths: Sequence[str]) -> int:
    """Read every record of ``paths`` (CRCs checked); returns the record count. Raises
    :class:`CorruptRecordError` naming the first damaged file."""
    total = 0
    check_framing(paths)
    for path in paths:
        try:
            for chunk in tf.data.TFRecordDataset(path, buffer_size=1 << 20).batch(4096):
                total += int(chunk.shape[0])
        except tf.errors.DataLossError as err:
            _raise_corrupt([path], err)
    return total


def _decode_example(serialized: bytes, path: str) -> "tf.train.Example":
    from google.protobuf.message import DecodeError  # noqa: PLC0415 - TF's dependency

    try:
        return tf.train.Example.FromString(serialized)
    except (DecodeError, RuntimeWarning, ValueError) as err:
        raise CorruptRecordError(
            f"{path}: a record is not a serialized tf.train.Example ({err}); the file is not "
            "BERT pretraining data: regenerate it with create_pretraining_data.py or move it "
            "out of the input directory") from None


def _find_unparsable(paths: Sequence[str], spec: dict) -> str | None:
    """The first of ``paths`` holding a record that ``tf.io.parse_example`` rejects."""
    for path in paths:
        try:
            for chunk in tf.data.TFRecordDataset(path, buffer_size=1 << 20).batch(1024):
                tf.io.parse_example(chunk, spec)
        except (tf.errors.InvalidArgumentError, UnicodeDecodeError):
            # (TF quotes the bad bytes in its message, which may not decode)
            return path
        except tf.errors.OpError:
            continue
    return None


def check_record_shapes(paths: Sequence[str], max_seq_length: int,
                        max_predictions_per_seq: int, packing=None) -> RecordLayout:
    """Compare the first record found with the flags, for a clear message instead of a parse
    error deep in training; returns the records' layout. ``packing``: the packing metadata
    of the input directory (models/bert_large/packing.py), None for unpacked data; packed
    rows hold several sequences, so their masked-LM slots are at least
    ``max_predictions_per_seq``."""
    for path in paths:
        check_framing([path])
        try:
            first = next(iter(tf.data.TFRecordDataset(path).take(1)), None)
        except tf.errors.DataLossError as err:
            _raise_corrupt([path], err)
        if first is None:
            continue
        ex = _decode_example(first.numpy(), path)
        feats = ex.features.feature
        missing = [k for k in (*INT_FEATURES, "masked_lm_weights") if k not in feats]
        if missing:
            raise RecordShapeError(f"{path}: records lack the feature(s) {', '.join(missing)}; "
                                   "expected BERT pretraining data from "
                                   "create_pretraining_data.py")
        seq = len(feats["input_ids"].int64_list.value)
        pred = len(feats["masked_lm_positions"].int64_list.value)
        has_positions = "positions" in feats
        if has_positions and packing is None:
            raise RecordShapeError(f"{path}: the records are packed (they have 'positions') but "
                                   "packed mode is off: keep the packing metadata file "
                                   "(<dir>_metadata.json) beside the data folder and drop "
                                   "--packed_data=false")
        if packing is not None and not has_positions:
            raise RecordShapeError(f"{path}: {packing.path} says the folder holds packed data, "
                                   "but its records have no 'positions' (unpacked records); "
                                   "remove the metadata file or point at the packed folder")
        if seq != max_seq_length:
            raise RecordShapeError(f"{path}: sequences have length {seq} but "
                                   f"--max_seq_length={max_seq_length}; pass "
                                   f"--max_seq_length={seq} or point at data created with "
                                   f"max_seq_length={max_seq_length}")
        if packing is not None:
            if pred < max_predictions_per_seq:
                raise RecordShapeError(
                    f"{path}: packed rows have {pred} masked LM slots, fewer than "
                    f"--max_predictions_per_seq={max_predictions_per_seq}; pass the value the "
                    "data was packed with (--max-predictions-per-sequence)")
            per_pack = len(feats["next_sentence_positions"].int64_list.value) \
                if "next_sentence_positions" in feats else 0
            if not per_pack:
                raise RecordShapeError(f"{path}: packed records lack next_sentence_positions; "
                                       "pack the data again with pack_pretraining_data_tfrec.py")
            return RecordLayout(seq, pred, per_pack)
        if pred != max_predictions_per_seq:
            raise RecordShapeError(f"{path}: records have {pred} masked LM slots but "
                                   f"--max_predictions_per_seq={max_predictions_per_seq}; "
                                   f"pass --max_predictions_per_seq={pred}")
        return RecordLayout(seq, pred)
    raise PretrainingDataError(f"no records in {', '.join(paths[:5])}"
                               f"{' ...' if len(paths) > 5 else ''}: the files are empty or "
                               "not TFRecord files; create them with create_pretraining_data.py")


class PretrainingData:
    """Batches of parsed features (numpy, int32 / float32) for one rank."""

    def __init__(self, files: Sequence[str], batch_size: int, max_seq_length: int,
                 max_predictions_per_seq: int, *, rank: int = 0, world_size: int = 1,
                 seed: int = 12345, shuffle: bool = True, repeat: bool = True,
                 drop_remainder: bool = True, files_per_group: int = 4,
                 shuffle_buffer: int = 10000, sequences_per_pack: int = 0):
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        files = sorted(files)
        if not files:
            raise PretrainingDataError("no input files")
        if len(files) >= world_size:
            self.files = files[rank::world_size]
            self.record_stride, self.record_offset = 1, 0
        else:  # fewer files than ranks: everybody reads everything, keeps its share
            self.files = list(files)
            self.record_stride, self.record_offset = world_size, rank
        check_framing(self.files)  # a bad header can crash TensorFlow's reader: check first
        self.batch_size = batch_size
        self.spec = feature_spec(max_seq_length, max_predictions_per_seq, sequences_per_pack)
        self.max_seq_length = max_seq_length
        self.max_predictions_per_seq = max_predictions_per_seq
        self.seed = seed
        self.shuffle = shuffle
        self.repeat = repeat
        self.drop_remainder = drop_remainder
        self.files_per_group = max(1, files_per_group)
        self.shuffle_buffer = max(1, shuffle_buffer)

    # -- order ------------------------------------------------------------------------------
    def groups(self, epoch: int) -> list[list[str]]:
        order = list(self.files)
        if self.shuffle:
            random.Random(f"files-{self.seed}-{epoch}").shuffle(order)
        k = self.files_per_group
        return [order[i:i + k] for i in range(0, len(order), k)]

    def _raw_group(self, paths: Sequence[str],
                   _data_loss=tf.errors.DataLossError) -> Iterator[bytes]:
        # (_data_loss is bound early: a generator closed at interpreter exit has no globals)
        ds = tf.data.Dataset.from_tensor_slices(list(paths))
        ds = ds.interleave(lambda p: tf.data.TFRecordDataset(p, buffer_size=1 << 20),
                           cycle_length=len(paths), block_length=1)
        if self.record_stride > 1:
            ds = ds.shard(self.record_stride, self.record_offset)
        try:
            for chunk in ds.batch(1024).as_numpy_iterator():
                yield from chunk
        except _data_loss as err:
            _raise_corrupt(paths, err)

    def _group_records(self, epoch: int, group: int, paths: Sequence[str]) -> Iterator[bytes]:
        raw = self._raw_group(paths)
        if not self.shuffle:
            yield from raw
            return
        rng = random.Random(f"records-{self.seed}-{epoch}-{group}")
        buf: list[bytes] = []
        size = self.shuffle_buffer
        for rec in raw:
            if len(buf) < size:
                buf.append(rec)
                continue
            j = rng.randrange(size)
            out, buf[j] = buf[j], rec
            yield out
        rng.shuffle(buf)
        yield from buf

    # -- batches ----------------------------------------------------------------------------
    def parse(self, serialized: Sequence[bytes], files_hint: Sequence[str] = ()) -> dict:
        try:
            feats = tf.io.parse_example(tf.constant(list(serialized)), self.spec)
        except (tf.errors.InvalidArgumentError, UnicodeDecodeError) as err:
            # A payload that is not an Example: TF quotes its bytes, which may not even decode.
            candidates = list(files_hint) or list(self.files)
            if isinstance(err, UnicodeDecodeError) or "Could not parse example input" in str(err):
                bad = _find_unparsable(candidates, self.spec)
                raise CorruptRecordError(
                    f"{bad or ', '.join(candidates[:4])}: a record is not a serialized "
                    "tf.train.Example; the file is not BERT pretraining data: regenerate it "
                    "with create_pretraining_data.py or move it out of the input directory"
                ) from None
            where = ", ".join(files_hint) or ", ".join(self.files[:4])
            raise RecordShapeError(
                f"cannot parse pretraining records from {where} with --max_seq_length="
                f"{self.max_seq_length} --max_predictions_per_seq="
                f"{self.max_predictions_per_seq}: {str(err).splitlines()[0]}") from None
        return {k: (v.numpy().astype(np.int32) if v.dtype == tf.int64 else v.numpy())
                for k, v in feats.items()}

    def batches(self, start: DataPosition = DataPosition()
                ) -> Iterator[tuple[dict, DataPosition]]:
        """Yield ``(features, position_after)``; resuming at ``position_after`` continues
        with the next batch."""
        buf: list[bytes] = []
        epoch, first_group, skip = start.epoch, start.group, start.offset
        while True:
            groups = self.groups(epoch)
            records_this_epoch = 0
            for g in range(first_group, len(groups)):
                taken = 0
                for rec in self._group_records(epoch, g, groups[g]):
                    taken += 1
                    if taken <= skip:
                        continue
                    buf.append(rec)
                    if len(buf) == self.batch_size:
                        yield self.parse(buf, groups[g]), DataPosition(epoch, g, taken)
                        buf = []
                records_this_epoch += taken
                skip = 0
            if not self.repeat:
                if buf and not self.drop_remainder:
                    yield self.parse(buf), DataPosition(epoch + 1, 0, 0)
                return
            if records_this_epoch == 0 and first_group == 0:
                raise PretrainingDataError(
                    f"no records in {', '.join(self.files[:4])}"
                    f"{' ...' if len(self.files) > 4 else ''}"
                    + (f" for rank {self.record_offset} of {self.record_stride}"
                       if self.record_stride > 1 else ""))
            epoch += 1
            first_group = 0


def prefetch(iterator: Iterator, depth: int = 2) -> Iterator:
    """Run ``iterator`` in a background thread, ``depth`` items ahead; exceptions are
    re-raised in the consumer."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def work():
        try:
            for item in iterator:
                while not stop.is_set():
                    try:
                        q.put((item, None), timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((done, None))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            q.put((done, e))

    thread = threading.Thread(target=work, name="pretraining-data", daemon=True)
    thread.start()
    try:
        while True:
            item, err = q.get()
            if err is not None:
                raise err
            if item is done:
                return
            yield item
    finally:
        stop.set()
