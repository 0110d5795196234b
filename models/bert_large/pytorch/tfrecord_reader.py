"""Read TFRecord files of `tf.train.Example` protos without TensorFlow or protobuf.

The framing, CRC32C and protobuf decoding live in :mod:`models.bert_large.tfrecord` (the one
owner of TFRecord handling in the project, shared with the TensorFlow pipeline and the packer);
this module keeps the PyTorch code's import path and names.
"""

from __future__ import annotations

from models.bert_large.tfrecord import (  # noqa: F401  (re-exported)
    TFRecordError,
    _crc32c_py,
    crc32c,
    iter_examples,
    iter_records,
    masked_crc32c,
    parse_example,
)

__all__ = [
    "TFRecordError",
    "crc32c",
    "masked_crc32c",
    "iter_records",
    "parse_example",
    "iter_examples",
]
