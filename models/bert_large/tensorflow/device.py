"""Where the TensorFlow BERT scripts run: a Habana Gaudi (HPU) through Habana's TensorFlow
bridge, or the CPU. The one place that decides; the scripts call :func:`select` after their
flags are checked and :func:`activate` before their first TensorFlow op.

Why probe before importing the bridge: measured with ``habana-tensorflow`` 1.14.0.493 (the
last bridge on PyPI) on a machine without a Gaudi, ``load_habana_module()`` raises
``AttributeError: 'NoneType' object has no attribute 'split'`` and the next TensorFlow device
call aborts the whole process (exit 134): a try/except gives no fallback. So the bridge is
only loaded when the kernel driver shows a Gaudi under ``/sys/class/accel/accel*/device/
device_type`` (habanalabs writes e.g. ``GAUDI2``) and the bridge module is installed.

``--device``: ``auto`` (default) takes the Gaudi when both are there, else the CPU, and says
which in one log line; ``hpu`` without them is an error naming what is missing; ``cpu``
never touches the bridge. ``$MODELPKG_ACCEL_SYSFS`` replaces ``/sys/class/accel`` (tests
point it at a folder they write; a stand-in ``habana_frameworks.tensorflow`` on
``PYTHONPATH`` plays the bridge).

Standard library only at import time (the bridge and TensorFlow load in :func:`activate`).
"""

from __future__ import annotations

import dataclasses
import glob
import importlib
import importlib.util
import logging
import os
from typing import Mapping

log = logging.getLogger("bert")

CHOICES = ("auto", "hpu", "cpu")
SYSFS_ENV = "MODELPKG_ACCEL_SYSFS"
SYSFS_DEFAULT = "/sys/class/accel"
BRIDGE_MODULE = "habana_frameworks.tensorflow"
# Environment a Gaudi run reads (bf16 conversion, logs, profiling, cards); logged on HPU.
HABANA_ENV_PREFIXES = ("HABANA_", "TF_BF16_", "LOG_LEVEL_", "ENABLE_CONSOLE")


class DeviceError(ValueError):
    """``--device=hpu`` asked for what this machine lacks; the message says what."""


@dataclasses.dataclass(frozen=True)
class Device:
    kind: str                 # "hpu" or "cpu"
    reason: str               # one line: why this device
    cards: tuple[str, ...] = ()  # device types seen in sysfs, e.g. ("GAUDI2", ...)

    @property
    def is_hpu(self) -> bool:
        return self.kind == "hpu"


def gaudi_cards(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Device types of the accelerators the kernel lists that are Gaudis (empty if none)."""
    environ = os.environ if environ is None else environ
    root = environ.get(SYSFS_ENV) or SYSFS_DEFAULT
    cards = []
    for path in sorted(glob.glob(os.path.join(root, "accel*", "device", "device_type"))):
        try:
            with open(path, encoding="ascii", errors="replace") as f:
                kind = f.read().strip()
        except OSError:
            continue
        if kind.upper().startswith("GAUDI"):
            cards.append(kind)
    return tuple(cards)


def bridge_installed() -> bool:
    try:
        return importlib.util.find_spec(BRIDGE_MODULE) is not None
    except (ImportError, ValueError):  # the parent package is missing or half-installed
        return False


def select(requested: str, environ: Mapping[str, str] | None = None) -> Device:
    """The device for ``--device=requested``; DeviceError when ``hpu`` cannot be had."""
    if requested not in CHOICES:
        raise DeviceError(f"--device={requested}: choose one of {', '.join(CHOICES)}")
    if requested == "cpu":
        return Device("cpu", "--device=cpu")
    environ = os.environ if environ is None else environ
    cards = gaudi_cards(environ)
    root = environ.get(SYSFS_ENV) or SYSFS_DEFAULT
    if not cards:
        why = (f"no Gaudi: {root} lists no accel*/device/device_type naming a GAUDI (is the "
               "habanalabs driver loaded, and the container started with --runtime=habana?)")
        if requested == "hpu":
            raise DeviceError(f"--device=hpu but {why}")
        return Device("cpu", why)
    if not bridge_installed():
        why = (f"{len(cards)} Gaudi card(s) ({cards[0]}) but the Habana TensorFlow bridge "
               f"({BRIDGE_MODULE}) is not installed: use Habana's TensorFlow image or pip "
               "install habana-tensorflow")
        if requested == "hpu":
            raise DeviceError(f"--device=hpu: {why}")
        return Device("cpu", why)
    return Device("hpu", f"{len(cards)} Gaudi card(s) ({cards[0]}), bridge {BRIDGE_MODULE}",
                  cards)


def activate(device: Device) -> None:
    """Load the Habana bridge for an HPU run (before any TensorFlow op); log the choice."""
    if not device.is_hpu:
        log.info("device: CPU (%s)", device.reason)
        return
    bridge = importlib.import_module(BRIDGE_MODULE)
    bridge.load_habana_module()
    habana_env = {k: v for k, v in sorted(os.environ.items())
                  if k.startswith(HABANA_ENV_PREFIXES)}
    log.info("device: HPU (%s); Habana environment: %s", device.reason,
             " ".join(f"{k}={v}" for k, v in habana_env.items()) or "none set")
