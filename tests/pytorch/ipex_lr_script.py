"""Runs run_pretraining.py's ``run_main`` with the flags given, recording before every optimizer
step what the optimizer that steps holds: each param group's ``lr`` and the optimizer state's
step count (JSON lines appended to ``$LR_RECORD``). With ``$STOP_BEFORE_STEP=N`` the run dies
(exit 3) just before optimizer step N, as a killed job would, leaving the last ``--save_steps``
save behind. Used by test_ipex.py, in the IPEX venv, to check that the LR scheduler drives the
optimizer ``ipex.optimize`` hands back, also after a resume."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from models.bert_large.pytorch import run_pretraining  # noqa: E402

RECORD = Path(os.environ["LR_RECORD"])
STOP_BEFORE = int(os.environ.get("STOP_BEFORE_STEP", "0"))
_prepare = run_pretraining.prepare_for_training
_calls = 0


class Killed(Exception):
    pass


def prepare_for_training(*args, **kwargs):
    model, optimizer, train_model = _prepare(*args, **kwargs)
    step = optimizer.step

    def recording_step(*a, **k):
        global _calls
        _calls += 1
        if _calls == STOP_BEFORE:
            raise Killed
        state = next(iter(optimizer.state.values()), {})
        with RECORD.open("a") as f:
            f.write(json.dumps({"lrs": [g["lr"] for g in optimizer.param_groups],
                                "state_step": int(state.get("step", 0))}) + "\n")
        return step(*a, **k)

    optimizer.step = recording_step
    return model, optimizer, train_model


run_pretraining.prepare_for_training = prepare_for_training

if __name__ == "__main__":
    try:
        code = run_pretraining.run_main(sys.argv[1:])
    except Killed:
        print(f"killed before optimizer step {STOP_BEFORE}", flush=True)
        code = 3
    sys.exit(code)
