"""Packed rows (docs/packing.md) in the TF BERT: the same sequences packed and unpacked give
the same per-sequence MLM and NSP losses and the same gradients (fp32), so packing changes
the speed of pretraining, not what it learns."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from models.bert_large.tensorflow import modeling  # noqa: E402
from models.bert_large.tensorflow import pretraining_loop as loop  # noqa: E402
from tests import packed_batches as pb  # noqa: E402
from tests.tf.conftest import make_config_dict  # noqa: E402


@pytest.fixture(scope="module")
def model():
    config = modeling.BertConfig.from_dict(make_config_dict(max_position_embeddings=64))
    return modeling.BertForPreTraining(config).ensure_built()


@pytest.fixture(scope="module")
def batches(model):
    seqs = pb.sequences(model.config.vocab_size)
    return pb.unpacked_batch(seqs), pb.packed_batch(seqs)


def _slot_losses(outputs, batch):
    logp = tf.nn.log_softmax(outputs["masked_lm_logits"], axis=-1).numpy()
    ids = batch["masked_lm_ids"]
    return -np.take_along_axis(logp, ids[..., None], axis=-1)[..., 0]


def _nsp_losses(outputs, batch, packed):
    logp = tf.nn.log_softmax(outputs["next_sentence_logits"], axis=-1).numpy()
    return pb.per_sequence_nsp(logp, batch, packed)


def test_per_sequence_losses_are_equal(model, batches):
    unpacked, packed = batches
    out_u = model(unpacked, training=False)
    out_p = model(packed, training=False)
    assert out_p["next_sentence_logits"].shape == (len(pb.ROWS), pb.PER_PACK, 2)
    pb.assert_same_per_sequence(_slot_losses(out_u, unpacked), _slot_losses(out_p, packed),
                                _nsp_losses(out_u, unpacked, False),
                                _nsp_losses(out_p, packed, True), unpacked, packed)


def test_batch_loss_and_gradients_are_equal(model, batches):
    results = []
    for batch in batches:
        with tf.GradientTape() as tape:
            metrics = loop.pretraining_losses(model(batch, training=False), batch)
        grads = tape.gradient(metrics["loss"], model.trainable_variables)
        results.append((metrics, [tf.convert_to_tensor(g).numpy() for g in grads]))
    (m_u, g_u), (m_p, g_p) = results
    for key in ("mlm_loss", "nsp_loss", "mlm_total", "nsp_total", "mlm_correct", "nsp_correct"):
        np.testing.assert_allclose(float(m_p[key]), float(m_u[key]), rtol=1e-5, atol=1e-6,
                                   err_msg=key)
    assert float(m_p["nsp_total"]) == len(pb.LENGTHS)
    for var, gu, gp in zip(model.trainable_variables, g_u, g_p):
        np.testing.assert_allclose(gp, gu, rtol=1e-5, atol=1e-5, err_msg=var.name)


def test_sequences_in_one_row_do_not_see_each_other(model, batches):
    """Changing one packed sequence leaves its neighbours' outputs unchanged."""
    _, packed = batches
    changed = {k: v.copy() for k, v in packed.items()}
    row = 0
    first = packed["input_mask"][row] == 1
    changed["input_ids"][row, np.flatnonzero(first)[1:-1]] = 7  # sequence 1's tokens
    a = model(packed, training=False)["sequence_output"].numpy()[row]
    b = model(changed, training=False)["sequence_output"].numpy()[row]
    others = packed["input_mask"][row] > 1
    np.testing.assert_allclose(b[others], a[others], rtol=1e-6, atol=1e-6)
    assert not np.allclose(b[first], a[first])
