"""Model math and training behaviour.

- fp32 logits equal Hugging Face ``transformers`` (PyTorch) BertForPreTraining and
  BertForQuestionAnswering given the same weights — an independent check of the math. The
  torch side runs in a subprocess (torch and TensorFlow do not share a process); weights,
  inputs and outputs travel as .npz files.
- bf16 computes in bfloat16 with float32 variables and float32 logits, close to fp32.
- Loss falls on a tiny synthetic task in fp32 and bf16.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from models.bert_large.tensorflow import checkpoint, compat, modeling
from models.bert_large.tensorflow import finetune_loop as loop
from tests.tf.conftest import make_config_dict

# every test starts, and leaves, with the float32 Keras policy
pytestmark = pytest.mark.usefixtures("fp32_policy")

_TORCH_REFERENCE = textwrap.dedent(
    r'''
    import json, sys
    import numpy as np
    import torch
    import transformers

    cfg, weights_npz, inputs_npz, out_npz = sys.argv[1:5]
    c = json.load(open(cfg))
    hf_config = transformers.BertConfig(
        vocab_size=c["vocab_size"], hidden_size=c["hidden_size"],
        num_hidden_layers=c["num_hidden_layers"], num_attention_heads=c["num_attention_heads"],
        intermediate_size=c["intermediate_size"], hidden_act=c["hidden_act"],
        max_position_embeddings=c["max_position_embeddings"],
        type_vocab_size=c["type_vocab_size"], layer_norm_eps=1e-12,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    w = dict(np.load(weights_npz))
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))

    def bert_state(prefix):
        s = {}
        e = "bert/embeddings/"
        s["bert.embeddings.word_embeddings.weight"] = t(w[e + "word_embeddings"])
        s["bert.embeddings.position_embeddings.weight"] = t(w[e + "position_embeddings"])
        s["bert.embeddings.token_type_embeddings.weight"] = t(w[e + "token_type_embeddings"])
        s["bert.embeddings.LayerNorm.weight"] = t(w[e + "LayerNorm/gamma"])
        s["bert.embeddings.LayerNorm.bias"] = t(w[e + "LayerNorm/beta"])
        def dense(hf, g):
            s[hf + ".weight"] = t(w[g + "/kernel"].T)
            s[hf + ".bias"] = t(w[g + "/bias"])
        def ln(hf, g):
            s[hf + ".weight"] = t(w[g + "/gamma"])
            s[hf + ".bias"] = t(w[g + "/beta"])
        for i in range(c["num_hidden_layers"]):
            hf, g = f"bert.encoder.layer.{i}", f"bert/encoder/layer_{i}"
            for part in ("query", "key", "value"):
                dense(f"{hf}.attention.self.{part}", f"{g}/attention/self/{part}")
            dense(f"{hf}.attention.output.dense", f"{g}/attention/output/dense")
            ln(f"{hf}.attention.output.LayerNorm", f"{g}/attention/output/LayerNorm")
            dense(f"{hf}.intermediate.dense", f"{g}/intermediate/dense")
            dense(f"{hf}.output.dense", f"{g}/output/dense")
            ln(f"{hf}.output.LayerNorm", f"{g}/output/LayerNorm")
        return s, dense, ln

    def load(model, state):
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith(("position_ids", "decoder.weight",
                                                         "decoder.bias"))]
        assert not missing and not unexpected, (missing, unexpected)
        model.eval()

    x = dict(np.load(inputs_npz))
    feed = dict(input_ids=t(x["input_ids"]).long(), attention_mask=t(x["input_mask"]).long(),
                token_type_ids=t(x["segment_ids"]).long())
    out = {}
    with torch.no_grad():
        if "cls/predictions/output_bias" in w:
            s, dense, ln = bert_state("bert")
            dense("bert.pooler.dense", "bert/pooler/dense")
            dense("cls.predictions.transform.dense", "cls/predictions/transform/dense")
            ln("cls.predictions.transform.LayerNorm", "cls/predictions/transform/LayerNorm")
            s["cls.predictions.bias"] = t(w["cls/predictions/output_bias"])
            s["cls.seq_relationship.weight"] = t(w["cls/seq_relationship/output_weights"])
            s["cls.seq_relationship.bias"] = t(w["cls/seq_relationship/output_bias"])
            m = transformers.BertForPreTraining(hf_config)
            load(m, s)
            r = m(**feed)
            pos = t(x["masked_lm_positions"]).long()
            logits = r.prediction_logits
            picked = torch.gather(logits, 1, pos[..., None].expand(-1, -1, logits.shape[-1]))
            out["masked_lm_logits"] = picked.numpy()
            out["next_sentence_logits"] = r.seq_relationship_logits.numpy()
        else:
            s, dense, ln = bert_state("bert")
            s["qa_outputs.weight"] = t(w["cls/squad/output_weights"])
            s["qa_outputs.bias"] = t(w["cls/squad/output_bias"])
            m = transformers.BertForQuestionAnswering(hf_config)
            load(m, s)
            r = m(**feed)
            out["start_logits"] = r.start_logits.numpy()
            out["end_logits"] = r.end_logits.numpy()
    np.savez(out_npz, **out)
    '''
)


def _random_inputs(config, batch=3, seq=24, positions=5, seed=0):
    rng = np.random.default_rng(seed)
    lengths = [seq, seq - 7, 9][:batch]
    input_ids = rng.integers(5, config.vocab_size, size=(batch, seq)).astype(np.int32)
    input_mask = np.zeros((batch, seq), np.int32)
    segment_ids = np.zeros((batch, seq), np.int32)
    for b, n in enumerate(lengths):
        input_mask[b, :n] = 1
        segment_ids[b, n // 2:n] = 1
        input_ids[b, n:] = 0
    masked = np.stack([rng.choice(n, positions, replace=False) for n in lengths]).astype(np.int32)
    return {"input_ids": input_ids, "input_mask": input_mask, "segment_ids": segment_ids,
            "masked_lm_positions": masked}


def _randomize(model, seed=1):
    """Non-trivial weights everywhere (biases and LayerNorm too), so every term matters."""
    rng = np.random.default_rng(seed)
    for v in model.trainable_variables:
        scale = 0.1 if "gamma" not in compat.variable_path(v) else 0.2
        base = 1.0 if "gamma" in compat.variable_path(v) else 0.0
        v.assign((base + scale * rng.standard_normal(v.shape)).astype(np.float32))


def _reference_python() -> str:
    """The interpreter for the transformers reference: this one, or the one named by
    ``MODELPKG_REFERENCE_PYTHON`` (tests/tf215 runs this suite in the TF 2.15 venv, which has
    no PyTorch, and points it at the main interpreter)."""
    python = os.environ.get("MODELPKG_REFERENCE_PYTHON", sys.executable)
    if python == sys.executable and not all(
            importlib.util.find_spec(m) for m in ("torch", "transformers")):
        pytest.skip("the transformers reference needs torch + transformers: install them or "
                    "set MODELPKG_REFERENCE_PYTHON to an interpreter that has them")
    return python


def _torch_reference(tmp_path, config, weights, inputs):
    python = _reference_python()
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
    np.savez(tmp_path / "weights.npz", **weights)
    np.savez(tmp_path / "inputs.npz", **inputs)
    (tmp_path / "ref.py").write_text(_TORCH_REFERENCE)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(TRANSFORMERS_OFFLINE="1", HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error",
               OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [python, str(tmp_path / "ref.py"), str(tmp_path / "config.json"),
         str(tmp_path / "weights.npz"), str(tmp_path / "inputs.npz"), str(tmp_path / "out.npz")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(np.load(tmp_path / "out.npz"))


@pytest.fixture
def config():
    return modeling.BertConfig.from_dict(make_config_dict(max_position_embeddings=64))


@pytest.mark.slow
def test_pretraining_logits_equal_transformers(tmp_path, config):
    model = modeling.BertForPreTraining(config).ensure_built()
    _randomize(model)
    inputs = _random_inputs(config)
    ours = model(inputs, training=False)
    ref = _torch_reference(tmp_path, config, checkpoint.model_weights(model), inputs)
    for key in ("masked_lm_logits", "next_sentence_logits"):
        assert ours[key].dtype == tf.float32
        np.testing.assert_allclose(ours[key].numpy(), ref[key], atol=1e-4, rtol=1e-4)
        assert np.abs(ref[key]).max() > 0.1  # logits are not trivially small


@pytest.mark.slow
def test_question_answering_logits_equal_transformers(tmp_path, config):
    model = modeling.BertForQuestionAnswering(config).ensure_built()
    _randomize(model, seed=2)
    inputs = _random_inputs(config, seed=3)
    ours = model(inputs, training=False)
    ref = _torch_reference(tmp_path, config, checkpoint.model_weights(model), inputs)
    for key in ("start_logits", "end_logits"):
        np.testing.assert_allclose(ours[key].numpy(), ref[key], atol=1e-4, rtol=1e-4)


def test_padding_does_not_change_real_positions(config):
    """input_mask hides padded tokens: appending padding leaves the outputs unchanged."""
    model = modeling.BertModel(config)
    short = _random_inputs(config, batch=1, seq=12)
    padded = {k: np.pad(v, [(0, 0), (0, 6)])
              for k, v in short.items() if k != "masked_lm_positions"}
    padded["input_ids"][:, 12:] = 7  # garbage under the mask
    a = model(short, training=False)["sequence_output"].numpy()
    b = model(padded, training=False)["sequence_output"].numpy()
    np.testing.assert_allclose(a, b[:, :12], atol=1e-5)


def test_config_round_trip_and_errors(tmp_path, config):
    path = tmp_path / "bert_config.json"
    path.write_text(config.to_json_string())
    assert modeling.BertConfig.from_json_file(path) == config
    with pytest.raises(ValueError, match="multiple of num_attention_heads"):
        modeling.BertConfig(vocab_size=10, hidden_size=64, num_attention_heads=5)
    with pytest.raises(ValueError, match="hidden_act"):
        modeling.BertConfig(vocab_size=10, hidden_act="mish")
    with pytest.raises(FileNotFoundError, match="--bert_config_file"):
        modeling.BertConfig.from_json_file(tmp_path / "nope.json")
    with pytest.raises(ValueError, match="fp32, bf16"):
        modeling.set_precision("fp16")
    too_long = np.ones((1, config.max_position_embeddings + 1), np.int32)
    with pytest.raises(ValueError, match="max_position_embeddings.*--max_seq_length"):
        modeling.BertModel(config)({"input_ids": too_long, "input_mask": too_long,
                                    "segment_ids": too_long})
    with pytest.raises(KeyError, match="segment_ids"):
        modeling.BertModel(config)({"input_ids": np.ones((1, 4), np.int32),
                                    "input_mask": np.ones((1, 4), np.int32)})


def test_classifier_dropout_only_in_training(config):
    model = modeling.BertForSequenceClassification(config, num_labels=3)
    inputs = _random_inputs(config, batch=2)
    a = model(inputs, training=False)["logits"].numpy()
    b = model(inputs, training=False)["logits"].numpy()
    c = model(inputs, training=True)["logits"].numpy()
    assert a.shape == (2, 3)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_bf16_computes_in_bfloat16_with_float32_variables_and_logits(config):
    fp32 = modeling.BertForPreTraining(config).ensure_built()
    _randomize(fp32)
    modeling.set_precision("bf16")
    bf16 = modeling.BertForPreTraining(config).ensure_built()
    bf16.set_weights(fp32.get_weights())

    assert all(v.dtype == "float32" for v in bf16.weights)
    assert bf16.bert.encoder_layers[0].attention.qkv.compute_dtype == "bfloat16"
    assert bf16.bert.encoder_layers[0].layer_norm.compute_dtype == "float32"
    inputs = _random_inputs(config)
    out16 = bf16(inputs, training=False)
    out32 = fp32(inputs, training=False)
    for key in ("masked_lm_logits", "next_sentence_logits", "sequence_output"):
        assert out16[key].dtype == tf.float32
    a, b = out16["masked_lm_logits"].numpy(), out32["masked_lm_logits"].numpy()
    assert not np.array_equal(a, b)  # really computed in lower precision
    assert np.abs(a - b).max() < 0.05 * np.abs(b).max()


def _synthetic_pretraining_batch(config, batch=8, seq=16, positions=3, seed=0):
    """A learnable task: masked token = the token just before it; NSP label = segment length
    parity."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, 40, size=(batch, seq)).astype(np.int32)
    pos = np.stack([rng.choice(np.arange(1, seq), positions, replace=False)
                    for _ in range(batch)]).astype(np.int32)
    labels = np.take_along_axis(ids, pos - 1, axis=1)
    np.put_along_axis(ids, pos, 4, axis=1)  # [MASK]
    split = rng.integers(4, seq - 4, size=batch)
    segment = (np.arange(seq)[None] >= split[:, None]).astype(np.int32)
    return {
        "input_ids": ids, "input_mask": np.ones_like(ids), "segment_ids": segment,
        "masked_lm_positions": pos, "masked_lm_ids": labels,
        "masked_lm_weights": np.ones_like(pos, np.float32),
        "next_sentence_labels": (split % 2).astype(np.int32),
    }


