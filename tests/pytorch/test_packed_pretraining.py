"""Packed rows (docs/packing.md) in the PyTorch BERT: the same sequences packed and unpacked
give the same per-sequence MLM and NSP losses and the same gradients (fp32)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from models.bert_large.pytorch.modeling import BertConfig, BertForPreTraining
from tests import packed_batches as pb
from tests.pytorch.pretraining_data import TINY_CONFIG


def _model() -> BertForPreTraining:
    torch.manual_seed(0)
    model = BertForPreTraining(BertConfig.from_dict(dict(TINY_CONFIG, max_position_embeddings=64)))
    return model.eval()  # no dropout: the two batches must see the same function


def _inputs(batch: dict) -> dict[str, torch.Tensor]:
    names = {"segment_ids": "token_type_ids", "input_mask": "attention_mask"}
    out = {names.get(k, k): torch.from_numpy(v) for k, v in batch.items()}
    if "positions" not in out:
        out["next_sentence_labels"] = out["next_sentence_labels"].reshape(-1)
    return out


def _batches(model):
    seqs = pb.sequences(model.config.vocab_size)
    return pb.unpacked_batch(seqs), pb.packed_batch(seqs)


def _slot_losses(model, batch: dict) -> np.ndarray:
    """Per masked-LM slot cross-entropy, [rows, slots] (0 where unused)."""
    out = model(**_inputs(batch))
    w = batch["masked_lm_weights"] > 0
    values = np.zeros(w.shape, np.float32)
    labels = torch.from_numpy(batch["masked_lm_ids"][w])
    values[w] = F.cross_entropy(out["mlm_logits"].float(), labels, reduction="none").detach().numpy()
    return values


def _nsp_losses(model, batch: dict, packed: bool) -> np.ndarray:
    inputs = _inputs(batch)
    seq, pooled = model.bert(inputs["input_ids"], inputs["token_type_ids"],
                             inputs["attention_mask"], inputs.get("positions"),
                             inputs.get("next_sentence_positions"))
    logp = F.log_softmax(model.cls.seq_relationship(pooled), -1).detach().numpy()
    return pb.per_sequence_nsp(logp, batch, packed)


def test_per_sequence_losses_are_equal():
    model = _model()
    unpacked, packed = _batches(model)
    pb.assert_same_per_sequence(_slot_losses(model, unpacked), _slot_losses(model, packed),
                                _nsp_losses(model, unpacked, False),
                                _nsp_losses(model, packed, True), unpacked, packed)


def test_batch_loss_and_gradients_are_equal():
    model = _model()
    results = []
    for batch in _batches(model):
        model.zero_grad(set_to_none=True)
        out = model(**_inputs(batch))
        out["loss"].backward()
        results.append((out, {n: p.grad.clone() for n, p in model.named_parameters()}))
    (out_u, g_u), (out_p, g_p) = results
    for key in ("loss", "mlm_loss", "nsp_loss", "mlm_count", "mlm_correct"):
        np.testing.assert_allclose(float(out_p[key].detach()), float(out_u[key].detach()), rtol=1e-5,
                                   atol=1e-6,
                                   err_msg=key)
    for name, grad in g_u.items():
        assert torch.isfinite(g_p[name]).all(), name  # padding rows must not make NaNs
        np.testing.assert_allclose(g_p[name].numpy(), grad.numpy(), rtol=1e-5, atol=1e-5,
                                   err_msg=name)
