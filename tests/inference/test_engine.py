"""The inference engine (models/bert_large/tensorflow/inference.py): the compiled serving
function and the SavedModel give the model's logits; bf16 follows the precision policy; a
checkpoint without the SQuAD head is refused; latency figures; fp32 logits equal Hugging Face
BertForQuestionAnswering (the benchmark's PyTorch worker, run in a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from models.bert_large.tensorflow import checkpoint, inference, modeling, precision
from tests.packages.helpers import REPO
from tests.tf.conftest import make_config_dict

BENCH = REPO / "benchmarks" / "squad_inference.py"


@pytest.fixture(autouse=True)
def _fp32_after():
    yield
    precision.set_precision("fp32")


def _inputs(config, batch=3, seq=32, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, config.vocab_size, size=(batch, seq)).astype(np.int32)
    mask = np.ones((batch, seq), np.int32)
    mask[1, 20:] = 0
    ids[1, 20:] = 0
    seg = np.zeros((batch, seq), np.int32)
    seg[:, 10:] = 1
    return {"input_ids": ids, "input_mask": mask, "segment_ids": seg}


def test_serving_function_and_saved_model_give_the_models_logits(squad_model_dir, tmp_path):
    import tensorflow as tf

    config = modeling.BertConfig.from_json_file(squad_model_dir / "bert_config.json")
    model = inference.build_model(config, str(squad_model_dir), "fp32")
    x = _inputs(config)
    eager = model(x, training=False)
    serve = inference.serving_function(model, 32)
    out = serve(*(tf.constant(x[k]) for k in inference.INPUT_KEYS))
    for k in inference.OUTPUT_KEYS:
        np.testing.assert_allclose(out[k].numpy(), eager[k].numpy(), atol=1e-5)
    path = inference.export_saved_model(model, str(tmp_path / "saved_model"), 32)
    loaded = tf.saved_model.load(path)
    sig = loaded.signatures["serving_default"]
    assert sorted(sig.structured_input_signature[1]) == sorted(inference.INPUT_KEYS)
    got = sig(**{k: tf.constant(x[k]) for k in inference.INPUT_KEYS})
    for k in inference.OUTPUT_KEYS:
        np.testing.assert_allclose(got[k].numpy(), eager[k].numpy(), atol=1e-5)
    # the checkpoint's SQuAD head was loaded, not left random
    weights = checkpoint.model_weights(model)
    assert abs(float(np.abs(weights["cls/squad/output_weights"]).mean()) - 0.4) < 0.1


def test_bf16_runs_bfloat16_with_float32_logits_close_to_fp32(squad_model_dir):
    import tensorflow as tf

    config = modeling.BertConfig.from_json_file(squad_model_dir / "bert_config.json")
    x = _inputs(config)
    feed = [tf.constant(x[k]) for k in inference.INPUT_KEYS]
    fp32 = inference.serving_function(inference.build_model(config, str(squad_model_dir),
                                                            "fp32"), 32)(*feed)
    model = inference.build_model(config, str(squad_model_dir), "bf16")
    assert model.compute_dtype == "bfloat16"
    assert all(v.dtype == tf.float32 for v in model.trainable_variables)
    bf16 = inference.serving_function(model, 32)(*feed)
    for k in inference.OUTPUT_KEYS:
        assert bf16[k].dtype == tf.float32
        diff = np.abs(bf16[k].numpy() - fp32[k].numpy()).max()
        assert 0 < diff < 0.25, diff  # bfloat16 rounding, not another model


def test_pretrained_checkpoint_without_squad_head_is_refused(pretrained_model_dir):
    config = modeling.BertConfig.from_json_file(pretrained_model_dir / "bert_config.json")
    with pytest.raises(inference.InferenceError, match="cls/squad/output_weights"):
        inference.build_model(config, str(pretrained_model_dir), "fp32")


def test_summary_percentiles_and_throughput():
    s = inference.summarize([0.010, 0.020, 0.030, 0.040, 0.100], batch_size=4)
    assert s["examples_per_sec"] == pytest.approx(20 / 0.2)
    assert s["latency_ms"]["p50"] == pytest.approx(30.0)
    assert s["latency_ms"]["p90"] == pytest.approx(76.0)
    assert s["latency_ms"]["p99"] == pytest.approx(97.6)
    assert s["timed_examples"] == 20


def test_batches_cycle_a_small_predict_file():
    arrays = {k: np.arange(3 * 4).reshape(3, 4) for k in inference.INPUT_KEYS}
    got = inference.batches(arrays, batch_size=5, count=2)
    assert [b[0][:, 0].tolist() for b in got] == [[0, 4, 8, 0, 4], [8, 0, 4, 8, 0]]


@pytest.mark.slow
def test_fp32_logits_equal_hugging_face_question_answering(tmp_path):
    """Our serving path (checkpoint -> compiled tf.function) against transformers'
    BertForQuestionAnswering loaded with the same weights, as the benchmark runs them."""
    pytest.importorskip("transformers")
    config = make_config_dict(max_position_embeddings=64, hidden_act="gelu")
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2",
           "TRANSFORMERS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    (tmp_path / "bert_config.json").write_text(json.dumps(config))
    files = [str(tmp_path / n) for n in ("bert_config.json", "weights.npz", "model.ckpt",
                                         "inputs.npz")]
    subprocess.run([sys.executable, str(BENCH), "--worker", "write", "--config", files[0],
                    "--weights", files[1], "--checkpoint", files[2], "--inputs", files[3],
                    "--batch", "3", "--seq", "48"], check=True, env=env, timeout=300)
    logits = {}
    for worker in ("ours", "hf"):
        out = str(tmp_path / worker)
        proc = subprocess.run([sys.executable, str(BENCH), "--worker", worker, "--precision",
                               "fp32", "--config", files[0], "--weights", files[1],
                               "--checkpoint", files[2], "--inputs", files[3], "--out", out,
                               "--steps", "1", "--warmup", "0"], capture_output=True,
                              text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        logits[worker] = dict(np.load(out + ".npz"))
    for k in inference.OUTPUT_KEYS:
        np.testing.assert_allclose(logits["ours"][k], logits["hf"][k], atol=1e-4, rtol=0)
        assert np.abs(logits["hf"][k]).max() > 0.05  # not trivially zero
