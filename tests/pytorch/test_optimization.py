"""LAMB and the warmup + polynomial decay schedule."""

from __future__ import annotations

import pytest
import torch

from models.bert_large.pytorch.modeling import BertConfig, BertForPreTraining
from models.bert_large.pytorch.optimization import Lamb, create_optimizer, poly_warmup_lambda
from tests.pytorch.pretraining_data import TINY_CONFIG


def test_lamb_step_matches_the_formula():
    w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))  # ||w|| = 5
    opt = Lamb([w], lr=0.1, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01)
    w.grad = torch.tensor([0.5, -1.0])
    opt.step()
    # step 1: m_hat = g, v_hat = g^2 -> adam part = sign(g) (up to eps)
    update = torch.tensor([0.5, -1.0]) / (torch.tensor([0.5, 1.0]) + 1e-6) + 0.01 * torch.tensor([3.0, 4.0])
    ratio = 5.0 / update.norm()
    torch.testing.assert_close(w.detach(), torch.tensor([3.0, 4.0]) - 0.1 * ratio * update)


def test_lamb_zero_weights_use_trust_ratio_one():
    b = torch.nn.Parameter(torch.zeros(3))
    opt = Lamb([b], lr=0.01, weight_decay=0.0)
    b.grad = torch.tensor([1.0, -2.0, 0.5])
    opt.step()
    torch.testing.assert_close(b.detach(), -0.01 * torch.sign(torch.tensor([1.0, -2.0, 0.5])), atol=1e-7, rtol=1e-4)


def test_schedule_warms_up_then_decays_to_zero():
    fn = poly_warmup_lambda(total_steps=100, warmup_steps=10, power=0.5)
    assert fn(0) == pytest.approx(0.1)
    assert fn(9) == pytest.approx(1.0)
    assert fn(10) == pytest.approx(1.0)
    assert fn(55) == pytest.approx(0.5**0.5)
    assert fn(100) == 0.0
    assert poly_warmup_lambda(100, 0, 1.0)(50) == pytest.approx(0.5)


def test_no_weight_decay_on_bias_and_layernorm():
    model = BertForPreTraining(BertConfig.from_dict(TINY_CONFIG))
    opt, sched, kind = create_optimizer(model, lr=1e-3, total_steps=10, warmup_steps=1, weight_decay=0.01)
    assert kind == "lamb"
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.01 and plain["weight_decay"] == 0.0
    ln = model.bert.embeddings.LayerNorm
    assert any(p is ln.weight for p in plain["params"]) and any(p is ln.bias for p in plain["params"])
    assert any(p is model.bert.pooler.dense.weight for p in decayed["params"])
    n_params = len(list(model.parameters()))  # tied weights counted once
    assert len(decayed["params"]) + len(plain["params"]) == n_params
    # the scheduler starts in warmup
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3)
