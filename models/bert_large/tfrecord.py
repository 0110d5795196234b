"""TFRecord files of ``tf.train.Example`` protos, read and written without TensorFlow or protobuf.

The one owner of TFRecord framing and CRC32C in the project (numpy + standard library; every
BERT package ships it): the PyTorch reader (``pytorch/tfrecord_reader.py``) re-exports the
reading half, the TensorFlow data pipeline (``tensorflow/pretraining_data.py``) checks record
headers with :func:`masked_crc32c`, and the packer (``packing.py``) writes with
:class:`TFRecordWriter` / :func:`encode_examples`.

* TFRecord framing: ``uint64 length | uint32 masked_crc32c(length) | data |
  uint32 masked_crc32c(data)``, all little-endian. CRCs are verified by default when reading; a
  length beyond what the rest of the file holds is refused before anything is allocated.
* The protobuf wire format of ``Example{Features{map<string, Feature>}}`` where a ``Feature``
  holds a ``BytesList`` (1), ``FloatList`` (2) or ``Int64List`` (3). Reading accepts packed and
  unpacked repeated fields. Writing emits what ``tf.train.Example.SerializeToString(
  deterministic=True)`` emits: map entries sorted by key, packed int64 varints and packed
  little-endian float32, an empty list as an empty ``Int64List``/``FloatList`` (so the bytes are
  identical to TensorFlow's; tests/packing checks it).

CRC32C uses the ``crc32c`` package when it is importable (C speed); otherwise a numpy version
that looks up each byte's contribution in a per-position table (CRC is linear, so a record's CRC
is the XOR of its bytes' contributions: a few vectorised operations per 2 KiB), and a plain
table-driven loop for short inputs.
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np

from models.common.file_kinds import file_kind

__all__ = [
    "TFRecordError",
    "crc32c",
    "masked_crc32c",
    "frame_record",
    "iter_records",
    "TFRecordWriter",
    "write_tfrecord",
    "encode_example",
    "encode_examples",
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


_CHUNK = 2048          # bytes per row of the position table (2 MiB of uint32, built on first use)
_NUMPY_MIN = 96        # below this the plain loop is faster than the numpy calls
_POSITION_TABLE: np.ndarray | None = None
_REVERSED = np.arange(_CHUNK - 1, -1, -1)


def _position_table() -> np.ndarray:
    """``T[d, b]``: the CRC register (initial value 0) after byte ``b`` followed by ``d`` zero
    bytes, i.e. byte ``b``'s contribution when ``d`` bytes follow it."""
    global _POSITION_TABLE
    if _POSITION_TABLE is None:
        table = np.empty((_CHUNK, 256), dtype=np.uint32)
        table[0] = np.asarray(_TABLE, dtype=np.uint32)
        base = table[0]
        for d in range(1, _CHUNK):
            prev = table[d - 1]
            table[d] = base[prev & 0xFF] ^ (prev >> 8)
        _POSITION_TABLE = table
    return _POSITION_TABLE


def _crc32c_numpy(data: bytes) -> int:
    table = _position_table()
    b = np.frombuffer(data, dtype=np.uint8)
    pad = (-b.size) % _CHUNK  # leading zero bytes contribute nothing to a register that starts at 0
    buf = np.zeros(pad + b.size, dtype=np.uint8)
    buf[pad:] = b
    # the initial register 0xFFFFFFFF acts as the first 4 data bytes XORed with 0xFF
    buf[pad:pad + 4] ^= 0xFF
    rows = buf.reshape(-1, _CHUNK)
    parts = np.bitwise_xor.reduce(table[_REVERSED, rows], axis=1)
    crc = 0
    for part in parts.tolist():  # register after a full chunk: shift the previous one through it
        if crc:
            crc = (int(table[_CHUNK - 1, crc & 0xFF]) ^ int(table[_CHUNK - 2, (crc >> 8) & 0xFF])
                   ^ int(table[_CHUNK - 3, (crc >> 16) & 0xFF]) ^ int(table[_CHUNK - 4, crc >> 24]))
        crc ^= part
    return crc ^ 0xFFFFFFFF


