"""The whole TensorFlow BERT suite (tests/tf) on TensorFlow 2.15.1 / Keras 2.15, the stack
Habana's Gaudi bridge pins, in the ``.venv-tf215`` interpreter (a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from tests.tf_stacks import REPO, require_tf215

pytestmark = pytest.mark.slow


def test_tf_suite_passes_on_tf215():
    python = require_tf215()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["MODELPKG_REFERENCE_PYTHON"] = sys.executable  # transformers + torch live here
    start = time.monotonic()
    proc = subprocess.run(
        [python, "-m", "pytest", "tests/tf", "-q", "-p", "no:cacheprovider", "-x"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=20 * 60,
    )
    seconds = time.monotonic() - start
    output = proc.stdout + proc.stderr
    print(f"tests/tf on TF 2.15: rc {proc.returncode} in {seconds:.0f} s")
    assert proc.returncode == 0, (
        f"tests/tf failed on TF 2.15 (rc {proc.returncode}, {seconds:.0f} s):\n{output[-6000:]}")


_LAMB_STEPS = textwrap.dedent(r"""
    import sys
    import numpy as np
    import tensorflow as tf
    from models.bert_large.tensorflow import optimization
    rng = np.random.default_rng(0)
    w = [tf.Variable(rng.standard_normal((4, 3)).astype(np.float32), name="kernel"),
         tf.Variable(np.zeros(3, np.float32), name="bias")]
    opt = optimization.create_optimizer("lamb", 0.01, num_train_steps=10, num_warmup_steps=2)
    lrs = []
    for _ in range(5):
        lrs.append(float(opt.learning_rate))
        opt.apply_gradients([(tf.constant(rng.standard_normal(v.shape).astype(np.float32)), v)
                             for v in w])
    np.savez(sys.argv[1], kernel=w[0].numpy(), bias=w[1].numpy(), lrs=np.array(lrs),
             iterations=int(opt.iterations.numpy()))
""")


def test_keras2_lamb_and_schedule_match_keras3(tmp_path):
    """compat.Lamb (Keras 2) takes the same steps as keras.optimizers.Lamb (Keras 3), with
    weight decay, warmup and the learning rate read before each step."""
    python215 = require_tf215()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = REPO
    script = tmp_path / "lamb.py"
    script.write_text(_LAMB_STEPS)
    results = {}
    for name, python in (("tf2.21", sys.executable), ("tf2.15", python215)):
        out = tmp_path / f"{name}.npz"
        proc = subprocess.run([python, str(script), str(out)], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[name] = dict(np.load(out))
    new, old = results["tf2.21"], results["tf2.15"]
    assert int(old["iterations"]) == int(new["iterations"]) == 5
    np.testing.assert_array_equal(old["lrs"], new["lrs"])
    for key in ("kernel", "bias"):
        np.testing.assert_allclose(old[key], new[key], rtol=1e-6, atol=1e-7)
