"""Rank, world size and local rank of this process, read from the launcher's environment.

Training code calls ``dist_env.from_environ()`` once at start-up::

    from models.common import dist_env
    env = dist_env.from_environ()
    if env.is_primary:
        ...  # logging, checkpoints

Sources, first match wins: OpenMPI (``OMPI_COMM_WORLD_*``), MPICH / Intel MPI (``PMI_RANK``,
``PMI_SIZE``, ``MPI_LOCALRANKID``, ``MPI_LOCALNRANKS``), torchrun (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``). Without any of them this is a single process.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Mapping, Optional

__all__ = ["DistEnv", "from_environ"]


@dataclasses.dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_size: int = 1
    source: str = "single"

    @property
    def is_primary(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def _int(environ: Mapping[str, str], name: str, default: Optional[int] = None) -> Optional[int]:
    value = environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer; "
                         f"unset it or set it to the process' {name.lower()}") from None


def _build(rank: int, world: int, local_rank: Optional[int], local_size: Optional[int],
           source: str) -> DistEnv:
    if world < 1:
        raise ValueError(f"{source}: world size {world} must be >= 1")
    if not 0 <= rank < world:
        raise ValueError(f"{source}: rank {rank} is outside [0, {world})")
    if local_rank is None:
        local_rank = rank if local_size is None else rank % local_size
    if local_size is None:
        local_size = world if local_rank == rank else max(local_rank + 1, 1)
    return DistEnv(rank=rank, world_size=world, local_rank=local_rank, local_size=local_size,
                   source=source)


def from_environ(environ: Optional[Mapping[str, str]] = None) -> DistEnv:
    """Read the distributed layout from ``environ`` (default: ``os.environ``)."""
    env = os.environ if environ is None else environ

    if "OMPI_COMM_WORLD_RANK" in env and "OMPI_COMM_WORLD_SIZE" in env:
        return _build(_int(env, "OMPI_COMM_WORLD_RANK"), _int(env, "OMPI_COMM_WORLD_SIZE"),
                      _int(env, "OMPI_COMM_WORLD_LOCAL_RANK"),
                      _int(env, "OMPI_COMM_WORLD_LOCAL_SIZE"), "openmpi")
    if "PMI_RANK" in env and "PMI_SIZE" in env:
        return _build(_int(env, "PMI_RANK"), _int(env, "PMI_SIZE"),
                      _int(env, "MPI_LOCALRANKID"), _int(env, "MPI_LOCALNRANKS"), "pmi")
    if "RANK" in env and "WORLD_SIZE" in env:
        return _build(_int(env, "RANK"), _int(env, "WORLD_SIZE"), _int(env, "LOCAL_RANK"),
                      _int(env, "LOCAL_WORLD_SIZE"), "torchrun")
    return DistEnv()


if __name__ == "__main__":  # pragma: no cover - handy in a shell: python -m models.common.dist_env
    print(from_environ())
