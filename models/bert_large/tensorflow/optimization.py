"""Optimizers for BERT fine-tuning (AdamW) and pretraining (LAMB), built on Keras 3.

Both follow google-research BERT's recipe:

- learning rate: linear warmup from 0 to ``init_lr`` over ``num_warmup_steps``, then polynomial
  decay (power 1.0 = linear) from ``init_lr`` to ``end_lr`` at ``num_train_steps``; the decay is
  computed on the global step, as in google's ``optimization.py``;
- decoupled weight decay (``lr * weight_decay_rate * w``) on every weight except biases and
  LayerNorm parameters;
- gradients clipped by their global norm (1.0) across all variables, after any allreduce,
  through Keras' ``global_clipnorm``.

Usage::

    opt = create_optimizer("adamw", 3e-5, num_train_steps=1000, num_warmup_steps=100)
    opt.apply_gradients(zip(grads, model.trainable_variables))
"""

from __future__ import annotations

import re
from typing import Sequence

import keras
import tensorflow as tf

from models.bert_large.tensorflow import compat

__all__ = ["WarmupPolynomialDecay", "create_optimizer", "DEFAULT_NO_DECAY", "uses_weight_decay"]

# Matched (re.search) against a variable's full path (``bert/encoder/.../LayerNorm/gamma``)
# and its short name. Keras LayerNormalization names its weights gamma/beta.
DEFAULT_NO_DECAY: tuple[str, ...] = ("LayerNorm", "layer_norm", "bias", r"(^|/)gamma$",
                                     r"(^|/)beta$")


@compat.register_serializable(package="bert")
class WarmupPolynomialDecay(keras.optimizers.schedules.LearningRateSchedule):
    """``init_lr * step / warmup`` while ``step < warmup``, then
    ``(init_lr - end_lr) * (1 - min(step, decay_steps) / decay_steps) ** power + end_lr``."""

    def __init__(self, init_lr: float, decay_steps: int, warmup_steps: int = 0,
                 end_lr: float = 0.0, power: float = 1.0):
        super().__init__()
        if decay_steps < 1:
            raise ValueError(f"num_train_steps must be >= 1, got {decay_steps}")
        if warmup_steps < 0:
            raise ValueError(f"num_warmup_steps must be >= 0, got {warmup_steps}")
        self.init_lr = float(init_lr)
        self.decay_steps = int(decay_steps)
        self.warmup_steps = int(warmup_steps)
        self.end_lr = float(end_lr)
        self.power = float(power)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        decay_steps = tf.constant(float(self.decay_steps))
        frac = 1.0 - tf.minimum(step, decay_steps) / decay_steps
        decayed = (self.init_lr - self.end_lr) * tf.pow(frac, self.power) + self.end_lr
        if self.warmup_steps == 0:
            return decayed
        warmup = self.init_lr * step / float(self.warmup_steps)
        return tf.where(step < float(self.warmup_steps), warmup, decayed)

    def get_config(self):
        return {"init_lr": self.init_lr, "decay_steps": self.decay_steps,
                "warmup_steps": self.warmup_steps, "end_lr": self.end_lr, "power": self.power}


def uses_weight_decay(variable, no_decay: Sequence[str] = DEFAULT_NO_DECAY) -> bool:
    """False for variables whose path or name matches one of the ``no_decay`` patterns."""
    names = (compat.variable_path(variable), variable.name)
    return not any(re.search(p, n) for p in no_decay for n in names)


class _PathDecayMixin:
    """Keras' own exclusion matches only the short variable name (``kernel``, ``gamma``),
    which loses the layer name; match the full path as well."""

    _no_decay: tuple[str, ...] = DEFAULT_NO_DECAY

    def _use_weight_decay(self, variable):  # overrides keras BaseOptimizer
        return uses_weight_decay(variable, self._no_decay)


class BertAdamW(_PathDecayMixin, compat.scheduled_learning_rate(keras.optimizers.AdamW)):
    pass


class BertLamb(_PathDecayMixin, compat.scheduled_learning_rate(compat.Lamb)):
    pass


def create_optimizer(kind: str, init_lr: float, num_train_steps: int, num_warmup_steps: int,
                     weight_decay_rate: float = 0.01, *, end_lr: float = 0.0,
                     power: float = 1.0, beta_1: float = 0.9, beta_2: float = 0.999,
                     epsilon: float = 1e-6, clip_norm: float | None = 1.0,
                     exclude_from_weight_decay: Sequence[str] = DEFAULT_NO_DECAY):
    """Build the optimizer ``kind`` ("adamw" or "lamb") with BERT's schedule.

    ``clip_norm`` clips all gradients together by global norm (None disables it).
    ``exclude_from_weight_decay`` are regexes matched against variable paths and names.
    """
    kind = kind.lower()
    if kind not in ("adamw", "lamb"):
        raise ValueError(f"optimizer kind must be 'adamw' or 'lamb', got {kind!r}")
    if init_lr <= 0:
        raise ValueError(f"learning_rate must be > 0, got {init_lr}")
    if num_warmup_steps > num_train_steps:
        raise ValueError(f"num_warmup_steps ({num_warmup_steps}) is larger than num_train_steps "
                         f"({num_train_steps}); lower warmup or train longer")
    schedule = WarmupPolynomialDecay(init_lr, num_train_steps, num_warmup_steps, end_lr, power)
    cls = BertAdamW if kind == "adamw" else BertLamb
    opt = cls(learning_rate=schedule, weight_decay=weight_decay_rate, beta_1=beta_1,
              beta_2=beta_2, epsilon=epsilon, global_clipnorm=clip_norm)
    opt._no_decay = tuple(exclude_from_weight_decay)
    return opt
