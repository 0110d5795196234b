"""BERT for pretraining (masked LM + next sentence prediction) in plain PyTorch.

Parameter names equal Hugging Face ``transformers.BertForPreTraining`` names, so state dicts
load both ways (tests prove equal outputs for the same weights). Two things make training
faster than the HF model:

* attention runs through ``torch.nn.functional.scaled_dot_product_attention``;
* the MLM head (transform + vocab projection) runs only on the masked positions gathered
  from the dense ``[B, S, H]`` sequence output, instead of on every token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.bert_large.config import BertConfig

__all__ = ["BertConfig", "BertForPreTraining", "no_decay_param_names"]


_ACTIVATIONS = {  # keys: config.HIDDEN_ACTS
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "linear": lambda x: x,
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
}


class BertEmbeddings(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids, positions=None):
        """``positions`` [B, S]: each token's position in its own sequence (packed rows restart
        at 0 for every sequence); None: 0..S-1."""
        if positions is None:
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None]
        x = (
            self.word_embeddings(input_ids)
            + self.position_embeddings(positions)
            + self.token_type_embeddings(token_type_ids)
        )
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.num_heads = c.num_attention_heads
        self.head_dim = c.hidden_size // c.num_attention_heads
        self.query = nn.Linear(c.hidden_size, c.hidden_size)
        self.key = nn.Linear(c.hidden_size, c.hidden_size)
        self.value = nn.Linear(c.hidden_size, c.hidden_size)
        self.dropout_p = c.attention_probs_dropout_prob

    def forward(self, x, attn_mask):
        b, s, h = x.shape
        # [B, S, H] -> [B, heads, S, head_dim]
        q, k, v = (
            proj(x).view(b, s, self.num_heads, self.head_dim).transpose(1, 2)
            for proj in (self.query, self.key, self.value)
        )
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout_p if self.training else 0.0
        )
        return out.transpose(1, 2).reshape(b, s, h)


class BertSelfOutput(nn.Module):
    def __init__(self, c: BertConfig, in_size: int):
        super().__init__()
        self.dense = nn.Linear(in_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def forward(self, x, residual):
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class BertAttention(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(c)
        self.output = BertSelfOutput(c, c.hidden_size)

    def forward(self, x, attn_mask):
        return self.output(self.self(x, attn_mask), x)


class BertIntermediate(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.intermediate_size)
        self.act = _ACTIVATIONS[c.hidden_act.lower()]

    def forward(self, x):
        return self.act(self.dense(x))


class BertLayer(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.attention = BertAttention(c)
        self.intermediate = BertIntermediate(c)
        self.output = BertSelfOutput(c, c.intermediate_size)

    def forward(self, x, attn_mask):
        x = self.attention(x, attn_mask)
        return self.output(self.intermediate(x), x)


class BertEncoder(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(c) for _ in range(c.num_hidden_layers))

    def forward(self, x, attn_mask):
        for layer in self.layer:
            x = layer(x, attn_mask)
        return x


class BertPooler(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.hidden_size)

    def forward(self, sequence_output, cls_positions=None):
        """The first token's output [B, H], or each packed sequence's [CLS] at
        ``cls_positions`` [B, K] -> [B, K, H]."""
        if cls_positions is None:
            first = sequence_output[:, 0]
        else:
            index = cls_positions[..., None].expand(-1, -1, sequence_output.shape[-1])
            first = sequence_output.gather(1, index)
        return torch.tanh(self.dense(first))


class BertModel(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.embeddings = BertEmbeddings(c)
        self.encoder = BertEncoder(c)
        self.pooler = BertPooler(c)

    def forward(self, input_ids, token_type_ids, attention_mask, positions=None,
                cls_positions=None):
        """Returns sequence_output [B, S, H] and pooled_output [B, H] ([B, K, H] for packed
        rows: ``positions`` and ``cls_positions`` given, docs/packing.md)."""
        if positions is None:
            # [B, S] -> [B, 1, 1, S]: True where a key may be attended to
            attn_mask = attention_mask.bool()[:, None, None, :]
        else:
            attn_mask = packed_attention_mask(attention_mask)
        x = self.encoder(self.embeddings(input_ids, token_type_ids, positions), attn_mask)
        return x, self.pooler(x, cls_positions)


def packed_attention_mask(attention_mask):
    """Packed rows: ``attention_mask`` [B, S] holds each token's 1-based sequence index (0:
    padding). [B, 1, S, S], True where query i may attend key j: same sequence only (block
    diagonal, no cross-contamination); padding attends to padding, so no row is all False
    (scaled_dot_product_attention would return NaN for it)."""
    return (attention_mask[:, :, None] == attention_mask[:, None, :])[:, None]


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.hidden_size)
        self.act = _ACTIVATIONS[c.hidden_act.lower()]
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, x):
        return self.LayerNorm(self.act(self.dense(x)))


class BertLMPredictionHead(nn.Module):
    def __init__(self, c: BertConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.transform = BertPredictionHeadTransform(c)
        self.decoder = nn.Linear(c.hidden_size, c.vocab_size)
        self.decoder.weight = word_embeddings.weight  # tied, as in BERT
        self.bias = nn.Parameter(torch.zeros(c.vocab_size))
        self.decoder.bias = self.bias  # HF names it both cls.predictions.bias and .decoder.bias

    def forward(self, x):
        return self.decoder(self.transform(x))


class BertPreTrainingHeads(nn.Module):
    def __init__(self, c: BertConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.predictions = BertLMPredictionHead(c, word_embeddings)
        self.seq_relationship = nn.Linear(c.hidden_size, 2)


class BertForPreTraining(nn.Module):
    """BERT with MLM and NSP heads; forward computes the pretraining loss.

    Inputs (int64 unless noted): ``input_ids``, ``token_type_ids``, ``attention_mask`` [B, S];
    ``masked_lm_positions``, ``masked_lm_ids`` [B, P], ``masked_lm_weights`` float [B, P]
    (0 marks padding); ``next_sentence_labels`` [B].

    Packed rows (docs/packing.md) add ``positions`` [B, S], ``next_sentence_positions`` and
    ``next_sentence_weights`` [B, K], with ``next_sentence_labels`` [B, K]: attention stays
    within each sequence, and the NSP loss is the mean over the used [CLS] slots. The losses
    equal those of the same sequences unpacked (MLM: mean over all masked tokens).
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.bert = BertModel(config)
        self.cls = BertPreTrainingHeads(config, self.bert.embeddings.word_embeddings)
        self.apply(self._init_weights)

    def _init_weights(self, m):
        std = self.config.initializer_range
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, std)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(
        self,
        input_ids,
        token_type_ids,
        attention_mask,
        masked_lm_positions,
        masked_lm_ids,
        masked_lm_weights,
        next_sentence_labels=None,
        positions=None,
        next_sentence_positions=None,
        next_sentence_weights=None,
    ) -> dict[str, torch.Tensor]:
        seq, pooled = self.bert(input_ids, token_type_ids, attention_mask, positions,
                                next_sentence_positions)
        b, s, h = seq.shape
        # Gather only the real masked positions: [B, P] -> [N] indices into [B*S, H]
        valid = masked_lm_weights > 0
        flat_pos = (masked_lm_positions + torch.arange(b, device=seq.device)[:, None] * s)[valid]
        masked_out = seq.reshape(b * s, h).index_select(0, flat_pos)  # [N, H]
        mlm_logits = self.cls.predictions(masked_out)  # [N, V]
        nsp_logits = self.cls.seq_relationship(pooled)  # [B, 2]
        labels = masked_lm_ids[valid]
        mlm_loss = F.cross_entropy(mlm_logits.float(), labels)
        out = {
            "mlm_logits": mlm_logits,
            "nsp_logits": nsp_logits,
            "mlm_loss": mlm_loss,
            "mlm_correct": (mlm_logits.argmax(-1) == labels).sum(),
            "mlm_count": labels.new_tensor(labels.numel()),
        }
        if next_sentence_labels is not None:
            labels = next_sentence_labels.reshape(-1)
            each = F.cross_entropy(nsp_logits.float().reshape(-1, 2), labels, reduction="none")
            if next_sentence_weights is None:
                out["nsp_loss"] = each.mean()
            else:
                w = next_sentence_weights.reshape(-1).float()
                out["nsp_loss"] = (each * w).sum() / w.sum().clamp(min=1.0)
            out["loss"] = mlm_loss + out["nsp_loss"]
        else:
            out["loss"] = mlm_loss
        return out

    # ------------------------------------------------------------------ HF-compatible I/O

    def hf_state_dict(self) -> dict[str, torch.Tensor]:
        """State dict without the tied aliases (HF/safetensors layout), contiguous CPU copies."""
        tied = {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}
        return {
            k: v.detach().to("cpu").contiguous().clone()
            for k, v in self.state_dict().items()
            if k not in tied
        }

    def load_hf_state_dict(self, state: dict[str, torch.Tensor], source: str = "checkpoint"):
        """Load HF ``BertForPreTraining`` names; tied aliases may be present or not."""
        state = {k: v for k, v in state.items() if not k.endswith("position_ids")}
        state.setdefault("cls.predictions.decoder.weight", state.get("bert.embeddings.word_embeddings.weight"))
        state.setdefault("cls.predictions.decoder.bias", state.get("cls.predictions.bias"))
        own = self.state_dict()
        missing = sorted(k for k in own if state.get(k) is None)
        if missing:
            raise ValueError(f"{source} lacks weights {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        unexpected = sorted(k for k in state if k not in own)
        if unexpected:
            raise ValueError(f"{source} has unknown weights {unexpected[:5]}")
        for k, v in own.items():
            if tuple(state[k].shape) != tuple(v.shape):
                raise ValueError(
                    f"{source}: {k} has shape {tuple(state[k].shape)}, the config needs {tuple(v.shape)}"
                )
        self.load_state_dict(state, strict=True)


def no_decay_param_names(model: nn.Module) -> set[str]:
    """Names of parameters excluded from weight decay: biases and LayerNorm weights."""
    names = set()
    for mod_name, mod in model.named_modules():
        for p_name, _ in mod.named_parameters(recurse=False):
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            if isinstance(mod, nn.LayerNorm) or p_name == "bias":
                names.add(full)
    return names


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
