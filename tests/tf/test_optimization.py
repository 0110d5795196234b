"""Learning-rate schedules, weight-decay exclusion and global-norm clipping of the BERT
optimizers, plus the single-process behaviour of distributed.py."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from models.bert_large.tensorflow import (  # noqa: E402
    compat,
    distributed,
    modeling,
    optimization,
)
from models.common import dist_env  # noqa: E402
from tests.tf.conftest import make_config_dict  # noqa: E402


@pytest.mark.parametrize("step, expected", [
    (0, 0.0),                       # warmup starts at 0
    (5, 1e-4 * 5 / 10),             # halfway through warmup
    (10, 1e-4 * (1 - 10 / 100)),    # after warmup: linear decay on the global step
    (55, 1e-4 * (1 - 55 / 100)),
    (100, 0.0),                     # end of training
    (150, 0.0),                     # stays at end_lr
])
def test_warmup_then_linear_decay(step, expected):
    schedule = optimization.WarmupPolynomialDecay(1e-4, decay_steps=100, warmup_steps=10)
    assert float(schedule(step)) == pytest.approx(expected, rel=1e-6, abs=1e-12)


def test_polynomial_decay_power_and_end_lr():
    schedule = optimization.WarmupPolynomialDecay(1.0, decay_steps=100, warmup_steps=0,
                                                  end_lr=0.1, power=2.0)
    assert float(schedule(0)) == pytest.approx(1.0)
    assert float(schedule(50)) == pytest.approx(0.9 * 0.25 + 0.1)
    assert float(schedule(100)) == pytest.approx(0.1)


@pytest.mark.parametrize("kind, cls", [("adamw", keras.optimizers.AdamW),
                                       ("lamb", compat.Lamb)])
def test_create_optimizer_settings(kind, cls):
    opt = optimization.create_optimizer(kind, 2e-5, num_train_steps=100, num_warmup_steps=10)
    assert isinstance(opt, cls)
    assert opt.epsilon == pytest.approx(1e-6)
    assert (opt.beta_1, opt.beta_2) == (0.9, 0.999)
    assert opt.weight_decay == pytest.approx(0.01)
    assert opt.global_clipnorm == 1.0 and opt.clipnorm is None
    assert float(opt.learning_rate) == 0.0  # step 0 of the warmup


def test_create_optimizer_rejects_bad_arguments():
    with pytest.raises(ValueError, match="'adamw' or 'lamb'"):
        optimization.create_optimizer("sgd", 1e-3, 10, 0)
    with pytest.raises(ValueError, match="num_warmup_steps"):
        optimization.create_optimizer("adamw", 1e-3, 10, 20)


def test_bias_and_layer_norm_of_bert_are_not_decayed():
    model = modeling.BertForQuestionAnswering(modeling.BertConfig.from_dict(make_config_dict()))
    model.ensure_built()
    decayed = {compat.variable_path(v) for v in model.trainable_variables
               if optimization.uses_weight_decay(v)}
    kept = {compat.variable_path(v) for v in model.trainable_variables} - decayed
    assert kept and decayed
    assert all("LayerNorm" in p or "bias" in p for p in kept)
    assert not any("LayerNorm" in p or p.endswith("bias") for p in decayed)
    assert any("word_embeddings" in p for p in decayed)
    assert any("kernel" in p for p in decayed)


@pytest.mark.parametrize("kind", ["adamw", "lamb"])
def test_weight_decay_applies_only_to_kernels(kind):
    dense = keras.layers.Dense(3, name="dense")
    norm = keras.layers.LayerNormalization(name="LayerNorm")
    x = tf.ones([2, 4])
    norm(dense(x))
    variables = dense.trainable_variables + norm.trainable_variables
    for v in variables:
        v.assign(tf.ones(v.shape))
    opt = optimization.create_optimizer(kind, 0.1, num_train_steps=10, num_warmup_steps=0,
                                        weight_decay_rate=0.5)
    # Zero gradients: Adam/LAMB steps are 0, so only the decoupled decay moves weights.
    opt.apply_gradients([(tf.zeros(v.shape), v) for v in variables])
    values = {compat.variable_path(v): v.numpy() for v in variables}
    np.testing.assert_allclose(values["dense/kernel"], 1 - 0.1 * 0.5, rtol=1e-6)
    for path in ("dense/bias", "LayerNorm/gamma", "LayerNorm/beta"):
        np.testing.assert_array_equal(values[path], 1.0)


def _two_steps(clip_norm, grads_per_step):
    a = tf.Variable(np.zeros(3, np.float32), name="a")
    b = tf.Variable(np.zeros(2, np.float32), name="b")
    opt = optimization.create_optimizer("adamw", 0.1, num_train_steps=100, num_warmup_steps=0,
                                        weight_decay_rate=0.0, clip_norm=clip_norm)
    for ga, gb in grads_per_step:
        opt.apply_gradients([(tf.constant(ga, tf.float32), a), (tf.constant(gb, tf.float32), b)])
    return np.concatenate([a.numpy(), b.numpy()])


def test_gradients_are_clipped_by_their_global_norm():
    # Step 1 has global norm 50 (clipped to 1), step 2 norm 0.5 (unchanged). Adam's update
    # depends on the ratio of the two steps, so clipping changes the result.
    steps = [([30.0, 0.0, 0.0], [40.0, 0.0]), ([0.3, 0.0, 0.0], [0.0, 0.4])]
    clipped = [tf.clip_by_global_norm([tf.constant(ga), tf.constant(gb)], 1.0)[0]
               for ga, gb in steps]
    reference = _two_steps(None, [(ga.numpy(), gb.numpy()) for ga, gb in clipped])
    np.testing.assert_allclose(_two_steps(1.0, steps), reference, rtol=1e-5)
    assert not np.allclose(_two_steps(None, steps), reference, rtol=1e-3)
    # Per-variable clipping would scale a and b separately: not what google's BERT does.
    per_variable = [(np.array(ga) / max(1.0, np.linalg.norm(ga)),
                     np.array(gb) / max(1.0, np.linalg.norm(gb))) for ga, gb in steps]
    assert not np.allclose(_two_steps(None, per_variable), reference, rtol=1e-3)


# ------------------------------------------------------------------------------------------
# distributed.py without MPI (the two-rank paths run in test_finetune_mpi.py)
# ------------------------------------------------------------------------------------------
def test_scaled_learning_rate():
    assert distributed.scaled_learning_rate(1e-4, 4) == pytest.approx(2e-4)
    assert distributed.scaled_learning_rate(1e-4, 1) == pytest.approx(1e-4)
    with pytest.raises(ValueError):
        distributed.scaled_learning_rate(1e-4, 0)


def test_single_process_communicator_is_a_no_op():
    comm = distributed.get_communicator(env=dist_env.DistEnv())
    assert comm.engine == "none" and comm.world_size == 1
    grads = [tf.constant([1.0, 2.0]), None]
    assert comm.allreduce_mean(grads) == grads
    assert comm.allgather({"x": 1}) == [{"x": 1}]
    v = tf.Variable([3.0])
    comm.broadcast_variables([v])
    assert v.numpy().tolist() == [3.0]


def test_flatten_round_trip_keeps_shapes_and_dtypes():
    tensors = [tf.reshape(tf.range(6, dtype=tf.float32), [2, 3]), tf.constant(5.0),
               tf.constant([1.0, 2.0], tf.bfloat16)]
    back = distributed._unflatten(distributed._flatten(tensors), tensors)
    for t, b in zip(tensors, back):
        assert b.shape == t.shape and b.dtype == t.dtype
        np.testing.assert_array_equal(tf.cast(b, tf.float32), tf.cast(t, tf.float32))


def test_requesting_missing_horovod_is_an_error():
    env = dist_env.DistEnv(rank=0, world_size=2)
    with pytest.raises(RuntimeError, match="horovod"):
        distributed.get_communicator("horovod", env=env, horovod_import=lambda: None)
