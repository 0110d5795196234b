"""Where PyTorch BERT pretraining runs: an NVIDIA GPU (CUDA) or the CPU. The one place that
decides, and the one place that knows what differs between the two; ``run_pretraining.py``
asks it and never branches on the device itself.

``--device`` (``DEVICE`` in the quickstarts): ``auto`` (default) takes CUDA when
``torch.cuda.is_available()``, else the CPU, and says why in one log line; ``cuda`` without a
visible CUDA device is a usage error naming the flag and what is missing; ``cpu`` never
touches CUDA. Intel Extension for PyTorch and ``--precision=avx-fp32`` run on the CPU only:
``auto`` then stays on the CPU, ``cuda`` is refused (exit 2).

What the device changes (everything else is the same code):

* rank ``local_rank`` of a host uses GPU ``local_rank % visible GPUs``: the launcher gives
  each rank one GPU (``CUDA_VISIBLE_DEVICES``, so that is ``cuda:0``); under ``torchrun``
  or a bare ``mpirun`` every rank sees all GPUs and takes its own;
* ``autocast``: bf16 is ``torch.autocast(device, dtype=torch.bfloat16)`` on either device;
  bf32 is TF32 matmuls on CUDA (oneDNN's bf16 math on the CPU, set in run_pretraining);
* ``DeviceBatches``: on CUDA a batch is copied from pinned host memory with
  ``non_blocking=True`` on a side stream while the previous step computes;
* ``ddp_backend``: NCCL on CUDA, gloo or oneCCL on the CPU (a pure function);
  ``ddp_kwargs``: ``device_ids`` for DDP on CUDA.

Checkpoints are device neutral: ``checkpoint.save`` writes CPU tensors and the loaders take a
``map_location``, so a model saved on a GPU resumes on a CPU and the other way round.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterable, Iterator, Mapping

import torch

__all__ = ["CHOICES", "DeviceError", "Device", "check_choice", "cuda_devices", "select",
           "activate", "autocast", "configure_matmul", "transfer_policy", "move_batch",
           "DeviceBatches", "ddp_backend", "ddp_kwargs", "describe"]

CHOICES = ("auto", "cuda", "cpu")
FLAG = "--device"
VARIABLE = "DEVICE"  # the quickstarts' name for it


class DeviceError(ValueError):
    """A ``--device`` (or device-dependent flag) this machine or this set-up cannot honour;
    the message names the flag and what is missing. A usage error (exit 2)."""


@dataclasses.dataclass(frozen=True)
class Device:
    kind: str                 # "cuda" or "cpu"
    reason: str               # one line: why this device
    index: int | None = None  # the CUDA device this process uses
    count: int = 0            # CUDA devices this process sees

    @property
    def is_cuda(self) -> bool:
        return self.kind == "cuda"

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.kind, self.index) if self.is_cuda else torch.device("cpu")


def check_choice(requested: str) -> str:
    """``requested`` when it is one of ``CHOICES`` (case-insensitive), else ``DeviceError``."""
    value = (requested or "").strip().lower()
    if value not in CHOICES:
        raise DeviceError(f"{FLAG}={requested}: choose one of {', '.join(CHOICES)} "
                          f"({VARIABLE} in the quickstarts)")
    return value


def cuda_devices() -> tuple[int, str, str]:
    """(CUDA devices torch sees, why none when 0, what to do about it). Probing initialises
    nothing on a GPU."""
    if torch.version.cuda is None:
        return (0, f"torch {torch.__version__} is a CPU-only build",
                "install a CUDA build of torch")
    if not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        hint = f", CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else ""
        return (0, f"torch {torch.__version__} (CUDA {torch.version.cuda}{hint}) sees no GPU",
                "check that the NVIDIA driver is loaded (nvidia-smi) and that the container "
                "was started with --gpus all")
    return torch.cuda.device_count(), "", ""


def select(requested: str, local_rank: int = 0, cpu_only: str | None = None,
           cuda: tuple[int, str, str] | None = None) -> Device:
    """The device for ``--device=requested`` of the process with ``local_rank`` on its host.

    ``cpu_only``: why this run must stay on the CPU (IPEX in use, a CPU-only precision), or
    None. ``cuda``: ``(device count, why none, the fix)`` as :func:`cuda_devices` returns it
    (probed when None; tests pass it). ``DeviceError`` when ``cuda`` is asked for and cannot
    be had."""
    requested = check_choice(requested)
    if requested == "cpu":
        return Device("cpu", f"{FLAG}=cpu")
    if cpu_only and requested == "cuda":
        raise DeviceError(f"{FLAG}=cuda ({VARIABLE}=cuda): {cpu_only}")
    count, why_none, fix = cuda if cuda is not None else cuda_devices()
    if count < 1:
        if requested == "cuda":
            raise DeviceError(f"{FLAG}=cuda ({VARIABLE}=cuda) but no CUDA device is visible: "
                              f"{why_none}; {fix}, or use {FLAG}=cpu")
        return Device("cpu", f"{FLAG}=auto: no CUDA device is visible, {why_none}")
    if cpu_only:  # auto on a GPU host, but this run is a CPU one
        return Device("cpu", f"{FLAG}=auto: {count} CUDA device(s) visible, but {cpu_only}")
    index = local_rank % count
    return Device("cuda", f"{FLAG}={requested}: {count} CUDA device(s) visible, local rank "
                          f"{local_rank} takes cuda:{index}", index=index, count=count)


def activate(device: Device) -> None:
    """Make ``device`` this process' current CUDA device (before any CUDA work, and before the
    process group: NCCL's collectives run on the current device)."""
    if device.is_cuda:
        torch.cuda.set_device(device.index)