try:  # the C implementation; without it, numpy (long data) and the plain loop (short data)
    import crc32c as _crc32c_mod

    def crc32c(data: bytes) -> int:
        """CRC32C (Castagnoli) of ``data``."""
        return _crc32c_mod.crc32c(data)

except ImportError:  # pragma: no cover - depends on the environment

    def crc32c(data: bytes) -> int:
        """CRC32C (Castagnoli) of ``data``."""
        return _crc32c_numpy(data) if len(data) >= _NUMPY_MIN else _crc32c_py(data)


def masked_crc32c(data: bytes) -> int:
    """The CRC TFRecord stores: rotated right by 15 bits plus a constant."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# --------------------------------------------------------------------------- framing

def frame_record(data: bytes) -> bytes:
    """One TFRecord: header (length + its masked CRC), ``data``, footer (masked CRC of data)."""
    length = struct.pack("<Q", len(data))
    return (length + struct.pack("<I", masked_crc32c(length)) + data
            + struct.pack("<I", masked_crc32c(data)))


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


class TFRecordWriter:
    """Write framed records to ``path``. With ``atomic`` (the default) the records go to a hidden
    temporary name beside ``path`` (``.<name>.tmp<pid>``), renamed to ``path`` by a successful
    :meth:`close`; leaving a ``with`` block by an exception removes it instead, so ``path`` is
    never a half-written file."""

    def __init__(self, path: str | Path, atomic: bool = True):
        self.path = Path(path)
        self.tmp_path = (self.path.with_name(f".{self.path.name}.tmp{os.getpid()}") if atomic
                         else self.path)
        self._file = open(self.tmp_path, "wb")
        self.count = 0

    def write(self, data: bytes) -> None:
        self._file.write(frame_record(data))
        self.count += 1

    def close(self) -> None:
        if self._file.closed:
            return
        self._file.close()
        if self.tmp_path != self.path:
            os.replace(self.tmp_path, self.path)

    def discard(self) -> None:
        """Close and remove what was written (the temporary file, or ``path`` when not atomic)."""
        self._file.close()
        try:
            os.unlink(self.tmp_path)
        except FileNotFoundError:
            pass

    def __enter__(self) -> "TFRecordWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()


# --------------------------------------------------------------------------- protobuf: encode

def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_VARINT_LIMITS = np.array([1 << (7 * k) for k in range(1, 10)], dtype=np.uint64)
_BLOCK = 1 << 18  # values encoded per vectorised step (bounds the temporary arrays)


def _varint_rows(values: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Packed varints of a 2-D int array: (all rows' bytes concatenated, byte count per row)."""
    v = np.ascontiguousarray(values, dtype=np.int64).view(np.uint64)
    flat = v.reshape(-1)
    nbytes = (np.searchsorted(_VARINT_LIMITS, flat, side="right") + 1).astype(np.int64)
    chunks = []
    for start in range(0, flat.size, _BLOCK):
        part, nb = flat[start:start + _BLOCK], nbytes[start:start + _BLOCK]
        width = int(nb.max()) if nb.size else 1
        k = np.arange(width, dtype=np.uint64)
        groups = (part[:, None] >> (np.uint64(7) * k)) & np.uint64(0x7F)
        cont = k[None, :] < (nb[:, None] - 1).astype(np.uint64)
        encoded = (groups | (cont.astype(np.uint64) << np.uint64(7))).astype(np.uint8)
        chunks.append(encoded[k[None, :] < nb[:, None].astype(np.uint64)].tobytes())
    return b"".join(chunks), nbytes.reshape(v.shape).sum(axis=-1)


def _kind_of(values) -> str:
    if isinstance(values, np.ndarray):
        if values.dtype.kind in "iub":
            return "int64"
        if values.dtype.kind == "f":
            return "float"
        if values.dtype.kind == "S" or values.dtype == object:
            return "bytes"
        raise TypeError(f"unsupported feature dtype {values.dtype}")
    values = list(values)
    if not values:
        return "int64"
    if all(isinstance(v, (bytes, bytearray, memoryview)) for v in values):
        return "bytes"
    if any(isinstance(v, (float, np.floating)) for v in values):
        return "float"
    return "int64"


