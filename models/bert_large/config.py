"""``BertConfig``: the model hyper-parameters of a ``bert_config.json``, shared by the
TensorFlow and PyTorch models (standard library only, so either framework can import it)."""

from __future__ import annotations

import dataclasses
import json
import numbers
from pathlib import Path
from typing import Any, Mapping

# hidden_act values both frameworks implement (Hugging Face names; compared case-insensitively)
HIDDEN_ACTS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "linear", "relu", "silu", "swish", "tanh")


class ConfigError(ValueError):
    """A ``bert_config.json`` value of the wrong type or out of range; the message names the
    key, what it must be and (from ``from_json_file``) the file."""


_POSITIVE_INTS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                  "intermediate_size", "max_position_embeddings", "type_vocab_size")
_INF = float("inf")
_NUMBER_RULES = {  # name: (test, what the value must be)
    "hidden_dropout_prob": (lambda v: 0 <= v <= 1, "a number within [0, 1]"),
    "attention_probs_dropout_prob": (lambda v: 0 <= v <= 1, "a number within [0, 1]"),
    "initializer_range": (lambda v: 0 <= v < _INF, "a finite number >= 0"),
    "layer_norm_eps": (lambda v: 0 < v < _INF, "a finite number > 0"),
}


def _shown(value: Any) -> str:
    """``value`` as it reads in JSON, with its JSON type: '"big" (a string)'."""
    kind = ("null" if value is None else "a boolean" if isinstance(value, bool)
            else "a string" if isinstance(value, str) else "a list" if isinstance(value, (list, tuple))
            else "an object" if isinstance(value, Mapping) else "a number"
            if isinstance(value, numbers.Number) else type(value).__name__)
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    text = text if len(text) <= 40 else text[:37] + "..."
    return text if value is None else f"{text} ({kind})"


def _check_fields(config: "BertConfig") -> None:
    """Types and ranges of every field, before anything computes with them (``ConfigError``)."""
    for name in _POSITIVE_INTS:
        value = getattr(config, name)
        if not (isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1):
            raise ConfigError(f"{name!r} must be an integer >= 1, got {_shown(value)}")
    for name, (test, expected) in _NUMBER_RULES.items():
        value = getattr(config, name)
        if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and test(value)):
            raise ConfigError(f"{name!r} must be {expected}, got {_shown(value)}")
    if not isinstance(config.hidden_act, str):
        raise ConfigError(f"'hidden_act' must be a string (one of {', '.join(HIDDEN_ACTS)}), "
                          f"got {_shown(config.hidden_act)}")


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
        _check_fields(self)
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size ({self.hidden_size}) must be a multiple of "
                f"num_attention_heads ({self.num_attention_heads})"
            )
        if self.hidden_act.lower() not in HIDDEN_ACTS:
            raise ConfigError(
                f"unsupported hidden_act {self.hidden_act!r} in bert_config: use one of "
                f"{', '.join(HIDDEN_ACTS)}"
            )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "BertConfig":
        """Build from a dict; unknown keys (e.g. Hugging Face extras) are ignored. A value of
        the wrong type or out of range raises ``ConfigError`` (a ``ValueError``) naming the key."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"a BERT config must be a JSON object, got {_shown(data)}")
        if "vocab_size" not in data:
            raise ConfigError("the BERT config has no 'vocab_size'")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def from_json_file(cls, path: str | Path) -> "BertConfig":
        """Read a ``bert_config.json`` (or a Hugging Face ``config.json``). Raises
        ``FileNotFoundError`` when it is missing, ``ValueError`` when it is not a BERT config
        (``ConfigError`` naming the file and the key for a wrong type or value)."""
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
            raise ConfigError(f"{path} has no 'vocab_size'; is it a bert_config.json?")
        try:
            return cls.from_dict(data)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None

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
