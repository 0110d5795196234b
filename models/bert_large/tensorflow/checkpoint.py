"""Checkpoints: google-research TF1 checkpoints in, our own training checkpoints in and out.

One on-disk format for both: a TensorFlow checkpoint bundle (``<prefix>.index`` +
``<prefix>.data-*``) whose model variables carry google-research names (``bert/...``,
``cls/...``). So a google ``bert_model.ckpt`` initialises any of our models, and our
``model.ckpt-<step>`` can initialise the next phase (or be read by google's code). Our
training checkpoints add ``global_step``, the optimizer state (``_optimizer/<i>``), the
Keras RNG states (``_keras/<i>``, dropout) and an ``extra`` JSON blob, so a resumed run
continues bit-exactly.

Entry points:

- :func:`load_init_checkpoint` (google or ours; a folder means its latest checkpoint);
- :func:`save_training_checkpoint`, :func:`latest_training_checkpoint`,
  :func:`restore_training_checkpoint`;
- :func:`google_variable_map` / :func:`model_weights` (name → weight) for exports and tests.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any, Iterable

import numpy as np
import tensorflow as tf

from models.bert_large.tensorflow import compat, modeling
from models.bert_large.tensorflow.flags import bundle_problem
from models.bert_large.tensorflow.runtime import write_text_atomic

CHECKPOINT_BASENAME = "model.ckpt"
INDEX_FILE = "checkpoint"  # same text format as tf.train.CheckpointManager's
_STEP_RE = re.compile(r"^model\.ckpt-(\d+)\.index$")
_OPTIMIZER_PREFIX = "_optimizer/"
_KERAS_STATE_PREFIX = "_keras/"
_EXTRA_KEY = "_meta/extra_json"
_STEP_KEY = "global_step"


class CheckpointError(ValueError):
    """A checkpoint does not fit the model (missing variable, shape mismatch, bad file)."""


@dataclasses.dataclass(frozen=True)
class VarRef:
    """A google-named tensor: all of ``variable`` or the columns ``cols`` of its last axis."""

    name: str
    variable: Any
    cols: tuple[int, int] | None = None
    required: bool = True  # False for task heads a pretrained checkpoint does not have

    @property
    def shape(self) -> tuple[int, ...]:
        shape = tuple(int(d) for d in self.variable.shape)
        if self.cols is None:
            return shape
        return shape[:-1] + (self.cols[1] - self.cols[0],)

    def read(self) -> np.ndarray:
        value = np.asarray(self.variable.numpy())
        if self.cols is None:
            return value
        return value[..., self.cols[0]:self.cols[1]]


def _dense_refs(prefix: str, layer, required: bool = True) -> list[VarRef]:
    return [VarRef(f"{prefix}/kernel", layer.kernel, required=required),
            VarRef(f"{prefix}/bias", layer.bias, required=required)]


def _ln_refs(prefix: str, layer) -> list[VarRef]:
    return [VarRef(f"{prefix}/gamma", layer.gamma), VarRef(f"{prefix}/beta", layer.beta)]


def _bert_refs(bert: modeling.BertModel) -> list[VarRef]:
    h = bert.config.hidden_size
    emb = bert.embeddings
    refs = [
        VarRef("bert/embeddings/word_embeddings", emb.word_embeddings),
        VarRef("bert/embeddings/token_type_embeddings", emb.token_type_embeddings),
        VarRef("bert/embeddings/position_embeddings", emb.position_embeddings),
        *_ln_refs("bert/embeddings/LayerNorm", emb.layer_norm),
    ]
    for i, layer in enumerate(bert.encoder_layers):
        p = f"bert/encoder/layer_{i}"
        att = layer.attention
        for j, part in enumerate(("query", "key", "value")):
            cols = (j * h, (j + 1) * h)
            refs.append(VarRef(f"{p}/attention/self/{part}/kernel", att.qkv.kernel, cols))
            refs.append(VarRef(f"{p}/attention/self/{part}/bias", att.qkv.bias, cols))
        refs += _dense_refs(f"{p}/attention/output/dense", att.output_dense)
        refs += _ln_refs(f"{p}/attention/output/LayerNorm", att.layer_norm)
        refs += _dense_refs(f"{p}/intermediate/dense", layer.intermediate)
        refs += _dense_refs(f"{p}/output/dense", layer.output_dense)
        refs += _ln_refs(f"{p}/output/LayerNorm", layer.layer_norm)
    if bert.pooler is not None:
        refs += _dense_refs("bert/pooler/dense", bert.pooler)
    return refs


def google_variable_map(model) -> list[VarRef]:
    """Every trainable variable of ``model`` under its google-research name (builds it).

    Task heads google's pretrained checkpoints lack (``cls/squad/*`` of run_squad,
    ``output_weights``/``output_bias`` of run_classifier) are ``required=False``."""
    model.ensure_built()
    if isinstance(model, modeling.BertModel):
        refs = _bert_refs(model)
    elif isinstance(model, modeling.BertForPreTraining):
        cls = model.cls
        refs = _bert_refs(model.bert) + [
            *_dense_refs("cls/predictions/transform/dense", cls.transform),
            *_ln_refs("cls/predictions/transform/LayerNorm", cls.transform_layer_norm),
            VarRef("cls/predictions/output_bias", cls.output_bias),
            VarRef("cls/seq_relationship/output_weights", cls.seq_relationship_weights),
            VarRef("cls/seq_relationship/output_bias", cls.seq_relationship_bias),
        ]
    elif isinstance(model, modeling.BertForQuestionAnswering):
        refs = _bert_refs(model.bert) + [
            VarRef("cls/squad/output_weights", model.qa_weights, required=False),
            VarRef("cls/squad/output_bias", model.qa_bias, required=False),
        ]
    elif isinstance(model, modeling.BertForSequenceClassification):
        refs = _bert_refs(model.bert) + [
            VarRef("output_weights", model.classifier_weights, required=False),
            VarRef("output_bias", model.classifier_bias, required=False),
        ]
    else:
        raise TypeError(f"no google-research variable names for {type(model).__name__}")
    _check_covers(model, refs)
    return refs


def _check_covers(model, refs: list[VarRef]) -> None:
    mapped = {id(r.variable) for r in refs}
    unmapped = [compat.variable_path(v) for v in model.trainable_variables
                if id(v) not in mapped]
    if unmapped:  # a programming error: a new variable without a checkpoint name
        raise AssertionError(f"model variables without a checkpoint name: {unmapped}")


def model_weights(model) -> dict[str, np.ndarray]:
    """{google name: numpy value} of every model variable."""
    return {r.name: r.read() for r in google_variable_map(model)}


# ---------------------------------------------------------------------------------------------
# Loading model weights


@dataclasses.dataclass
class LoadReport:
    path: str
    loaded: list[str]
    initialized: list[str]  # model variables left as initialised (heads absent in the ckpt)
    unused: list[str]  # checkpoint tensors the model does not use (optimizer slots etc.)

    def summary(self) -> str:
        text = f"loaded {len(self.loaded)} tensors from {self.path}"
        if self.initialized:
            text += f"; initialised (not in checkpoint): {', '.join(self.initialized)}"
        unused = [n for n in self.unused if not _is_bookkeeping(n)]
        if unused:
            text += f"; unused checkpoint tensors: {', '.join(unused)}"
        return text


def _is_bookkeeping(name: str) -> bool:
    return (name.endswith(("/adam_m", "/adam_v")) or name == _STEP_KEY
            or name.startswith((_OPTIMIZER_PREFIX, _KERAS_STATE_PREFIX, "_meta/")))


def _reader(path: str):
    """A ``CheckpointReader`` for the prefix ``path``; a truncated or corrupt bundle (an
    ``.index`` cut short, ``.data-*`` shards missing or shorter than the tensors the index
    lists) is a :class:`CheckpointError` naming the prefix, before any tensor is read."""
    problem = bundle_problem(path)
    if problem:
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt: {problem}")
    try:
        reader = tf.train.load_checkpoint(path)
    except (tf.errors.NotFoundError, ValueError) as e:
        raise CheckpointError(
            f"cannot read checkpoint {path!r}: give the prefix (e.g. .../bert_model.ckpt or "
            f".../model.ckpt-1000, without .index) or a folder holding one ({_short(e)})"
        ) from None
    except tf.errors.OpError as e:  # DataLossError, "not an sstable (bad magic number)", ...
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt: cannot read "
                              f"{path}.index ({_short(e)})") from None
    needed = 0
    try:
        dtypes = reader.get_variable_to_dtype_map()
        for name, shape in reader.get_variable_to_shape_map().items():
            dtype = tf.as_dtype(dtypes[name])
            if dtype != tf.string:
                needed += int(np.prod(shape, dtype=np.int64)) * dtype.size
    except (KeyError, TypeError, ValueError):
        needed = 0
    data = [f for f in _bundle_files(path) if not f.endswith(".index")]
    have = sum(os.path.getsize(f) for f in data)
    if have < needed:
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt: its data file(s) "
            f"({', '.join(os.path.basename(f) for f in data) or 'none'}) hold {have} bytes, "
            f"the tensors in {os.path.basename(path)}.index need at least {needed}; copy the "
            "checkpoint again, or use an older one")
    return reader


def _short(err: Exception) -> str:
    text = getattr(err, "message", None) or str(err)
    return " ".join(text.split())[:300]


def read_tensor(reader, path: str, name: str):
    """``reader.get_tensor(name)``; a short or damaged data file is a CheckpointError."""
    try:
        return reader.get_tensor(name)
    except (tf.errors.OpError, IndexError, OSError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt: cannot read tensor "
                              f"{name} ({_short(e)}); copy the checkpoint again, or use an "
                              "older one") from None


def resolve_checkpoint_path(path) -> str:
    """A checkpoint prefix as is; a folder → its latest training checkpoint (or the single
    ``*.ckpt`` prefix in it, e.g. google's ``bert_model.ckpt``)."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        return path
    latest = latest_training_checkpoint(path)
    if latest:
        return latest
    prefixes = sorted({f[: -len(".index")] for f in os.listdir(path) if f.endswith(".index")})
    if len(prefixes) == 1:
        return os.path.join(path, prefixes[0])
    raise CheckpointError(
        f"folder {path} holds {len(prefixes) or 'no'} checkpoints "
        f"({', '.join(prefixes)}): pass the checkpoint prefix itself"
    )


def load_init_checkpoint(model, path) -> LoadReport:
    """Initialise ``model`` from a google-research TF1 checkpoint or one of ours.

    Every required model variable must be in the checkpoint with the right shape, or a
    :class:`CheckpointError` names it; nothing is assigned unless all of them fit."""
    path = resolve_checkpoint_path(path)
    reader = _reader(path)
    shapes = reader.get_variable_to_shape_map()
    refs = google_variable_map(model)

    problems = []
    for ref in refs:
        if ref.name not in shapes:
            if ref.required:
                problems.append(f"variable {ref.name} (shape {list(ref.shape)}) is missing")
        elif tuple(shapes[ref.name]) != ref.shape:
            problems.append(
                f"variable {ref.name}: checkpoint shape {list(shapes[ref.name])}, "
                f"model expects {list(ref.shape)}"
            )
    if problems:
        raise CheckpointError(
            f"checkpoint {path} does not fit the model ({type(model).__name__}): "
            + "; ".join(problems)
            + ". Check that --bert_config_file matches the checkpoint."
        )

    # Assemble whole variables (fused q|k|v from three tensors), then assign.
    values: dict[int, np.ndarray] = {}
    variables: dict[int, Any] = {}
    loaded, initialized = [], []
    for ref in refs:
        if ref.name not in shapes:
            initialized.append(ref.name)
            continue
        tensor = read_tensor(reader, path, ref.name)
        key = id(ref.variable)
        variables[key] = ref.variable
        if ref.cols is None:
            values[key] = tensor
        else:
            buf = values.setdefault(key, np.asarray(ref.variable.numpy()).copy())
            buf[..., ref.cols[0]:ref.cols[1]] = tensor
        loaded.append(ref.name)
    for key, variable in variables.items():
        variable.assign(values[key].astype(compat.numpy_dtype(variable)))
    used = {r.name for r in refs}
    unused = sorted(n for n in shapes if n not in used)
    return LoadReport(path=path, loaded=loaded, initialized=initialized, unused=unused)


# ---------------------------------------------------------------------------------------------
# Our training checkpoints


def _model_state_variables(model, refs: Iterable[VarRef]) -> list:
    """Variables outside the google map (Keras RNG states of dropout), in a stable order."""
    mapped = {id(r.variable) for r in refs}
    return ([v for v in model.variables if id(v) not in mapped]
            + compat.extra_state_variables(model))


def _ensure_optimizer_built(optimizer, model) -> None:
    if not compat.optimizer_built(optimizer):
        optimizer.build(model.trainable_variables)


def save_bundle(prefix: str, tensors: dict[str, Any]) -> None:
    """Write ``tensors`` (name -> array) as a TF checkpoint bundle (``prefix.index`` +
    ``prefix.data-*``), the format of google's TF1 ``tf.train.Saver``; not atomic."""
    names = sorted(tensors)
    tf.raw_ops.SaveV2(
        prefix=prefix,
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tf.convert_to_tensor(tensors[n]) for n in names],
    )


def _bundle_files(prefix: str) -> list[str]:
    folder, base = os.path.split(prefix)
    return sorted(
        os.path.join(folder, f) for f in os.listdir(folder or ".")
        if f == base + ".index" or f.startswith(base + ".data-")
    )


def _read_index(output_dir: str) -> list[str]:
    """Checkpoint basenames in the index, oldest first (latest last)."""
    try:
        with open(os.path.join(output_dir, INDEX_FILE), encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return []
    latest = re.findall(r'^model_checkpoint_path:\s*"([^"]+)"', text, re.M)
    every = re.findall(r'^all_model_checkpoint_paths:\s*"([^"]+)"', text, re.M)
    names = [os.path.basename(n) for n in every]
    if latest:
        name = os.path.basename(latest[-1])
        names = [n for n in names if n != name] + [name]
    return names


def _write_index(output_dir: str, names: list[str]) -> None:
    lines = [f'model_checkpoint_path: "{names[-1]}"']
    lines += [f'all_model_checkpoint_paths: "{n}"' for n in names]
    write_text_atomic(os.path.join(output_dir, INDEX_FILE), "\n".join(lines) + "\n")


def save_training_checkpoint(output_dir, step: int, model, optimizer=None, extra=None,
                             max_to_keep: int = 5) -> str:
    """Write ``<output_dir>/model.ckpt-<step>`` atomically; returns its prefix.

    The bundle is written under a temporary name and renamed into place, then the
    ``checkpoint`` index is replaced atomically, so a crash at any point leaves the previous
    latest checkpoint intact and listed. Older checkpoints beyond ``max_to_keep`` are removed.
    ``extra`` is any JSON-serialisable dict (e.g. the data position), returned on restore."""
    output_dir = os.fspath(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    step = int(step)
    refs = google_variable_map(model)
    tensors: dict[str, Any] = {r.name: r.read() for r in refs}
    for i, v in enumerate(_model_state_variables(model, refs)):
        tensors[f"{_KERAS_STATE_PREFIX}{i}"] = v.numpy()
    if optimizer is not None:
        _ensure_optimizer_built(optimizer, model)
        for i, v in enumerate(optimizer.variables):
            tensors[f"{_OPTIMIZER_PREFIX}{i}"] = v.numpy()
    tensors[_STEP_KEY] = np.int64(step)
    tensors[_EXTRA_KEY] = tf.constant(json.dumps(extra or {}, sort_keys=True))

    name = f"{CHECKPOINT_BASENAME}-{step}"
    final = os.path.join(output_dir, name)
    tmp = os.path.join(output_dir, f".tmp-{name}-{os.getpid()}")
    try:
        save_bundle(tmp, tensors)
        tmp_files = _bundle_files(tmp)
        # Data shards first, the .index last: a prefix is only complete with its index.
        for f in sorted(tmp_files, key=lambda p: p.endswith(".index")):
            os.replace(f, final + f[len(tmp):])
    except BaseException:
        for f in _bundle_files(tmp):
            os.remove(f)
        raise

    names = [n for n in _read_index(output_dir) if n != name] + [name]
    _write_index(output_dir, names[-max_to_keep:] if max_to_keep else names)
    if max_to_keep:
        for old in names[:-max_to_keep]:
            for f in _bundle_files(os.path.join(output_dir, old)):
                os.remove(f)
    return final


def latest_training_checkpoint(output_dir) -> str | None:
    """Prefix of the newest complete ``model.ckpt-<step>`` in ``output_dir``, else None."""
    output_dir = os.fspath(output_dir)
    if not os.path.isdir(output_dir):
        return None
    for name in reversed(_read_index(output_dir)):
        if os.path.exists(os.path.join(output_dir, name + ".index")):
            return os.path.join(output_dir, name)
    # No (usable) index: take the highest step whose .index exists.
    steps = [int(m.group(1)) for f in os.listdir(output_dir) if (m := _STEP_RE.match(f))]
    if not steps:
        return None
    return os.path.join(output_dir, f"{CHECKPOINT_BASENAME}-{max(steps)}")


def restore_training_checkpoint(path, model, optimizer=None) -> tuple[int, dict]:
    """Restore model (+ RNG states) and optimizer state from one of our checkpoints (a
    prefix, or a folder → its latest); returns ``(step, extra)``."""
    path = resolve_checkpoint_path(path)
    load_init_checkpoint(model, path)  # raises on any missing/mismatched model variable
    reader = _reader(path)
    shapes = reader.get_variable_to_shape_map()
    if _EXTRA_KEY not in shapes or _STEP_KEY not in shapes:
        raise CheckpointError(
            f"{path} is not a training checkpoint written by save_training_checkpoint (no "
            f"{_EXTRA_KEY}): use it with load_init_checkpoint (--init_checkpoint) instead"
        )
    refs = google_variable_map(model)
    for i, v in enumerate(_model_state_variables(model, refs)):
        key = f"{_KERAS_STATE_PREFIX}{i}"
        if key in shapes and tuple(shapes[key]) == tuple(v.shape):
            v.assign(read_tensor(reader, path, key))
    if optimizer is not None:
        _ensure_optimizer_built(optimizer, model)
        saved = sorted(
            (int(n[len(_OPTIMIZER_PREFIX):]) for n in shapes if n.startswith(_OPTIMIZER_PREFIX))
        )
        if len(saved) != len(optimizer.variables):
            raise CheckpointError(
                f"checkpoint {path} holds {len(saved)} optimizer variables, the optimizer has "
                f"{len(optimizer.variables)}: resume with the same optimizer (--optimizer) and "
                "model as the run that wrote it"
            )
        for i, v in enumerate(optimizer.variables):
            key = f"{_OPTIMIZER_PREFIX}{i}"
            if tuple(shapes[key]) != tuple(v.shape):
                raise CheckpointError(
                    f"optimizer variable {compat.variable_path(v)}: checkpoint {path} has shape "
                    f"{list(shapes[key])}, expected {list(v.shape)}"
                )
            v.assign(read_tensor(reader, path, key))
    step = int(read_tensor(reader, path, _STEP_KEY))
    extra_raw = read_tensor(reader, path, _EXTRA_KEY)
    if isinstance(extra_raw, np.ndarray):
        extra_raw = extra_raw.item()
    extra = json.loads(extra_raw.decode("utf-8") if isinstance(extra_raw, bytes) else extra_raw)
    return step, extra