def encode_examples(features: Mapping[str, object], rows: int | None = None) -> list[bytes]:
    """Serialize ``rows`` ``tf.train.Example`` protos at once, feature by feature vectorised.

    ``features`` maps a name to a 2-D array ``[rows, width]`` (integer dtype → ``Int64List``,
    float dtype → ``FloatList``, one list of ``width`` values per row) or to a Python list of
    ``rows`` lists of bytes (``BytesList``). The bytes equal TensorFlow's
    ``SerializeToString(deterministic=True)`` for the same values."""
    names = sorted(features)  # deterministic serialization orders map entries by key
    columns: list[list[bytes]] = []
    for name in names:
        value = features[name]
        key = b"\x0a" + _varint(len(name.encode())) + name.encode()
        if isinstance(value, list):  # BytesList rows
            n = len(value)
            payloads = []
            for row in value:
                inner = b"".join(b"\x0a" + _varint(len(x)) + bytes(x) for x in row)
                payloads.append(b"\x0a" + _varint(len(inner)) + inner)  # BytesList in field 1
        else:
            arr = np.asarray(value)
            if arr.ndim != 2:
                raise ValueError(f"feature {name!r}: expected a [rows, width] array, got shape "
                                 f"{arr.shape}")
            n, width = arr.shape
            kind = _kind_of(arr)
            tag = b"\x1a" if kind == "int64" else b"\x12"
            if width == 0:
                payloads = [tag + b"\x00"] * n
            elif kind == "float":
                raw = np.ascontiguousarray(arr, dtype="<f4").tobytes()
                size = 4 * width
                head = tag + _varint(size + 1 + len(_varint(size))) + b"\x0a" + _varint(size)
                payloads = [head + raw[i * size:(i + 1) * size] for i in range(n)]
            else:
                raw, counts = _varint_rows(arr)
                payloads = []
                pos = 0
                for c in counts.tolist():
                    inner = b"\x0a" + _varint(c) + raw[pos:pos + c]
                    payloads.append(tag + _varint(len(inner)) + inner)
                    pos += c
        if rows is None:
            rows = n
        elif n != rows:
            raise ValueError(f"feature {name!r} has {n} rows, the others {rows}")
        columns.append([b"\x0a" + _varint(len(key) + 1 + len(_varint(len(p))) + len(p)) + key
                        + b"\x12" + _varint(len(p)) + p for p in payloads])
    out = []
    for i in range(rows or 0):
        entries = b"".join(col[i] for col in columns)
        out.append(b"\x0a" + _varint(len(entries)) + entries)
    return out


def encode_example(features: Mapping[str, object]) -> bytes:
    """Serialize one ``tf.train.Example``: ``{name: values}`` where values is a list or 1-D array
    of ints (``Int64List``), floats (``FloatList``) or bytes (``BytesList``). An empty list is an
    ``Int64List``; pass ``np.zeros(0, np.float32)`` for an empty ``FloatList``."""
    batch: dict[str, object] = {}
    for name, values in features.items():
        kind = _kind_of(values)
        if kind == "bytes":
            batch[name] = [[bytes(v) for v in values]]
        else:
            arr = np.asarray(values, dtype=np.float32 if kind == "float" else np.int64)
            batch[name] = arr.reshape(1, -1)
    return encode_examples(batch, rows=1)[0]


# --------------------------------------------------------------------------- protobuf: decode

def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
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
        key, pos = _read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos)
        elif wire == 2:
            size, pos = _read_varint(buf, pos)
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


def write_tfrecord(path: str | Path, records: Iterable[bytes]) -> int:
    """Write ``records`` (serialized payloads) to ``path`` atomically; returns the count."""
    with TFRecordWriter(path) as writer:
        for data in records:
            writer.write(data)
    return writer.count