def pretraining_loss(outputs, features):
    return modeling.pretraining_loss(outputs, features["masked_lm_ids"],
                                     features["masked_lm_weights"],
                                     features["next_sentence_labels"])


_STEPS: dict = {}


def train_steps(model, optimizer, batch, steps):
    """Run ``steps`` training steps on one batch (one traced step per model); the losses."""
    key = (id(model), id(optimizer))
    if key not in _STEPS:
        _STEPS.clear()
        _STEPS[key] = loop.make_train_step(model, pretraining_loss, optimizer)
    features = {k: tf.constant(v) for k, v in batch.items()}
    return [float(_STEPS[key](features)) for _ in range(steps)]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_loss_falls_on_synthetic_task(precision):
    modeling.set_precision(precision)
    config = modeling.BertConfig.from_dict(make_config_dict(
        num_hidden_layers=2, max_position_embeddings=32, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0))
    model = modeling.BertForPreTraining(config)
    losses = train_steps(model, keras.optimizers.Adam(2e-3),
                         _synthetic_pretraining_batch(config), steps=40)
    assert all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3]), losses


def test_xla_train_step_matches_tf_function_step():
    """make_train_step(jit_compile=True) (what tf_train_step.py --xla measures) trains the
    same: same losses as the plain tf.function step from the same weights, no dropout."""
    modeling.set_precision("fp32")
    config = modeling.BertConfig.from_dict(make_config_dict(
        max_position_embeddings=32, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    features = {k: tf.constant(v) for k, v in _synthetic_pretraining_batch(config).items()}
    losses = {}
    for xla in (False, True):
        keras.utils.set_random_seed(0)
        model = modeling.BertForPreTraining(config)
        step = loop.make_train_step(model, pretraining_loss, keras.optimizers.Adam(2e-3),
                                    jit_compile=xla)
        losses[xla] = [float(step(features)) for _ in range(5)]
    np.testing.assert_allclose(losses[True], losses[False], rtol=2e-4, atol=2e-4)
    assert losses[True][-1] < losses[True][0]


def test_xla_bf16_train_step_loss_falls():
    modeling.set_precision("bf16")
    try:
        config = modeling.BertConfig.from_dict(make_config_dict(
            max_position_embeddings=32, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0))
        model = modeling.BertForPreTraining(config)
        step = loop.make_train_step(model, pretraining_loss, keras.optimizers.Adam(2e-3),
                                    jit_compile=True)
        features = {k: tf.constant(v) for k, v in _synthetic_pretraining_batch(config).items()}
        losses = [float(step(features)) for _ in range(30)]
    finally:
        modeling.set_precision("fp32")
    assert all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3]), losses


