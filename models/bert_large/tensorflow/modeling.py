"""BERT for TensorFlow 2 / Keras 3, numerically equivalent to google-research/bert.

Any size from a google-research ``bert_config.json`` (tiny for tests, BERT-Large 24x1024x16).

Inputs are a dict of int32 tensors ``input_ids``, ``input_mask``, ``segment_ids`` [B, S]
(+ ``masked_lm_positions`` [B, P] for pretraining); other keys are ignored, so a whole
feature dict can be passed. Every model returns a dict; logits are always float32.

Precision: build under ``precision.set_precision("bf16")`` (or pass ``dtype="mixed_bfloat16"``)
for bf16 compute with float32 variables. Softmax, LayerNorm, logits and losses stay float32,
and the residual stream between layers (LayerNorm outputs) is float32.

Layout note: the query/key/value projections of a layer are one fused kernel [H, 3H] (one
matmul instead of three); ``checkpoint.py`` maps them to/from google's separate
``query``/``key``/``value`` variables.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import keras
import tensorflow as tf

from models.bert_large.tensorflow import compat
from models.bert_large.config import BertConfig  # also re-exported: modeling.BertConfig
from models.bert_large.tensorflow.precision import (  # noqa: F401  (re-exported)
    current_precision,
    policy_name,
    set_precision,
)

INPUT_KEYS = ("input_ids", "input_mask", "segment_ids")


def gelu(x):
    """Exact (erf) GELU, as google-research BERT."""
    return 0.5 * x * (1.0 + tf.math.erf(x / tf.cast(math.sqrt(2.0), x.dtype)))


def gelu_tanh(x):
    """tanh approximation of GELU (HF ``gelu_new``)."""
    return keras.activations.gelu(x, approximate=True)


_ACTIVATIONS = {  # keys: config.HIDDEN_ACTS
    "gelu": gelu,
    "gelu_new": gelu_tanh,
    "gelu_pytorch_tanh": gelu_tanh,
    "linear": lambda x: x,
    "relu": tf.nn.relu,
    "silu": tf.nn.silu,
    "swish": tf.nn.silu,
    "tanh": tf.tanh,
}


def get_activation(name: str):
    try:
        return _ACTIVATIONS[name.lower()]
    except KeyError:
        raise ValueError(
            f"unsupported hidden_act {name!r} in bert_config: use one of "
            f"{', '.join(sorted(_ACTIVATIONS))}"
        ) from None


def _init(config: BertConfig):
    return keras.initializers.TruncatedNormal(stddev=config.initializer_range)


def _layer_norm(name: str, epsilon: float) -> keras.layers.LayerNormalization:
    # Always float32 (inputs are cast up); epsilon from the config (google's 1e-12 by default).
    return keras.layers.LayerNormalization(epsilon=epsilon, dtype="float32", name=name)


def _dense(config: BertConfig, units: int, name: str, policy, activation=None):
    return keras.layers.Dense(
        units, activation=activation, kernel_initializer=_init(config), name=name, dtype=policy
    )


def _weight(layer, name: str, shape, initializer):
    # autocast=False: under mixed_bfloat16, Keras would hand these out as bf16 inside call();
    # the code casts them explicitly, so biases added to float32 logits stay float32.
    return compat.add_weight(layer, name, shape, initializer, autocast=False)


class BertEmbeddings(keras.layers.Layer):
    """word + token type + position embeddings, LayerNorm, dropout. Output float32 [B,S,H]."""

    def __init__(self, config: BertConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.layer_norm = _layer_norm("LayerNorm", config.layer_norm_eps)
        self.dropout = compat.dropout(config.hidden_dropout_prob, dtype="float32")

    def build(self, input_shape=None):
        c = self.config
        h, init = c.hidden_size, _init(c)
        self.word_embeddings = _weight(self, "word_embeddings", (c.vocab_size, h), init)
        self.token_type_embeddings = _weight(
            self, "token_type_embeddings", (c.type_vocab_size, h),
            compat.fresh_initializer(init),
        )
        self.position_embeddings = _weight(
            self, "position_embeddings", (c.max_position_embeddings, h),
            compat.fresh_initializer(init),
        )
        compat.build(self.layer_norm, (None, None, c.hidden_size))
        self.built = True

    def call(self, input_ids, segment_ids, positions=None, training=None):
        """``positions`` [B,S]: each token's position in its own sequence (packed rows, where
        it restarts at 0 for every sequence); None: 0..S-1 for every row."""
        static_len = input_ids.shape[1]
        if static_len is not None and static_len > self.config.max_position_embeddings:
            raise ValueError(
                f"sequence length {static_len} exceeds max_position_embeddings "
                f"({self.config.max_position_embeddings}) of the BERT config: lower "
                "--max_seq_length"
            )
        seq_len = tf.shape(input_ids)[1]
        # Gather from the float32 tables; the sum goes straight into a float32 LayerNorm.
        words = tf.gather(self.word_embeddings, input_ids)
        types = tf.gather(self.token_type_embeddings, segment_ids)
        if positions is None:
            x = words + types + tf.convert_to_tensor(self.position_embeddings)[:seq_len][tf.newaxis]
        else:
            x = words + types + tf.gather(self.position_embeddings, positions)
        x = self.layer_norm(x)
        return self.dropout(x, training=training)


class BertSelfAttention(keras.layers.Layer):
    """Multi-head self-attention (fused QKV) + output projection + residual + LayerNorm."""

    def __init__(self, config: BertConfig, **kwargs):
        super().__init__(**kwargs)
        # Keep float32 inputs (residual stream, attention bias) as they are.
        compat.keep_input_dtypes(self)
        self.config = config
        h = config.hidden_size
        self.qkv = _dense(config, 3 * h, "qkv", self.dtype_policy)  # kernel [H, 3H] = q|k|v
        self.output_dense = _dense(config, h, "output_dense", self.dtype_policy)
        self.attention_dropout = compat.dropout(
            config.attention_probs_dropout_prob, dtype=self.dtype_policy
        )
        self.output_dropout = compat.dropout(
            config.hidden_dropout_prob, dtype=self.dtype_policy
        )
        self.layer_norm = _layer_norm("LayerNorm", config.layer_norm_eps)

    def build(self, input_shape=None):
        h = self.config.hidden_size
        compat.build(self.qkv, (None, None, h))
        compat.build(self.output_dense, (None, None, h))
        compat.build(self.layer_norm, (None, None, h))
        self.built = True

    def call(self, hidden, attention_bias, training=None):
        c = self.config
        n, d = c.num_attention_heads, c.head_size
        batch, seq = tf.shape(hidden)[0], tf.shape(hidden)[1]
        qkv = self.qkv(hidden)  # [B, S, 3H]
        qkv = tf.reshape(qkv, [batch, seq, 3, n, d])
        qkv = tf.transpose(qkv, [2, 0, 3, 1, 4])  # [3, B, N, S, D]
        # unstack, not qkv[0], qkv[1], qkv[2]: the gradient is one stack instead of three
        # zero-filled [3, B, N, S, D] StridedSliceGrads summed (tf_step_profile.py).
        q, k, v = tf.unstack(qkv, num=3, axis=0)
        q = q * tf.cast(1.0 / math.sqrt(d), q.dtype)
        scores = tf.matmul(q, k, transpose_b=True)  # [B, N, S, S]
        # Softmax in float32 whatever the compute dtype.
        probs = tf.nn.softmax(tf.cast(scores, tf.float32) + attention_bias, axis=-1)
        probs = self.attention_dropout(tf.cast(probs, self.compute_dtype), training=training)
        context = tf.matmul(probs, v)  # [B, N, S, D]
        context = tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [batch, seq, n * d])
        out = self.output_dropout(self.output_dense(context), training=training)
        return self.layer_norm(tf.cast(hidden, tf.float32) + tf.cast(out, tf.float32))


class BertLayer(keras.layers.Layer):
    """One transformer block: self-attention, intermediate (gelu), output, LayerNorm."""

    def __init__(self, config: BertConfig, **kwargs):
        super().__init__(**kwargs)
        # Keep float32 inputs (residual stream, attention bias) as they are.
        compat.keep_input_dtypes(self)
        self.config = config
        self.attention = BertSelfAttention(config, name="attention", dtype=self.dtype_policy)
        self.intermediate = _dense(
            config, config.intermediate_size, "intermediate", self.dtype_policy,
            activation=get_activation(config.hidden_act),
        )
        self.output_dense = _dense(config, config.hidden_size, "output_dense", self.dtype_policy)
        self.output_dropout = compat.dropout(
            config.hidden_dropout_prob, dtype=self.dtype_policy
        )
        self.layer_norm = _layer_norm("LayerNorm", config.layer_norm_eps)

    def build(self, input_shape=None):
        c = self.config
        compat.build(self.attention)
        compat.build(self.intermediate, (None, None, c.hidden_size))
        compat.build(self.output_dense, (None, None, c.intermediate_size))
        compat.build(self.layer_norm, (None, None, c.hidden_size))
        self.built = True

    def call(self, hidden, attention_bias, training=None):
        attn = self.attention(hidden, attention_bias, training=training)  # float32
        inter = self.intermediate(attn)
        out = self.output_dropout(self.output_dense(inter), training=training)
        return self.layer_norm(attn + tf.cast(out, tf.float32))


def attention_bias_from_mask(input_mask) -> tf.Tensor:
    """[B,S] 1/0 mask → additive float32 bias [B,1,1,S]: 0 to attend, -10000 to ignore."""
    mask = tf.cast(input_mask, tf.float32)[:, tf.newaxis, tf.newaxis, :]
    return (1.0 - mask) * -10000.0


def packed_attention_bias(input_mask) -> tf.Tensor:
    """Packed rows (docs/packing.md): ``input_mask`` [B,S] holds each token's 1-based sequence
    index (0: padding). Additive float32 bias [B,1,S,S]: a token attends only to the tokens of
    its own sequence (block diagonal: no cross-contamination between packed sequences);
    padding attends to padding, so no row is all masked."""
    mask = tf.cast(input_mask, tf.int32)
    same = tf.equal(mask[:, :, tf.newaxis], mask[:, tf.newaxis, :])
    return (1.0 - tf.cast(same, tf.float32))[:, tf.newaxis] * -10000.0


def is_packed(inputs: Mapping[str, Any]) -> bool:
    """Packed pretraining rows carry ``positions`` (docs/packing.md)."""
    return "positions" in inputs


def _get(inputs: Mapping[str, Any], key: str):
    try:
        return tf.cast(inputs[key], tf.int32)
    except KeyError:
        raise KeyError(
            f"BERT inputs need the key {key!r} (have: {', '.join(sorted(inputs))})"
        ) from None


class _BertBase(keras.Model):
    """Shared helpers: dummy build, config access."""

    config: BertConfig

    def dummy_inputs(self, batch_size: int = 1, seq_length: int = 8) -> dict:
        seq_length = min(seq_length, self.config.max_position_embeddings)
        ones = tf.ones([batch_size, seq_length], tf.int32)
        inputs = {"input_ids": ones, "input_mask": ones, "segment_ids": tf.zeros_like(ones)}
        if getattr(self, "needs_masked_lm_positions", False):
            inputs["masked_lm_positions"] = tf.zeros([batch_size, 2], tf.int32)
        return inputs

    def ensure_built(self) -> "_BertBase":
        """Create all variables (a forward pass on dummy inputs) if not done yet."""
        if not self.built or not self.weights:
            self(self.dummy_inputs(), training=False)
        return self


class BertModel(_BertBase):
    """Embeddings + encoder (+ pooler). Returns ``sequence_output`` [B,S,H] float32 and
    ``pooled_output`` [B,H] float32 (absent when ``add_pooling_layer=False``)."""

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True, name="bert", **kwargs):
        super().__init__(name=name, **kwargs)
        self.config = config
        self.add_pooling_layer = add_pooling_layer
        # Always float32: gathers from the float32 tables feed a float32 LayerNorm.
        self.embeddings = BertEmbeddings(config, name="embeddings", dtype="float32")
        self.encoder_layers = [
            BertLayer(config, name=f"layer_{i}", dtype=self.dtype_policy)
            for i in range(config.num_hidden_layers)
        ]
        self.pooler = (
            _dense(config, config.hidden_size, "pooler", self.dtype_policy, activation="tanh")
            if add_pooling_layer else None
        )

    def build(self, input_shape=None):
        compat.build(self.embeddings)
        for layer in self.encoder_layers:
            compat.build(layer)
        if self.pooler is not None:
            compat.build(self.pooler, (None, self.config.hidden_size))
        self.built = True

    def call(self, inputs, training=None):
        input_ids = _get(inputs, "input_ids")
        input_mask = _get(inputs, "input_mask")
        segment_ids = _get(inputs, "segment_ids")
        packed = is_packed(inputs)
        positions = _get(inputs, "positions") if packed else None
        hidden = self.embeddings(input_ids, segment_ids, positions, training=training)
        bias = packed_attention_bias(input_mask) if packed else attention_bias_from_mask(input_mask)
        for layer in self.encoder_layers:
            hidden = layer(hidden, bias, training=training)
        outputs = {"sequence_output": hidden}
        if self.pooler is not None:
            # Packed rows: every sequence's [CLS] ([B,K,H]); else the row's first token [B,H].
            first = (tf.gather(hidden, _get(inputs, "next_sentence_positions"), batch_dims=1)
                     if packed else hidden[:, 0])
            outputs["pooled_output"] = tf.cast(self.pooler(first), tf.float32)
        return outputs


class BertPretrainingHeads(keras.layers.Layer):
    """MLM (transform + decoder tied to the word embeddings + bias) and NSP heads."""

    def __init__(self, config: BertConfig, word_embeddings_layer: BertEmbeddings, **kwargs):
        super().__init__(**kwargs)
        # Keep float32 inputs (residual stream, attention bias) as they are.
        compat.keep_input_dtypes(self)
        self.config = config
        self._embeddings = word_embeddings_layer
        self.transform = _dense(
            config, config.hidden_size, "transform", self.dtype_policy,
            activation=get_activation(config.hidden_act),
        )
        self.transform_layer_norm = _layer_norm("transform_LayerNorm", config.layer_norm_eps)

    def build(self, input_shape=None):
        c = self.config
        compat.build(self.transform, (None, None, c.hidden_size))
        compat.build(self.transform_layer_norm, (None, None, c.hidden_size))
        self.output_bias = _weight(self, "output_bias", (c.vocab_size,), "zeros")
        # google layout: [2, H] (transposed w.r.t. a Dense kernel).
        self.seq_relationship_weights = _weight(
            self, "seq_relationship_output_weights", (2, c.hidden_size), _init(c)
        )
        self.seq_relationship_bias = _weight(self, "seq_relationship_output_bias", (2,), "zeros")
        self.built = True

    def call(self, sequence_output, pooled_output, masked_lm_positions):
        # Only the masked positions go through the (vocab-sized) decoder.
        picked = tf.gather(sequence_output, masked_lm_positions, batch_dims=1)  # [B, P, H]
        x = self.transform_layer_norm(self.transform(picked))
        table = tf.cast(self._embeddings.word_embeddings, self.compute_dtype)  # [V, H]
        # One 2-D matmul (not a batched one): its gradient for the table is one matmul too.
        batch, positions = tf.shape(picked)[0], tf.shape(picked)[1]
        flat = tf.reshape(tf.cast(x, self.compute_dtype), [-1, self.config.hidden_size])
        logits = tf.matmul(flat, table, transpose_b=True)  # [B*P, V]
        logits = tf.reshape(logits, [batch, positions, self.config.vocab_size])
        mlm_logits = tf.cast(logits, tf.float32) + tf.cast(self.output_bias, tf.float32)
        # pooled_output: [B,H], or [B,K,H] for packed rows (one [CLS] per sequence)
        nsp_logits = tf.einsum(
            "...h,ch->...c", tf.cast(pooled_output, self.compute_dtype),
            tf.cast(self.seq_relationship_weights, self.compute_dtype),
        )
        nsp_logits = tf.cast(nsp_logits, tf.float32) + tf.cast(
            self.seq_relationship_bias, tf.float32
        )
        return mlm_logits, nsp_logits


class BertForPreTraining(_BertBase):
    """Returns ``masked_lm_logits`` [B,P,V], ``next_sentence_logits`` [B,2] (float32),
    plus ``sequence_output`` and ``pooled_output``. Needs ``masked_lm_positions`` [B,P].
    Packed rows (``positions`` and ``next_sentence_positions`` [B,K] among the inputs,
    docs/packing.md): attention within each sequence, its own positions, and
    ``next_sentence_logits`` [B,K,2] from each sequence's [CLS]."""

    needs_masked_lm_positions = True

    def __init__(self, config: BertConfig, name="bert_for_pretraining", **kwargs):
        super().__init__(name=name, **kwargs)
        self.config = config
        self.bert = BertModel(config, name="bert", dtype=self.dtype_policy)
        self.cls = BertPretrainingHeads(
            config, self.bert.embeddings, name="cls", dtype=self.dtype_policy
        )

    def build(self, input_shape=None):
        compat.build(self.bert)
        compat.build(self.cls)
        self.built = True

    def call(self, inputs, training=None):
        out = self.bert(inputs, training=training)
        mlm, nsp = self.cls(
            out["sequence_output"], out["pooled_output"], _get(inputs, "masked_lm_positions")
        )
        return dict(out, masked_lm_logits=mlm, next_sentence_logits=nsp)


