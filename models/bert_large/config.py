"""``BertConfig``: the model hyper-parameters of a ``bert_config.json``, shared by the
TensorFlow and PyTorch models (standard library only, so either framework can import it)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Mapping

# hidden_act values both frameworks implement (Hugging Face names; compared case-insensitively)
HIDDEN_ACTS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "linear", "relu", "silu", "swish", "tanh")


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """The fields of google-research / MLCommons ``bert_config.json`` (Hugging Face names).

    Defaults are google-research's; published ``bert_config.json`` files set every field
    (``type_vocab_size`` is 2 in all of them).
    """

    vocab_size: int
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 16
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of "
                f"num_attention_heads ({self.num_attention_heads})"
            )
        if self.hidden_act.lower() not in HIDDEN_ACTS:
            raise ValueError(
                f"unsupported hidden_act {self.hidden_act!r} in bert_config: use one of "
                f"{', '.join(HIDDEN_ACTS)}"
            )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "BertConfig":
        """Build from a dict; unknown keys (e.g. Hugging Face extras) are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def from_json_file(cls, path: str | Path) -> "BertConfig":
        """Read a ``bert_config.json`` (or a Hugging Face ``config.json``). Raises
        ``FileNotFoundError`` when it is missing, ``ValueError`` when it is not a BERT config."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(
                f"BERT config {path} not found: pass the bert_config.json shipped with the "
                "checkpoint (--bert_config_file)"
            ) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read BERT config {path}: {e}") from None
        if not isinstance(data, dict) or "vocab_size" not in data:
            raise ValueError(f"{path} has no 'vocab_size'; is it a bert_config.json?")
        return cls.from_dict(data)

    def to_dict(self) -> dict:
        """The fields, plus ``model_type`` and ``architectures`` so that Hugging Face
        ``transformers`` loads it as a ``config.json`` (``from_dict`` ignores both)."""
        d = dataclasses.asdict(self)
        d.update(model_type="bert", architectures=["BertForPreTraining"])
        return d

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads
