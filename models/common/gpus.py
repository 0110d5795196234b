"""NVIDIA GPUs of this host, found without CUDA or torch, and the per-rank wrapper that gives
each MPI rank its own GPU.

Detection (:func:`detect`): ``nvidia-smi -L`` when it is on PATH (``GPU 0: NVIDIA H100 80GB
HBM3 (UUID: GPU-...)``), else the driver's ``/proc/driver/nvidia/gpus/*/information``
(``Model: ...``). ``CUDA_VISIBLE_DEVICES``, when set, narrows the list to the GPUs it names
(indexes or UUIDs, as CUDA reads it: up to the first entry that names none). Tests and dry
runs for another machine read a recorded ``nvidia-smi -L`` output instead
(``launch.py --nvidia-smi-file FILE``; fixtures in ``tests/launch/fixtures/``).

Per rank (``python gpus.py --gpus 0,1,2,3 -- COMMAND``, which ``launch.py`` puts in front of
the command under ``mpirun``): the rank's local rank (``dist_env``) picks its entry, which
becomes ``CUDA_VISIBLE_DEVICES`` (the process then sees one GPU, ``cuda:0``); ``LOCAL_RANK``
is set too. Then it execs COMMAND. ``python gpus.py --list`` prints the GPUs (exit 1: none),
for the quickstarts' ``DEVICE=cuda`` check.

Standard library only.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import os
import re
import shutil
import subprocess
import sys
from typing import List, Mapping, Optional, Sequence, Tuple

if __package__ in (None, ""):  # run as a file: make `models.common` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
        __file__)))))

from models.common import bind, dist_env  # noqa: E402

__all__ = ["Gpu", "GpuHost", "parse_nvidia_smi_list", "parse_proc_gpus", "detect",
           "visible", "SCRIPT"]

SCRIPT = os.path.abspath(__file__)
PROC_ROOT = "/proc/driver/nvidia/gpus"
_SMI_LINE = re.compile(r"^GPU (\d+): (.+?)(?: \(UUID: ([^)]+)\))?\s*$")


@dataclasses.dataclass(frozen=True)
class Gpu:
    index: str  # the id CUDA_VISIBLE_DEVICES takes: "3", or a UUID when the user named one
    name: str
    uuid: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class GpuHost:
    gpus: Tuple[Gpu, ...]
    source: str  # where the list came from, for the summary line: "nvidia-smi -L", a file, ...

    @property
    def ids(self) -> List[str]:
        return [g.index for g in self.gpus]

    def describe(self) -> str:
        names = sorted({g.name for g in self.gpus})
        return f"{len(self.gpus)} GPU(s) ({', '.join(names)}; from {self.source})"


def parse_nvidia_smi_list(text: str) -> Tuple[Gpu, ...]:
    """The GPUs of an ``nvidia-smi -L`` output (MIG lines and anything else are skipped)."""
    found = []
    for line in text.splitlines():
        m = _SMI_LINE.match(line.strip())
        if m:
            found.append(Gpu(index=m.group(1), name=m.group(2).strip(), uuid=m.group(3)))
    return tuple(found)


def parse_proc_gpus(root: str = PROC_ROOT) -> Tuple[Gpu, ...]:
    """The GPUs the NVIDIA driver lists under ``root`` (one folder per PCI address; ordered by
    bus address, as CUDA's PCI_BUS_ID order and nvidia-smi number them)."""
    found = []
    for i, path in enumerate(sorted(glob.glob(os.path.join(root, "*", "information")))):
        name = "NVIDIA GPU"
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    key, _, value = line.partition(":")
                    if key.strip() == "Model" and value.strip():
                        name = value.strip()
        except OSError:
            continue
        found.append(Gpu(index=str(i), name=name))
    return tuple(found)


def visible(gpus: Sequence[Gpu], environ: Mapping[str, str]) -> Tuple[Gpu, ...]:
    """The GPUs left by ``CUDA_VISIBLE_DEVICES`` (unset: all; empty: none). An entry is an
    index or a (prefix of a) UUID; as in CUDA, the list ends at the first entry naming none."""
    value = environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return tuple(gpus)
    kept: List[Gpu] = []
    for entry in (e.strip() for e in value.split(",")):
        match = [g for g in gpus if entry and (g.index == entry or (
            g.uuid and (g.uuid == entry or g.uuid.startswith(entry)) and len(entry) > 4))]
        if not match or match[0] in kept:
            break
        gpu = match[0]
        kept.append(gpu if gpu.index == entry or not gpu.uuid else
                    dataclasses.replace(gpu, index=entry))
    return tuple(kept)


def detect(environ: Mapping[str, str], smi_file: Optional[str] = None,
           proc_root: str = PROC_ROOT) -> GpuHost:
    """This host's GPUs that ``CUDA_VISIBLE_DEVICES`` leaves (see the module docstring).
    ``smi_file``: a recorded ``nvidia-smi -L`` output to read instead (``OSError`` when
    unreadable)."""
    if smi_file:
        with open(smi_file, encoding="utf-8") as fh:
            gpus, source = parse_nvidia_smi_list(fh.read()), smi_file
    else:
        gpus, source = (), "nvidia-smi -L"
        smi = shutil.which("nvidia-smi", path=environ.get("PATH", os.defpath))
        if smi:
            try:
                done = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20,
                                      check=False)
                if done.returncode == 0:
                    gpus = parse_nvidia_smi_list(done.stdout)
            except (OSError, subprocess.SubprocessError):
                pass
        if not gpus:
            gpus, source = parse_proc_gpus(proc_root), proc_root
        if not gpus:
            source = f"nvidia-smi -L and {proc_root}"
    return GpuHost(gpus=visible(gpus, environ), source=source)


# -- per rank ------------------------------------------------------------------------------------

def rank_env(gpu_ids: Sequence[str], local_rank: int) -> dict:
    """The variables of the rank with ``local_rank``: its GPU (round robin when there are
    fewer GPUs than local ranks) and ``LOCAL_RANK``."""
    return {"CUDA_VISIBLE_DEVICES": gpu_ids[local_rank % len(gpu_ids)],
            "LOCAL_RANK": str(local_rank)}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="gpus.py", description="Run COMMAND on the GPU of "
                                     "this MPI rank's local rank (CUDA_VISIBLE_DEVICES), or "
                                     "--list this host's GPUs.")
    parser.add_argument("--gpus", help="GPU ids, the i-th for local rank i")
    parser.add_argument("--list", action="store_true",
                        help="print the GPUs CUDA_VISIBLE_DEVICES leaves, one a line; exit 1 "
                             "when there are none")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.list:
        host = detect(os.environ)
        for gpu in host.gpus:
            print(f"{gpu.index}: {gpu.name}")
        if not host.gpus:
            print(f"gpus.py: no NVIDIA GPU visible ({host.source} list(s) none)", file=sys.stderr)
        return 0 if host.gpus else 1
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    ids = [g for g in (args.gpus or "").split(",") if g]
    if not command or not ids:
        parser.error("give --gpus ID,... and a command after --, or --list")
    try:
        local = dist_env.from_environ().local_rank
    except ValueError as exc:
        print(f"gpus.py: error: {exc}", file=sys.stderr)
        return 2
    os.environ.update(rank_env(ids, local))
    return bind.exec_command(list(command), "gpus.py")


if __name__ == "__main__":
    sys.exit(main())