class BertForQuestionAnswering(_BertBase):
    """Returns ``start_logits``, ``end_logits`` [B,S] float32 (google's ``cls/squad`` head)."""

    def __init__(self, config: BertConfig, name="bert_for_question_answering", **kwargs):
        super().__init__(name=name, **kwargs)
        self.config = config
        # No pooler: the span head does not use it (and it would get no gradient).
        self.bert = BertModel(config, add_pooling_layer=False, name="bert", dtype=self.dtype_policy)

    def build(self, input_shape=None):
        c = self.config
        compat.build(self.bert)
        self.qa_weights = _weight(self, "squad_output_weights", (2, c.hidden_size), _init(c))
        self.qa_bias = _weight(self, "squad_output_bias", (2,), "zeros")
        self.built = True

    def call(self, inputs, training=None):
        seq = self.bert(inputs, training=training)["sequence_output"]
        logits = tf.einsum(
            "bsh,kh->bsk",
            tf.cast(seq, self.compute_dtype), tf.cast(self.qa_weights, self.compute_dtype),
        )
        logits = tf.cast(logits, tf.float32) + tf.cast(self.qa_bias, tf.float32)  # [B,S,2]
        return {"start_logits": logits[..., 0], "end_logits": logits[..., 1],
                "sequence_output": seq}


