"""Loading google-research TF1 checkpoints; our own training checkpoints (round trip, exact
resume, atomic writes, latest)."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from models.bert_large.tensorflow import checkpoint, modeling
from tests.tf.conftest import (
    make_config_dict,
    make_google_tensors,
    save_tf1_checkpoint,
)
from tests.tf.test_modeling import _synthetic_pretraining_batch, train_steps

# every test starts, and leaves, with the float32 Keras policy
pytestmark = pytest.mark.usefixtures("fp32_policy")


@pytest.fixture
def config_dict():
    return make_config_dict(max_position_embeddings=32)


@pytest.fixture
def config(config_dict):
    return modeling.BertConfig.from_dict(config_dict)


def test_google_checkpoint_loads_completely(tmp_path, config_dict, config):
    tensors = make_google_tensors(config_dict)
    prefix = save_tf1_checkpoint(tmp_path / "bert_model.ckpt", tensors)
    model = modeling.BertForPreTraining(config)
    report = checkpoint.load_init_checkpoint(model, prefix)

    assert report.initialized == []
    weights = checkpoint.model_weights(model)
    google_names = {n for n in tensors if not n.endswith(("adam_m", "adam_v", "global_step"))}
    assert set(weights) == google_names  # every variable mapped, both ways
    for name, value in weights.items():
        np.testing.assert_array_equal(value, tensors[name], err_msg=name)
    # The fused attention kernel really is query|key|value side by side.
    qkv = model.bert.encoder_layers[1].attention.qkv.kernel.numpy()
    np.testing.assert_array_equal(
        qkv[:, config.hidden_size:2 * config.hidden_size],
        tensors["bert/encoder/layer_1/attention/self/key/kernel"])
    assert all(n.endswith(("adam_m", "adam_v")) or n == "global_step" for n in report.unused)
    assert f"loaded {len(google_names)} tensors" in report.summary()


def test_folder_and_google_dir_fixture(google_bert_dir):
    config = modeling.BertConfig.from_json_file(google_bert_dir / "bert_config.json")
    model = modeling.BertForPreTraining(config)
    report = checkpoint.load_init_checkpoint(model, google_bert_dir)  # a folder works
    assert report.path.endswith("bert_model.ckpt")


@pytest.mark.parametrize("model_fn, heads", [
    (lambda c: modeling.BertForQuestionAnswering(c), ["cls/squad/output_weights",
                                                      "cls/squad/output_bias"]),
    (lambda c: modeling.BertForSequenceClassification(c, 2), ["output_weights", "output_bias"]),
])
def test_task_heads_stay_initialised_and_are_listed(tmp_path, config_dict, config, model_fn,
                                                    heads):
    tensors = make_google_tensors(config_dict)
    prefix = save_tf1_checkpoint(tmp_path / "bert_model.ckpt", tensors)
    model = model_fn(config)
    report = checkpoint.load_init_checkpoint(model, prefix)
    assert report.initialized == heads
    assert "cls/predictions/output_bias" in report.unused
    np.testing.assert_array_equal(model.bert.embeddings.word_embeddings.numpy(),
                                  tensors["bert/embeddings/word_embeddings"])


def test_renamed_variable_fails_naming_it(tmp_path, config_dict, config):
    tensors = make_google_tensors(config_dict)
    name = "bert/encoder/layer_1/attention/self/key/kernel"
    tensors["bert/encoder/layer_1/attention/self/keys/kernel"] = tensors.pop(name)
    prefix = save_tf1_checkpoint(tmp_path / "bert_model.ckpt", tensors)
    model = modeling.BertForPreTraining(config).ensure_built()
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(checkpoint.CheckpointError) as err:
        checkpoint.load_init_checkpoint(model, prefix)
    message = str(err.value)
    assert name in message and "missing" in message and str(prefix) in message
    # Nothing was half-loaded.
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_shape_mismatch_fails_naming_variable_and_shapes(tmp_path, config_dict, config):
    tensors = make_google_tensors(config_dict)
    name = "bert/encoder/layer_0/intermediate/dense/kernel"
    tensors[name] = np.zeros((64, 100), np.float32)
    prefix = save_tf1_checkpoint(tmp_path / "bert_model.ckpt", tensors)
    with pytest.raises(checkpoint.CheckpointError,
                       match=rf"{name}: checkpoint shape \[64, 100\], model expects \[64, 128\]"):
        checkpoint.load_init_checkpoint(modeling.BertForPreTraining(config), prefix)


def test_config_mismatch_and_bad_path(tmp_path, config_dict):
    prefix = save_tf1_checkpoint(tmp_path / "bert_model.ckpt", make_google_tensors(config_dict))
    bigger = modeling.BertConfig.from_dict(dict(config_dict, num_hidden_layers=3))
    with pytest.raises(checkpoint.CheckpointError, match="layer_2/.*missing.*bert_config_file"):
        checkpoint.load_init_checkpoint(modeling.BertForPreTraining(bigger), prefix)
    with pytest.raises(checkpoint.CheckpointError, match="cannot read checkpoint"):
        checkpoint.load_init_checkpoint(modeling.BertModel(bigger), tmp_path / "nope.ckpt")


def _setup(config, seed):
    keras.utils.set_random_seed(seed)
    model = modeling.BertForPreTraining(config)
    optimizer = keras.optimizers.AdamW(1e-3, weight_decay=0.01)
    return model, optimizer


def test_resume_is_bit_exact_including_optimizer_and_dropout(tmp_path):
    config = modeling.BertConfig.from_dict(
        make_config_dict(num_hidden_layers=1, max_position_embeddings=32))
    batch = _synthetic_pretraining_batch(config, batch=4)
    model, optimizer = _setup(config, seed=0)
    train_steps(model, optimizer, batch, 3)
    prefix = checkpoint.save_training_checkpoint(tmp_path, 3, model, optimizer,
                                                 extra={"epoch": 1, "offset": 12})
    assert prefix == os.path.join(tmp_path, "model.ckpt-3")
    continued = train_steps(model, optimizer, batch, 3)  # dropout active (p=0.1)

    fresh, fresh_opt = _setup(config, seed=123)  # different init, different RNG
    latest = checkpoint.latest_training_checkpoint(tmp_path)
    assert latest == prefix
    step, extra = checkpoint.restore_training_checkpoint(latest, fresh, fresh_opt)
    assert (step, extra) == (3, {"epoch": 1, "offset": 12})
    assert int(fresh_opt.iterations.numpy()) == 3
    resumed = train_steps(fresh, fresh_opt, batch, 3)
    assert resumed == continued
    for a, b in zip(model.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_phase2_starts_from_our_checkpoint(tmp_path, config):
    model, optimizer = _setup(config, seed=0)
    checkpoint.save_training_checkpoint(tmp_path / "phase1", 1, model, optimizer)
    phase2 = modeling.BertForPreTraining(config)
    report = checkpoint.load_init_checkpoint(phase2, tmp_path / "phase1")  # folder → latest
    assert report.initialized == []
    for a, b in zip(model.trainable_weights, phase2.trainable_weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # A google checkpoint is not a training checkpoint to resume from.
    google = save_tf1_checkpoint(tmp_path / "g" / "bert_model.ckpt",
                                 make_google_tensors(config.to_dict()))
    with pytest.raises(checkpoint.CheckpointError, match="load_init_checkpoint"):
        checkpoint.restore_training_checkpoint(google, phase2)


def test_crash_mid_save_keeps_previous_latest(tmp_path, config, monkeypatch):
    model, optimizer = _setup(config, seed=0)
    good = checkpoint.save_training_checkpoint(tmp_path, 10, model, optimizer, extra={"a": 1})
    saved_embeddings = model.bert.embeddings.word_embeddings.numpy()
    model.bert.embeddings.word_embeddings.assign_add(
        tf.ones_like(model.bert.embeddings.word_embeddings))

    real_save = checkpoint.save_bundle

    def crash_after_partial_write(prefix, tensors):
        real_save(prefix, tensors)
        with open(prefix + ".index", "r+b") as f:  # a torn write...
            f.truncate(10)
        raise OSError("disk full")  # ...then the process dies

    monkeypatch.setattr(checkpoint, "save_bundle", crash_after_partial_write)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save_training_checkpoint(tmp_path, 20, model, optimizer)
    monkeypatch.undo()

    real_replace = os.replace

    def crash_on_index(src, dst):
        if str(dst).endswith("model.ckpt-30.index"):
            raise OSError("killed")
        real_replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", crash_on_index)
    with pytest.raises(OSError, match="killed"):
        checkpoint.save_training_checkpoint(tmp_path, 30, model, optimizer)
    monkeypatch.undo()

    assert checkpoint.latest_training_checkpoint(tmp_path) == good
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]
    fresh, fresh_opt = _setup(config, seed=5)
    assert checkpoint.restore_training_checkpoint(tmp_path, fresh, fresh_opt) == (10, {"a": 1})
    np.testing.assert_array_equal(fresh.bert.embeddings.word_embeddings.numpy(),
                                  saved_embeddings)


def test_index_keeps_latest_and_prunes_old(tmp_path, config):
    model = modeling.BertForQuestionAnswering(config)
    for step in (1, 2, 3, 4):
        checkpoint.save_training_checkpoint(tmp_path, step, model, max_to_keep=2)
    assert checkpoint.latest_training_checkpoint(tmp_path) == str(tmp_path / "model.ckpt-4")
    assert sorted(f for f in os.listdir(tmp_path) if f.endswith(".index")) == [
        "model.ckpt-3.index", "model.ckpt-4.index"]
    os.remove(tmp_path / "checkpoint")  # lost index: fall back to the highest step
    assert checkpoint.latest_training_checkpoint(tmp_path) == str(tmp_path / "model.ckpt-4")
    assert checkpoint.latest_training_checkpoint(tmp_path / "empty") is None
    # Our checkpoints are google-named: TF's own reader sees bert/... names.
    names = dict(tf.train.list_variables(str(tmp_path / "model.ckpt-4")))
    assert names["cls/squad/output_weights"] == [2, config.hidden_size]
    assert names["bert/encoder/layer_0/attention/self/query/kernel"] == [64, 64]
