"""Numeric precision for the TensorFlow BERT code.

``fp32``: everything in float32. ``bf16``: the Keras ``mixed_bfloat16`` policy, i.e. matmuls
and activations in bfloat16 while variables (and therefore optimizer updates) stay float32.
The model itself keeps softmax, LayerNorm, logits and losses in float32 whatever the policy.
The names, their aliases (``bfloat16``, ``float32``, ...) and which ones TensorFlow runs come
from ``models.common.precisions``.

Call :func:`set_precision` *before* building a model: Keras layers read the global policy when
they are constructed. Alternatively pass ``dtype=policy_name(precision)`` to a model.
"""

from __future__ import annotations

from models.bert_large.tensorflow import compat
from models.common import precisions

PRECISIONS = precisions.supported("tensorflow")
# The Keras dtype policy of each precision TensorFlow runs.
_POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16"}


def policy_name(precision: str) -> str:
    """Keras dtype policy name for ``precision`` (any spelling ``precisions.canonical``
    knows); ``ValueError`` naming the supported ones otherwise."""
    return _POLICIES[precisions.resolve(precision, PRECISIONS)]


def set_precision(precision: str) -> compat.DTypePolicy:
    """Set the global Keras dtype policy for ``precision``; returns the policy."""
    compat.set_global_policy(policy_name(precision))
    return compat.global_policy()


def current_precision() -> str:
    """The precision matching the current global Keras policy."""
    name = compat.global_policy().name
    for precision, policy in _POLICIES.items():
        if policy == name:
            return precision
    raise ValueError(f"global Keras dtype policy {name!r} is none of "
                     f"{precisions.human_list(PRECISIONS)}")