class BertForSequenceClassification(_BertBase):
    """Returns ``logits`` [B,num_labels] float32: dropout on the pooled output + dense
    (google run_classifier's ``output_weights`` [num_labels,H] / ``output_bias``)."""

    def __init__(self, config: BertConfig, num_labels: int, name="bert_for_classification",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        if num_labels < 1:
            raise ValueError(f"num_labels must be >= 1, got {num_labels}")
        self.config = config
        self.num_labels = num_labels
        self.bert = BertModel(config, name="bert", dtype=self.dtype_policy)
        self.dropout = compat.dropout(config.hidden_dropout_prob, dtype="float32")

    def build(self, input_shape=None):
        c = self.config
        compat.build(self.bert)
        self.classifier_weights = _weight(
            self, "output_weights", (self.num_labels, c.hidden_size), _init(c)
        )
        self.classifier_bias = _weight(self, "output_bias", (self.num_labels,), "zeros")
        self.built = True

    def call(self, inputs, training=None):
        pooled = self.bert(inputs, training=training)["pooled_output"]
        pooled = self.dropout(pooled, training=training)
        logits = tf.matmul(
            tf.cast(pooled, self.compute_dtype),
            tf.cast(self.classifier_weights, self.compute_dtype), transpose_b=True,
        )
        logits = tf.cast(logits, tf.float32) + tf.cast(self.classifier_bias, tf.float32)
        return {"logits": logits, "pooled_output": pooled}


# ---------------------------------------------------------------------------------------------
# Losses (float32, mean over the batch), matching google-research BERT.


def masked_lm_loss(masked_lm_logits, masked_lm_ids, masked_lm_weights):
    """Weighted mean cross-entropy over masked positions ([B,P,V], [B,P], [B,P])."""
    log_probs = tf.nn.log_softmax(tf.cast(masked_lm_logits, tf.float32), axis=-1)
    ids = tf.cast(masked_lm_ids, tf.int32)
    weights = tf.cast(masked_lm_weights, tf.float32)
    nll = -tf.gather(log_probs, ids, batch_dims=2)  # [B, P]
    return tf.reduce_sum(nll * weights) / (tf.reduce_sum(weights) + 1e-5)


def sparse_cross_entropy(logits, labels):
    """Mean cross-entropy of integer ``labels`` [B] under ``logits`` [B,K]."""
    return tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.cast(labels, tf.int32), logits=tf.cast(logits, tf.float32)
        )
    )


def pretraining_loss(outputs, masked_lm_ids, masked_lm_weights, next_sentence_labels):
    """MLM + NSP loss from a :class:`BertForPreTraining` output dict."""
    mlm = masked_lm_loss(outputs["masked_lm_logits"], masked_lm_ids, masked_lm_weights)
    nsp = sparse_cross_entropy(
        outputs["next_sentence_logits"], tf.reshape(next_sentence_labels, [-1])
    )
    return mlm + nsp


def squad_loss(outputs, start_positions, end_positions):
    """(start CE + end CE) / 2 from a :class:`BertForQuestionAnswering` output dict."""
    start = sparse_cross_entropy(outputs["start_logits"], tf.reshape(start_positions, [-1]))
    end = sparse_cross_entropy(outputs["end_logits"], tf.reshape(end_positions, [-1]))
    return (start + end) / 2.0


def classification_loss(outputs, label_ids):
    """Cross-entropy from a :class:`BertForSequenceClassification` output dict."""
    return sparse_cross_entropy(outputs["logits"], tf.reshape(label_ids, [-1]))
