"""The TensorFlow stacks the TF BERT code runs on, and their interpreters.

- ``tf2.21``: this interpreter (TensorFlow 2.21 + Keras 3);
- ``tf2.15``: ``<repo>/.venv-tf215/bin/python`` (tensorflow-cpu 2.15.1 + Keras 2.15, the
  version Habana's Gaudi bridge pins), made by ``bash scripts/setup-test-env.sh``.
"""

from __future__ import annotations

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TF215_PYTHON = os.path.join(REPO, ".venv-tf215", "bin", "python")
STACKS = ("tf2.21", "tf2.15")


def require_tf215() -> str:
    """The TF 2.15 venv's python; when it is missing, fail under ``CI=true`` (CI installs it)
    and skip elsewhere."""
    if os.path.exists(TF215_PYTHON):
        return TF215_PYTHON
    message = (f"the TF 2.15 / Keras 2 venv is missing ({TF215_PYTHON}): create it with "
               "`bash scripts/setup-test-env.sh`")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def stack_python_for(stack: str) -> str:
    """The interpreter of ``stack`` (one of ``STACKS``)."""
    return sys.executable if stack == "tf2.21" else require_tf215()