_TINY_BENCH = ["--layers", "1", "--hidden", "32", "--heads", "2", "--vocab", "100",
               "--seq_length", "16", "--batch_size", "2", "--masked_positions", "2"]


def _run_benchmark(script, *args):
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run(
        [sys.executable, os.path.join(repo, "benchmarks", script), *_TINY_BENCH, *args,
         "--json"], capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_benchmark_script_prints_both_precisions_and_ratio():
    out, summary = _run_benchmark("tf_train_step.py", "--warmup", "1", "--steps", "2")
    assert "bf16/fp32 speed ratio, tf.function (CPU time)" in out
    assert "bf16/fp32 speed ratio, XLA (CPU time)" in out
    assert "ex/cpu-s" in out and "FLOP-weighted kernel ceiling" in out
    (r,) = summary["shapes"].values()
    cols = r["columns"]
    assert {"ours_fp32", "ours_bf16", "ours_xla_fp32", "ours_xla_bf16"} <= set(cols)
    for c in cols.values():
        assert c["examples_per_cpu_s"] > 0 and c["examples_per_sec"] > 0
        assert np.isfinite(c["final_loss"])
    assert r["bf16_over_fp32"] > 0 and r["bf16_over_fp32_xla"] > 0
    # The kernel ceiling: every matmul of the step timed in both precisions.
    ceiling = r["kernel_ceiling"]
    assert len(ceiling["kernels"]) == 7
    assert all(k["fp32"] > 0 and k["bf16"] > 0 for k in ceiling["kernels"])
    assert r["kernel_bf16_over_fp32"] > 0
    assert cols["ours_bf16"]["share_of_kernel_ceiling"] > 0
    assert r["gflop_per_step"] > 0
    if importlib.util.find_spec("keras_hub") is not None:
        assert {"keras_hub_fp32", "keras_hub_bf16"} <= set(cols)
        assert "ours/keras_hub bf16, tf.function (CPU time)" in out
        assert r["ours_over_keras_hub_bf16"] > 0
    else:
        assert "keras_hub column skipped" in out


@pytest.mark.slow
def test_benchmark_script_without_keras_hub_skips_the_column():
    out, summary = _run_benchmark("tf_train_step.py", "--warmup", "1", "--steps", "1",
                                  "--xla", "off", "--no_kernels", "--no_keras_hub")
    assert "keras_hub column skipped: --no_keras_hub" in out
    (r,) = summary["shapes"].values()
    assert set(r["columns"]) == {"ours_fp32", "ours_bf16"}
    assert "kernel_ceiling" not in r


def test_benchmark_flop_count_matches_kernel_cases():
    """The step's model FLOPs = 3 x the forward FLOPs of the matmuls the ceiling times (plus
    the small pooler/NSP/MLM-transform matmuls it leaves out)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), "benchmarks"))
    import tf_train_step as bench  # noqa: PLC0415

    args = bench._parse([])
    for shape in bench.SHAPES.values():
        timed = sum(case[-1] for case in bench.kernel_cases(shape, args))
        h, b = shape["hidden"], shape["batch_size"]
        untimed = h * h * b * args.masked_positions + (h * h + 2 * h) * b
        assert bench.step_flops(shape, args) == pytest.approx(3 * timed + 6 * untimed)


@pytest.mark.slow
def test_step_profile_prints_op_types_and_cast_share():
    out, summary = _run_benchmark("tf_step_profile.py", "--warmup", "1", "--steps", "1")
    assert "op type" in out and "top ops:" in out and "fp32 vs bf16" in out
    fp32, bf16 = summary["profiles"]["fp32"], summary["profiles"]["bf16"]
    assert any("MatMul" in k for k in fp32["by_type_ms"])
    assert fp32["op_ms_per_step"] > 0 and bf16["op_ms_per_step"] > 0
    # The mixed policy casts (weights to bf16, logits to fp32); fp32 needs no float casts.
    assert bf16["casts_per_step"] > fp32["casts_per_step"]
    assert 0 < bf16["cast_share"] < 1