def describe(device: Device) -> str:
    """One line for the log: the device, its name, and why it was chosen."""
    if device.is_cuda:
        name = torch.cuda.get_device_name(device.index)
        return f"device: CUDA cuda:{device.index} ({name}; {device.reason})"
    return f"device: CPU ({device.reason})"


def autocast(device: Device, precision: str):
    """The context a forward pass runs in: bf16 autocast on this device for ``bf16``."""
    if precision == "bf16":
        return torch.autocast(device.kind, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def configure_matmul(device: Device, precision: str) -> None:
    """CUDA's fp32 matmul math: TF32 for ``bf32`` (fp32 tensors, reduced-precision products,
    as bf32 is on the CPU), full fp32 otherwise. The CPU's is set in run_pretraining."""
    if device.is_cuda:
        tf32 = precision == "bf32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32


def transfer_policy(device: Device) -> tuple[bool, bool]:
    """(pin host memory, copy non_blocking) for batches going to ``device``: both on CUDA (an
    asynchronous copy needs page-locked memory), neither on the CPU (nothing is copied)."""
    return (True, True) if device.is_cuda else (False, False)


def move_batch(batch: Mapping[str, torch.Tensor], target: torch.device, pin: bool = False,
               non_blocking: bool = False) -> dict[str, torch.Tensor]:
    """``batch`` on ``target``: each tensor pinned first when ``pin``, copied with
    ``non_blocking``. Tensors already there are returned as they are."""
    out = {}
    for name, tensor in batch.items():
        if tensor.device != target:
            if pin:
                tensor = tensor.pin_memory()
            tensor = tensor.to(target, non_blocking=non_blocking)
        out[name] = tensor
    return out


class DeviceBatches:
    """The batches of ``batches`` on ``device``.

    On CUDA the next batch is pinned and copied on a side stream as soon as the current one
    is handed out, so the copy overlaps the step that uses the current one; the compute stream
    waits for the copy, and ``record_stream`` keeps the caching allocator from reusing the
    memory early. An error reading the next batch is raised when that batch is asked for. On
    the CPU batches pass through unchanged."""

    def __init__(self, batches: Iterable[Mapping[str, torch.Tensor]], device: Device):
        self.device = device
        self._source: Iterator = iter(batches)
        self._pin, self._non_blocking = transfer_policy(device)
        self._stream = torch.cuda.Stream(device.index) if device.is_cuda else None
        self._ready: dict | None = None
        self._error: BaseException | None = None

    def __iter__(self) -> DeviceBatches:
        return self

    def _prefetch(self) -> None:
        try:
            batch = next(self._source)
        except Exception as exc:  # noqa: BLE001 - StopIteration or a bad record: raised in turn
            self._error = exc
            return
        with torch.cuda.stream(self._stream):
            self._ready = move_batch(batch, self.device.torch_device, self._pin,
                                     self._non_blocking)

    def __next__(self) -> dict[str, torch.Tensor]:
        if self._stream is None:
            return move_batch(next(self._source), self.device.torch_device)
        if self._ready is None and self._error is None:
            self._prefetch()
        if self._ready is None:
            error, self._error = self._error, None
            raise error
        batch, self._ready = self._ready, None
        current = torch.cuda.current_stream(self.device.index)
        current.wait_stream(self._stream)
        for tensor in batch.values():
            tensor.record_stream(current)
        self._prefetch()
        return batch


def ddp_backend(device_kind: str, requested: str, ccl_importable: bool) -> str:
    """The torch.distributed backend for ``--dist_backend=requested`` on ``device_kind``:
    NCCL on CUDA (``auto``/``nccl``; gloo when asked), oneCCL when its bindings import else
    gloo on the CPU (``auto``). ``DeviceError`` for a backend the device cannot use."""
    if device_kind == "cuda":
        if requested in ("auto", "nccl"):
            return "nccl"
        if requested == "gloo":
            return "gloo"
        raise DeviceError(f"--dist_backend={requested} runs on the CPU only; on {FLAG}=cuda use "
                          "nccl (auto) or gloo")
    if requested == "nccl":
        raise DeviceError(f"--dist_backend=nccl needs {FLAG}=cuda (GPUs); on the CPU use gloo "
                          "or ccl (auto)")
    if requested == "auto":
        return "ccl" if ccl_importable else "gloo"
    return requested


def ddp_kwargs(device: Device) -> dict:
    """DistributedDataParallel's device arguments: this process' GPU on CUDA, none on CPU."""
    if device.is_cuda:
        return {"device_ids": [device.index], "output_device": device.index}
    return {}
