"""The one owner of every Keras 2 / Keras 3 difference of the TensorFlow BERT code.

Why: Habana's Gaudi bridge (``habana_frameworks.tensorflow``) pins TensorFlow 2.15, i.e.
Keras 2.15, while the code is written for TensorFlow 2.21 + Keras 3. Every place where the
two APIs differ goes through a small helper here; other modules import from ``compat``
instead of branching on the Keras version themselves. On Keras 3 every helper is the plain
Keras 3 call, so behaviour there is unchanged.
"""

from __future__ import annotations

import keras
import tensorflow as tf

KERAS_VERSION: str = keras.__version__
KERAS3: bool = KERAS_VERSION.startswith("3")

__all__ = ["KERAS3", "KERAS_VERSION", "add_weight", "build", "fresh_initializer", "keep_input_dtypes",
           "numpy_dtype", "optimizer_built", "scheduled_learning_rate", "variable_path",
           "register_serializable", "Lamb", "DTypePolicy", "set_global_policy", "global_policy",
           "dropout", "rng_state_variables", "extra_state_variables", "is_rng_state"]


# ---------------------------------------------------------------------------------------------
# Layers and variables


def add_weight(layer, name: str, shape, initializer, autocast: bool = False):
    """``layer.add_weight``; ``autocast=False`` keeps the weight float32 inside ``call()``
    under a mixed policy (Keras 3 ``autocast``, Keras 2 ``experimental_autocast``)."""
    if KERAS3:
        return layer.add_weight(name=name, shape=shape, initializer=initializer,
                                autocast=autocast)
    return layer.add_weight(name=name, shape=shape, initializer=initializer,
                            experimental_autocast=autocast)


def build(layer, input_shape=None) -> None:
    """``layer.build(input_shape)`` from a parent's ``build``. Keras 2 enters no name scope
    for a direct ``build`` call, so the weights would lose the layer names from their path
    (``bert/embeddings/LayerNorm/gamma`` → ``gamma``); build inside ``layer.name``'s scope
    to get the Keras 3 paths."""
    if KERAS3:
        layer.build(input_shape) if input_shape is not None else layer.build()
        return
    with tf.name_scope(layer.name):
        layer.build(input_shape) if input_shape is not None else layer.build()


def keep_input_dtypes(layer) -> None:
    """Do not cast a layer's floating inputs to its compute dtype (float32 residual stream
    and attention bias under ``mixed_bfloat16``): Keras 3 ``_convert_input_args``, Keras 2
    ``_autocast``."""
    if KERAS3:
        layer._convert_input_args = False  # noqa: SLF001
    else:
        layer._autocast = False  # noqa: SLF001


def fresh_initializer(initializer):
    """The initializer to use for one more weight. Keras 2 returns identical values from an
    unseeded initializer instance called again, so it gets a fresh copy there; Keras 3
    draws new values from the same instance (unchanged)."""
    if KERAS3:
        return initializer
    return initializer.__class__.from_config(initializer.get_config())


def numpy_dtype(variable):
    """The variable's dtype for numpy: Keras 3 gives a string (``"float32"``), Keras 2 and
    ``tf.Variable`` a ``tf.DType``."""
    dtype = variable.dtype
    return dtype.as_numpy_dtype if isinstance(dtype, tf.DType) else dtype


def variable_path(variable) -> str:
    """Keras 3 ``variable.path`` (``dense/kernel``); on Keras 2 the variable name without
    its ``:0`` suffix (``dense/kernel:0`` → ``dense/kernel``)."""
    path = getattr(variable, "path", None) if KERAS3 else None
    if path:
        return path
    name = variable.name
    return name[:-2] if name.endswith(":0") else name


def register_serializable(package: str = "bert"):
    """``keras.saving.register_keras_serializable`` (Keras 3) /
    ``keras.utils.register_keras_serializable`` (Keras 2)."""
    if KERAS3:
        return keras.saving.register_keras_serializable(package=package)
    return keras.utils.register_keras_serializable(package=package)


# ---------------------------------------------------------------------------------------------
# Dtype policies

DTypePolicy = keras.DTypePolicy if KERAS3 else keras.mixed_precision.Policy


def set_global_policy(name: str) -> None:
    keras.mixed_precision.set_global_policy(name)


def global_policy():
    return keras.mixed_precision.global_policy()


# ---------------------------------------------------------------------------------------------
# Dropout RNG state (exact resume)


def dropout(rate, **kwargs):
    """``keras.layers.Dropout``. On Keras 2 its RNG is a ``tf.random.Generator``
    (``rng_type="stateful"``, seeded from ``keras.utils.set_random_seed``) instead of the
    legacy stateful ops, whose state cannot be saved: resumed runs continue bit-exactly, as
    with Keras 3's ``SeedGenerator``."""
    if KERAS3:
        return keras.layers.Dropout(rate, **kwargs)
    return keras.layers.Dropout(rate, rng_type="stateful", **kwargs)


def is_rng_state(variable) -> bool:
    """A Keras 3 ``SeedGenerator`` state variable."""
    return "seed_generator_state" in variable_path(variable)


