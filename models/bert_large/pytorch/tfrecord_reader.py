"""Read TFRecord files of `tf.train.Example` protos without TensorFlow or protobuf.

TensorFlow and the `tfrecord` package cannot share a process (duplicate protobuf symbols),
so this module decodes both layers itself:

* TFRecord framing: ``uint64 length | uint32 masked_crc32c(length) | data |
  uint32 masked_crc32c(data)``, all little-endian. CRCs are verified by default; a length
  beyond what the rest of the file holds is refused before anything is allocated.
* The protobuf wire format of ``Example{Features{map<string, Feature>}}`` where a
  ``Feature`` holds a ``BytesList`` (1), ``FloatList`` (2) or ``Int64List`` (3); packed and
  unpacked repeated fields are both accepted.

CRC32C uses the `crc32c` package when it is importable (C speed) and a table-driven
pure-Python fallback otherwise.
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from models.common.file_kinds import file_kind

__all__ = [
    "TFRecordError",
    "crc32c",
    "masked_crc32c",
    "iter_records",
    "parse_example",
    "iter_examples",
]


class TFRecordError(ValueError):
    """A TFRecord file is truncated, corrupted or not a tf.train.Example file."""


# --------------------------------------------------------------------------- CRC32C

def _make_table() -> list[int]:
    poly = 0x82F63B78  # Castagnoli, reflected
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _make_table()


def _crc32c_py(data: bytes) -> int:
    crc = 0xFFFFFFFF
    table = _TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


try:  # the C implementation is ~1000x faster; the fallback keeps the reader dependency-free
    import crc32c as _crc32c_mod

    def crc32c(data: bytes) -> int:
        """CRC32C (Castagnoli) of ``data``."""
        return _crc32c_mod.crc32c(data)

except ImportError:  # pragma: no cover - depends on the environment
    crc32c = _crc32c_py


def masked_crc32c(data: bytes) -> int:
    """The CRC TFRecord stores: rotated right by 15 bits plus a constant."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# --------------------------------------------------------------------------- framing

def _open_regular(path: Path):
    """(binary file, size) of ``path``; ``TFRecordError`` when it is not a regular file. Opened
    non-blocking first, so a FIFO is refused instead of waiting for a writer for ever."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise TFRecordError(f"{path} is not a regular file (it is {file_kind(st.st_mode)}); "
                                "a TFRecord file must be a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb"), st.st_size


def iter_records(path: str | Path, verify: bool = True) -> Iterator[bytes]:
    """Yield the raw record payloads of one TFRecord file (uncompressed)."""
    path = Path(path)
    f, size = _open_regular(path)
    with f:
        offset = 0
        while True:
            header = f.read(12)
            if not header:
                return
            if len(header) < 12:
                raise TFRecordError(f"{path}: truncated record header at byte {offset}")
            length, length_crc = struct.unpack("<QI", header)
            if verify and masked_crc32c(header[:8]) != length_crc:
                raise TFRecordError(
                    f"{path}: length CRC mismatch at byte {offset}; the file is corrupted or "
                    "not an uncompressed TFRecord file"
                )
            room = max(size - offset - 16, 0)  # what the file holds after this header and footer
            if length > room:
                raise TFRecordError(
                    f"{path}: truncated record at byte {offset}: its header claims {length} "
                    f"bytes of data, but the file ({size} bytes) holds at most {room} more; the "
                    "file is truncated or corrupted"
                )
            data = f.read(length)
            footer = f.read(4)
            if len(data) < length or len(footer) < 4:
                raise TFRecordError(f"{path}: truncated record at byte {offset}")
            if verify and masked_crc32c(data) != struct.unpack("<I", footer)[0]:
                raise TFRecordError(f"{path}: data CRC mismatch in the record at byte {offset}")
            yield data
            offset += 16 + length


# --------------------------------------------------------------------------- protobuf

def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise TFRecordError("truncated varint in protobuf message")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise TFRecordError("varint longer than 10 bytes in protobuf message")


def _fields(buf: bytes) -> Iterator[tuple[int, int, object]]:
    """Yield (field_number, wire_type, value) of one message; value is int or bytes."""
    pos = 0
    n = len(buf)
    while pos < n:
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > n:
                raise TFRecordError("truncated length-delimited field in protobuf message")
            value = buf[pos : pos + size]
            pos += size
        elif wire == 5:
            value = buf[pos : pos + 4]
            pos += 4
        elif wire == 1:
            value = buf[pos : pos + 8]
            pos += 8
        else:
            raise TFRecordError(f"unsupported protobuf wire type {wire}")
        yield field, wire, value


def _decode_packed_varints(data: bytes) -> np.ndarray:
    """Vectorised decoding of a packed run of varints into int64 (two's complement)."""
    b = np.frombuffer(data, dtype=np.uint8)
    if b.size == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.flatnonzero(b < 0x80)  # last byte of each varint
    if ends.size == 0 or ends[-1] != b.size - 1:
        raise TFRecordError("truncated packed varint list in protobuf message")
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    lengths = ends - starts + 1
    if lengths.max() > 10:
        raise TFRecordError("varint longer than 10 bytes in protobuf message")
    shift = np.arange(b.size, dtype=np.uint64) - np.repeat(starts, lengths).astype(np.uint64)
    parts = (b & 0x7F).astype(np.uint64) << (np.uint64(7) * shift)
    return np.add.reduceat(parts, starts).view(np.int64)


def _parse_feature(buf: bytes) -> np.ndarray | list[bytes]:
    for field, wire, value in _fields(buf):
        if field == 1:  # BytesList
            return [bytes(v) for f, w, v in _fields(value) if f == 1 and w == 2]
        if field == 2:  # FloatList
            chunks = []
            for f, w, v in _fields(value):
                if f == 1:  # packed (wire 2) or one fixed32 (wire 5)
                    chunks.append(np.frombuffer(v, dtype="<f4"))
            return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
        if field == 3:  # Int64List
            chunks = []
            for f, w, v in _fields(value):
                if f != 1:
                    continue
                if w == 2:
                    chunks.append(_decode_packed_varints(v))
                else:
                    chunks.append(np.array([v], dtype=np.uint64).view(np.int64))
            return np.concatenate(chunks) if chunks else np.zeros(0, np.int64)
    return np.zeros(0, dtype=np.int64)  # a Feature with no kind set


def parse_example(record: bytes) -> dict[str, np.ndarray | list[bytes]]:
    """Decode a serialized ``tf.train.Example`` into ``{name: int64/float32 array or bytes list}``."""
    out: dict[str, np.ndarray | list[bytes]] = {}
    for field, wire, features in _fields(record):
        if field != 1 or wire != 2:
            continue
        for f, w, entry in _fields(features):
            if f != 1 or w != 2:
                continue
            key = None
            value = b""
            for ef, ew, ev in _fields(entry):
                if ef == 1:
                    key = bytes(ev).decode("utf-8")
                elif ef == 2:
                    value = ev
            if key is None:
                raise TFRecordError("feature map entry without a key")
            out[key] = _parse_feature(value)
    return out


def iter_examples(path: str | Path, verify: bool = True) -> Iterator[dict]:
    """Yield decoded ``tf.train.Example`` dicts from one TFRecord file."""
    for record in iter_records(path, verify=verify):
        try:
            yield parse_example(record)
        except TFRecordError as e:
            raise TFRecordError(f"{path}: {e}") from None
