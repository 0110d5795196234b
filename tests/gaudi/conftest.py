"""``stack_python``: the interpreter the Gaudi package's scripts run with, once per TensorFlow
stack (tests/tf_stacks.py): TF 2.21 / Keras 3 (the CPU image's) and TF 2.15 / Keras 2 (what
Habana's bridge pins, so what the HPU image runs)."""

from __future__ import annotations

import pytest

from tests.tf_stacks import STACKS, stack_python_for


@pytest.fixture(scope="module", params=STACKS)
def stack_python(request) -> str:
    return stack_python_for(request.param)