def rng_state_variables(model) -> list:
    """The dropout RNG state variables of ``model`` in a stable order.

    Keras 3: the ``SeedGenerator`` states (they are in ``model.variables``). Keras 2: the
    ``tf.random.Generator`` states of the dropout layers' ``RandomGenerator`` (not model
    variables, and created lazily at the first training call: created here if needed, so a
    fresh model has states to restore into)."""
    if KERAS3:
        return [v for v in model.variables if is_rng_state(v)]
    states = []
    for layer in model._flatten_layers(include_self=False, recursive=True):  # noqa: SLF001
        rng = getattr(layer, "_random_generator", None)
        if rng is None or not hasattr(rng, "_maybe_init"):
            continue
        rng._maybe_init()  # noqa: SLF001
        gen = getattr(rng, "_generator", None)
        if gen is not None:
            states.append(gen.state)
    return states


def extra_state_variables(model) -> list:
    """Model state outside ``model.variables`` to checkpoint (Keras 2 dropout RNGs)."""
    if KERAS3:
        return []
    have = {id(v) for v in model.variables}
    return [v for v in rng_state_variables(model) if id(v) not in have]


# ---------------------------------------------------------------------------------------------
# Optimizers


def scheduled_learning_rate(cls):
    """``cls`` (a Keras optimizer class) whose ``learning_rate`` is the schedule at the
    current ``iterations``, as in Keras 3. Keras 2 returns the rate of the *last*
    ``apply_gradients`` (one step behind) when the rate is a schedule, so logs would lag."""
    if KERAS3:
        return cls

    class _ScheduledLR(cls):
        @property
        def learning_rate(self):
            lr = self._learning_rate
            if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
                return tf.cast(lr(self.iterations), tf.float32)
            return cls.learning_rate.fget(self)

        @learning_rate.setter
        def learning_rate(self, value):
            cls.learning_rate.fset(self, value)

    _ScheduledLR.__name__ = _ScheduledLR.__qualname__ = cls.__name__
    return _ScheduledLR


def optimizer_built(optimizer) -> bool:
    """Keras 3 ``optimizer.built``; Keras 2 optimizers set ``_built`` in ``build``."""
    if KERAS3:
        return optimizer.built
    return bool(getattr(optimizer, "_built", False))


if KERAS3:
    Lamb = keras.optimizers.Lamb
else:

    class Lamb(keras.optimizers.Optimizer):
        """LAMB for Keras 2's optimizer API, the same math as Keras 3's ``Lamb``: Adam
        moments with bias correction, update ``m_hat / (sqrt(v_hat) + epsilon)`` scaled by
        the trust ratio ``||w|| / ||update||`` (1 when either norm is 0). Weight decay is
        decoupled and applied by the base optimizer before the step (``w -= lr * wd * w``),
        as Keras 3 does."""

        def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                     weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                     use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None,
                     jit_compile=False, name="Lamb", **kwargs):
            super().__init__(name=name, weight_decay=weight_decay, clipnorm=clipnorm,
                             clipvalue=clipvalue, global_clipnorm=global_clipnorm,
                             use_ema=use_ema, ema_momentum=ema_momentum,
                             ema_overwrite_frequency=ema_overwrite_frequency,
                             jit_compile=jit_compile, **kwargs)
            self._learning_rate = self._build_learning_rate(learning_rate)
            self.beta_1 = beta_1
            self.beta_2 = beta_2
            self.epsilon = epsilon

        def build(self, var_list):
            super().build(var_list)
            if hasattr(self, "_built") and self._built:
                return
            self._built = True
            self._momentums = [self.add_variable_from_reference(v, "m") for v in var_list]
            self._velocities = [self.add_variable_from_reference(v, "v") for v in var_list]

        def update_step(self, gradient, variable):
            dtype = variable.dtype
            lr = tf.cast(self.learning_rate, dtype)
            gradient = tf.cast(gradient, dtype)
            local_step = tf.cast(self.iterations + 1, dtype)
            beta_1_power = tf.pow(tf.cast(self.beta_1, dtype), local_step)
            beta_2_power = tf.pow(tf.cast(self.beta_2, dtype), local_step)
            index = self._index_dict[self._var_key(variable)]
            m, v = self._momentums[index], self._velocities[index]
            m.assign_add((gradient - m) * (1 - self.beta_1))
            v.assign_add((tf.square(gradient) - v) * (1 - self.beta_2))
            m_t_hat = m / (1.0 - beta_1_power)
            v_sqrt = tf.sqrt(v / (1.0 - beta_2_power)) + self.epsilon
            update = m_t_hat / v_sqrt
            w_norm = tf.sqrt(tf.reduce_sum(tf.pow(variable, 2)))
            g_norm = tf.sqrt(tf.reduce_sum(tf.pow(update, 2)))
            ratio = tf.where(tf.greater(w_norm, 0),
                             tf.where(tf.greater(g_norm, 0), w_norm / g_norm, 1.0), 1.0)
            variable.assign_sub(ratio * lr * update)

        def get_config(self):
            config = super().get_config()
            config.update({"learning_rate": self._serialize_hyperparameter(
                self._learning_rate), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon})
            return config
