"""``--profile START,STOP``: a TensorFlow profiler trace of training steps START..STOP
(1-based, both included), as Habana's scripts take it.

The trace goes to ``<output_dir>/plugins/profile/<run>/*.xplane.pb`` (TensorBoard's layout:
``tensorboard --logdir <output_dir>``, Profile tab). On a Gaudi the bridge adds the HPU
activity to the same trace; Habana's own profiling variables (``HABANA_PROFILE``,
``HABANA_SYNAPSE_LOGGER``, ...) reach the ranks unchanged (the launcher forwards ``HABANA_*``).
Only the rank that writes outputs profiles.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger("bert")


def parse(value: str) -> tuple[int, int]:
    """``"30,31"`` -> (30, 31); ``"5"`` -> (5, 5). ValueError with the rule otherwise."""
    parts = [p.strip() for p in value.split(",")]
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"--profile={value}: expected START,STOP step numbers, e.g. 30,31")
    start, stop = int(parts[0]), int(parts[1])
    if start < 1 or stop < start:
        raise ValueError(f"--profile={value}: need 1 <= START <= STOP")
    return start, stop


class StepProfiler:
    """Call :meth:`begin` before and :meth:`end` after each training step (1-based)."""

    def __init__(self, steps: tuple[int, int] | None, logdir: str, enabled: bool = True):
        self.steps = steps if enabled else None
        self.logdir = logdir
        self.active = False
        self.written: str | None = None

    def begin(self, step: int) -> None:
        if self.steps and step == self.steps[0] and not self.active:
            import tensorflow as tf  # noqa: PLC0415

            os.makedirs(self.logdir, exist_ok=True)
            tf.profiler.experimental.start(self.logdir)
            self.active = True
            log.info("profiler: tracing steps %d-%d into %s", *self.steps, self.logdir)

    def end(self, step: int, last_step: int | None = None) -> None:
        if self.active and (step >= self.steps[1] or step == last_step):
            self.stop()

    def stop(self) -> None:
        if not self.active:
            return
        import tensorflow as tf  # noqa: PLC0415

        tf.profiler.experimental.stop()
        self.active = False
        self.written = os.path.join(self.logdir, "plugins", "profile")
        log.info("profiler: trace written under %s", self.written)

    def check_reachable(self, total_steps: int) -> None:
        """Warn when the run ends before the first profiled step."""
        if self.steps and self.steps[0] > total_steps:
            log.warning("--profile=%d,%d: the run has only %d step(s); nothing is traced",
                        self.steps[0], self.steps[1], total_steps)
