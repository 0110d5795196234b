"""Our BertForPreTraining equals Hugging Face's for the same weights, and saves HF-loadable files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from models.bert_large.pytorch.modeling import BertConfig, BertForPreTraining, no_decay_param_names
from tests.pytorch.pretraining_data import TINY_CONFIG

transformers = pytest.importorskip("transformers")

B, S, P, V = 3, 32, 6, TINY_CONFIG["vocab_size"]


def _batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, S, dtype=torch.long)
    mask[1, 20:] = 0  # padding in one row
    weights = torch.ones(B, P)
    weights[2, 4:] = 0  # padded predictions
    return {
        "input_ids": torch.randint(0, V, (B, S), generator=g),
        "token_type_ids": torch.randint(0, 2, (B, S), generator=g),
        "attention_mask": mask,
        "masked_lm_positions": torch.stack([torch.randperm(19, generator=g)[:P] + 1 for _ in range(B)]),
        "masked_lm_ids": torch.randint(0, V, (B, P), generator=g),
        "masked_lm_weights": weights,
        "next_sentence_labels": torch.randint(0, 2, (B,), generator=g),
    }


def _hf_model(config: BertConfig):
    hf_config = transformers.BertConfig(**{k: v for k, v in config.to_dict().items() if k != "architectures"})
    return transformers.BertForPreTraining(hf_config)


def _hf_labels(batch):
    """HF's form of the same targets: labels [B, S] with -100 where nothing is predicted."""
    labels = torch.full((B, S), -100)
    valid = batch["masked_lm_weights"] > 0
    rows = torch.arange(B)[:, None].expand(B, P)
    labels[rows[valid], batch["masked_lm_positions"][valid]] = batch["masked_lm_ids"][valid]
    return labels, rows[valid], batch["masked_lm_positions"][valid]


def test_outputs_loss_and_gradients_equal_hugging_face():
    torch.manual_seed(0)
    config = BertConfig.from_dict(TINY_CONFIG)
    ours = BertForPreTraining(config)
    hf = _hf_model(config)
    hf.load_state_dict(ours.state_dict(), strict=True)  # same parameter names
    ours.train()  # dropout is 0 in TINY_CONFIG: train mode is deterministic
    hf.train()
    batch = _batch()
    out = ours(**batch)
    labels, rows, cols = _hf_labels(batch)
    ref = hf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
             token_type_ids=batch["token_type_ids"], labels=labels,
             next_sentence_label=batch["next_sentence_labels"])
    torch.testing.assert_close(out["mlm_logits"], ref.prediction_logits[rows, cols], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["nsp_logits"], ref.seq_relationship_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["loss"], ref.loss, atol=1e-5, rtol=1e-5)
    out["loss"].backward()
    ref.loss.backward()
    hf_params = dict(hf.named_parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, hf_params[name].grad, atol=1e-5, rtol=1e-4, msg=name)


def test_hf_loads_our_weights_and_we_load_hf_weights(tmp_path: Path):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    config = BertConfig.from_dict(TINY_CONFIG)
    ours = BertForPreTraining(config).eval()
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
    save_file(ours.hf_state_dict(), str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    hf = transformers.BertForPreTraining.from_pretrained(str(tmp_path)).eval()
    batch = _batch(3)
    _, rows, cols = _hf_labels(batch)
    with torch.no_grad():
        ref = hf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                 token_type_ids=batch["token_type_ids"])
        again = BertForPreTraining(config).eval()
        again.load_hf_state_dict(hf.state_dict())
        out = again(**batch)
    torch.testing.assert_close(out["mlm_logits"], ref.prediction_logits[rows, cols], atol=1e-5, rtol=1e-5)
    # tied weights stay tied after loading
    assert again.cls.predictions.decoder.weight is again.bert.embeddings.word_embeddings.weight


def test_load_errors_name_the_weight():
    config = BertConfig.from_dict(TINY_CONFIG)
    state = BertForPreTraining(config).hf_state_dict()
    del state["bert.pooler.dense.weight"]
    with pytest.raises(ValueError, match="bert.pooler.dense.weight"):
        BertForPreTraining(config).load_hf_state_dict(state, source="x")
    bigger = BertForPreTraining(BertConfig.from_dict({**TINY_CONFIG, "vocab_size": V + 1})).hf_state_dict()
    with pytest.raises(ValueError, match="word_embeddings.weight has shape"):
        BertForPreTraining(config).load_hf_state_dict(bigger, source="x")


def test_bf16_autocast_close_to_fp32():
    torch.manual_seed(2)
    model = BertForPreTraining(BertConfig.from_dict(TINY_CONFIG)).eval()
    batch = _batch(4)
    with torch.no_grad():
        ref = model(**batch)["loss"]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(**batch)["loss"]
    assert abs(float(low) - float(ref)) < 0.05


def test_no_decay_names_are_bias_and_layernorm():
    model = BertForPreTraining(BertConfig.from_dict(TINY_CONFIG))
    names = no_decay_param_names(model)
    assert "bert.encoder.layer.0.attention.output.LayerNorm.weight" in names
    assert "cls.predictions.bias" in names and "bert.pooler.dense.bias" in names
    assert "bert.encoder.layer.0.attention.self.query.weight" not in names
    assert "bert.embeddings.word_embeddings.weight" not in names


def test_config_reads_google_bert_config(tmp_path: Path):
    path = tmp_path / "bert_config.json"
    path.write_text(json.dumps({**TINY_CONFIG, "some_future_key": 1}))
    assert BertConfig.from_json_file(path).hidden_size == 64
    path.write_text("{}")
    with pytest.raises(ValueError, match="no 'vocab_size'"):
        BertConfig.from_json_file(path)
