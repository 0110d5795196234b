"""CPU topology of the machine the launcher runs on: sockets, physical cores, NUMA nodes, the CPUs
this process may use, and the ISA flags that decide precision settings.

Sources, best first: ``lscpu`` (summary + ``lscpu --parse=CPU,Core,Socket,Node``), sysfs
(``/sys/devices/system/cpu``), ``/proc/cpuinfo``. A recorded ``lscpu`` output can stand in for the
live machine (``from_lscpu_text``), which is how tests and bug reports reproduce a machine::

    { lscpu; lscpu --parse=CPU,Core,Socket,Node; } > my-machine.txt
    python models/common/launch.py --lscpu-file my-machine.txt --dry-run -- python train.py

Standard library only: this runs inside containers and on bare metal without the packager.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from typing import Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence, Tuple

__all__ = [
    "LogicalCpu", "Platform", "detect", "from_lscpu_text", "parse_cpu_list", "format_cpu_list",
    "ISA_FLAGS",
]

# Flags the launcher looks at (precision / DNNL ISA selection).
ISA_FLAGS = ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8", "avx512_fp16")


def parse_cpu_list(text: str) -> List[int]:
    """``"0-3,8,10-11"`` -> ``[0, 1, 2, 3, 8, 10, 11]`` (the Linux cpulist format)."""
    cpus: List[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            step = 1
            if ":" in hi:  # "0-15:2" stride form (cpuset/ taskset)
                hi, stride = hi.split(":", 1)
                step = int(stride)
            cpus.extend(range(int(lo), int(hi) + 1, step))
        else:
            cpus.append(int(part))
    return sorted(set(cpus))


def format_cpu_list(cpus: Iterable[int]) -> str:
    """``[0, 1, 2, 3, 8]`` -> ``"0-3,8"``."""
    ordered = sorted(set(cpus))
    parts: List[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


@dataclasses.dataclass(frozen=True, order=True)
class LogicalCpu:
    cpu: int
    core: int     # unique per machine (not per socket)
    socket: int
    node: int


@dataclasses.dataclass(frozen=True)
class Platform:
    """What the launcher needs to know about a machine."""

    cpus: Tuple[LogicalCpu, ...]          # online logical CPUs, sorted by id
    usable: FrozenSet[int]                # CPUs this process may run on (affinity/cpuset)
    flags: FrozenSet[str] = frozenset()
    model_name: str = ""
    source: str = ""
    cpu_quota: Optional[float] = None     # cgroup cpu.max in CPUs (docker --cpus), None: none

    # -- topology ---------------------------------------------------------------------------
    @property
    def sockets(self) -> List[int]:
        return sorted({c.socket for c in self.cpus})

    @property
    def numa_nodes(self) -> Dict[int, List[int]]:
        nodes: Dict[int, List[int]] = {}
        for c in self.cpus:
            nodes.setdefault(c.node, []).append(c.cpu)
        return {n: sorted(v) for n, v in sorted(nodes.items())}

    @property
    def threads_per_core(self) -> int:
        per_core: Dict[int, int] = {}
        for c in self.cpus:
            per_core[c.core] = per_core.get(c.core, 0) + 1
        return max(per_core.values(), default=1)

    @property
    def cores_per_socket(self) -> int:
        per_socket: Dict[int, set] = {}
        for c in self.cpus:
            per_socket.setdefault(c.socket, set()).add(c.core)
        return max((len(v) for v in per_socket.values()), default=0)

    def physical_cores(self, socket: Optional[int] = None, usable_only: bool = True) -> List[int]:
        """One logical CPU (the lowest-numbered usable thread) per physical core, sorted by
        (socket, core). OpenMP runs one thread per physical core on these."""
        first: Dict[Tuple[int, int], int] = {}
        for c in self.cpus:
            if socket is not None and c.socket != socket:
                continue
            if usable_only and c.cpu not in self.usable:
                continue
            key = (c.socket, c.core)
            if key not in first or c.cpu < first[key]:
                first[key] = c.cpu
        return [first[k] for k in sorted(first)]

    def usable_sockets(self) -> List[int]:
        return [s for s in self.sockets if self.physical_cores(s)]

    def node_of(self, cpu: int) -> int:
        for c in self.cpus:
            if c.cpu == cpu:
                return c.node
        raise KeyError(cpu)

    @property
    def has_amx(self) -> bool:
        return {"amx_bf16", "amx_tile"} <= self.flags

    @property
    def has_native_bf16(self) -> bool:
        return bool({"avx512_bf16", "amx_bf16"} & self.flags)

    def with_usable(self, cpus: Iterable[int]) -> "Platform":
        """The same machine, restricted to ``cpus`` (e.g. a cpuset or ``--cpuset``)."""
        online = {c.cpu for c in self.cpus}
        return dataclasses.replace(self, usable=frozenset(set(cpus) & online))

    def describe(self) -> str:
        nodes = "; ".join(f"node{n}: {format_cpu_list(v)}" for n, v in self.numa_nodes.items())
        isa = " ".join(f for f in ISA_FLAGS if f in self.flags) or "none of " + ",".join(ISA_FLAGS)
        return (f"{self.model_name or 'unknown CPU'}: {len(self.sockets)} socket(s) x "
                f"{self.cores_per_socket} cores x {self.threads_per_core} threads; NUMA {nodes}; "
                f"usable CPUs {format_cpu_list(self.usable)}; ISA {isa} (from {self.source})")

    def to_dict(self) -> dict:
        return {
            "model_name": self.model_name,
            "sockets": len(self.sockets),
            "cores_per_socket": self.cores_per_socket,
            "threads_per_core": self.threads_per_core,
            "numa_nodes": {str(n): format_cpu_list(v) for n, v in self.numa_nodes.items()},
            "usable_cpus": format_cpu_list(self.usable),
            "isa_flags": [f for f in ISA_FLAGS if f in self.flags],
            "source": self.source,
        }


# -- lscpu text ----------------------------------------------------------------------------------

_PARSE_HEADER = re.compile(r"^#\s*CPU,", re.IGNORECASE)


def _split_lscpu(text: str) -> Tuple[Dict[str, str], List[str], List[List[str]]]:
    """Summary ``key: value`` pairs, the ``--parse`` column names and rows."""
    summary: Dict[str, str] = {}
    columns: List[str] = []
    rows: List[List[str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if _PARSE_HEADER.match(line):
                columns = [c.strip().lower() for c in line.lstrip("#").split(",")]
            continue
        if columns and re.match(r"^\d+(,[^,]*)*$", line):
            rows.append(line.split(","))
            continue
        if ":" in line:
            key, value = line.split(":", 1)
            summary.setdefault(key.strip(), value.strip())
    return summary, columns, rows


def _int_field(summary: Mapping[str, str], *keys: str) -> Optional[int]:
    for key in keys:
        value = summary.get(key, "")
        if value.isdigit():
            return int(value)
    return None


def _cpus_from_parse(columns: Sequence[str], rows: Sequence[Sequence[str]],
                     node_map: Mapping[int, int]) -> List[LogicalCpu]:
    idx = {name: i for i, name in enumerate(columns)}
    if "cpu" not in idx or "core" not in idx or "socket" not in idx:
        raise ValueError("lscpu --parse output needs the CPU, Core and Socket columns "
                         "(record it with: lscpu --parse=CPU,Core,Socket,Node)")
    cpus = []
    for row in rows:
        def col(name: str) -> Optional[int]:
            i = idx.get(name)
            if i is None or i >= len(row) or not row[i].strip().isdigit():
                return None
            return int(row[i])
        cpu, core, socket = col("cpu"), col("core"), col("socket")
        if cpu is None or core is None:
            continue  # offline CPU rows (lscpu --parse -a) have empty fields
        socket = socket or 0
        node = col("node")
        if node is None:
            node = node_map.get(cpu, socket)
        cpus.append(LogicalCpu(cpu=cpu, core=core, socket=socket, node=node))
    return sorted(cpus)


def _cpus_from_summary(summary: Mapping[str, str], node_map: Mapping[int, int]) -> List[LogicalCpu]:
    """Topology from the summary alone: socket from the NUMA node lists, and within a socket the
    first ``cores per socket`` CPU ids are the first threads of the cores (the usual Linux x86
    enumeration; record ``lscpu --parse`` too for machines that number CPUs differently)."""
    total = _int_field(summary, "CPU(s)") or 1
    online_text = summary.get("On-line CPU(s) list")
    online = parse_cpu_list(online_text) if online_text else list(range(total))
    sockets = _int_field(summary, "Socket(s)") or 1
    threads = _int_field(summary, "Thread(s) per core") or 1
    cores = _int_field(summary, "Core(s) per socket") or max(1, len(online) // (sockets * threads))
    nodes = sorted(set(node_map.values()))
    by_socket: Dict[int, List[int]] = {}
    if nodes and len(nodes) % sockets == 0:
        per_socket = len(nodes) // sockets
        for cpu in online:
            node = node_map.get(cpu, nodes[0])
            by_socket.setdefault(nodes.index(node) // per_socket, []).append(cpu)
    else:
        for pos, cpu in enumerate(online):
            by_socket.setdefault((pos % (sockets * cores)) // cores, []).append(cpu)
    result = []
    for socket, members in sorted(by_socket.items()):
        for pos, cpu in enumerate(sorted(members)):
            core = socket * cores + pos % cores
            result.append(LogicalCpu(cpu=cpu, core=core, socket=socket,
                                     node=node_map.get(cpu, socket)))
    return sorted(result)


def from_lscpu_text(text: str, usable: Optional[Iterable[int]] = None,
                    source: str = "lscpu") -> Platform:
    """Build a :class:`Platform` from ``lscpu`` output, with or without a ``lscpu --parse``
    section appended. ``usable`` defaults to every online CPU."""
    summary, columns, rows = _split_lscpu(text)
    node_map: Dict[int, int] = {}
    for key, value in summary.items():
        m = re.match(r"^NUMA node(\d+) CPU\(s\)$", key)
        if m and value and value != "-":
            for cpu in parse_cpu_list(value):
                node_map[cpu] = int(m.group(1))
    if rows:
        cpus = _cpus_from_parse(columns, rows, node_map)
    elif summary:
        cpus = _cpus_from_summary(summary, node_map)
    else:
        raise ValueError("no lscpu output found (record one with: "
                         "{ lscpu; lscpu --parse=CPU,Core,Socket,Node; } > FILE)")
    if not cpus:
        raise ValueError("the lscpu output lists no online CPUs")
    flags = frozenset(summary.get("Flags", "").split())
    online = [c.cpu for c in cpus]
    return Platform(cpus=tuple(cpus), usable=frozenset(online if usable is None else
                                                      set(usable) & set(online)),
                    flags=flags, model_name=summary.get("Model name", ""), source=source)


# -- live machine ---------------------------------------------------------------------------------

def _read(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def _run_lscpu(args: Sequence[str]) -> Optional[str]:
    exe = shutil.which("lscpu")
    if not exe:
        return None
    env = dict(os.environ, LC_ALL="C", LANG="C")
    try:
        done = subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=20,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 and done.stdout.strip() else None


def _node_map_sysfs(root: str) -> Dict[int, int]:
    node_map: Dict[int, int] = {}
    base = os.path.join(root, "sys/devices/system/node")
    try:
        entries = os.listdir(base)
    except OSError:
        return node_map
    for entry in entries:
        m = re.match(r"^node(\d+)$", entry)
        text = _read(os.path.join(base, entry, "cpulist")) if m else None
        if m and text and text.strip():
            for cpu in parse_cpu_list(text.strip()):
                node_map[cpu] = int(m.group(1))
    return node_map


def _cpus_from_sysfs(root: str) -> List[LogicalCpu]:
    online_text = _read(os.path.join(root, "sys/devices/system/cpu/online"))
    if not online_text or not online_text.strip():
        return []
    node_map = _node_map_sysfs(root)
    cores: Dict[Tuple[int, int], int] = {}
    result = []
    for cpu in parse_cpu_list(online_text.strip()):
        topo = os.path.join(root, f"sys/devices/system/cpu/cpu{cpu}/topology")
        pkg, core = _read(os.path.join(topo, "physical_package_id")), _read(
            os.path.join(topo, "core_id"))
        if pkg is None or core is None:
            return []
        socket = max(int(pkg), 0)  # -1 on some VMs
        key = (socket, int(core))
        core_id = cores.setdefault(key, len(cores))
        result.append(LogicalCpu(cpu=cpu, core=core_id, socket=socket,
                                 node=node_map.get(cpu, socket)))
    # sysfs core ids are per socket and in discovery order; renumber by (socket, core_id).
    order = {key: i for i, key in enumerate(sorted(cores))}
    remap = {v: order[k] for k, v in cores.items()}
    return sorted(dataclasses.replace(c, core=remap[c.core]) for c in result)


def _cpuinfo(root: str) -> Tuple[List[LogicalCpu], FrozenSet[str], str]:
    text = _read(os.path.join(root, "proc/cpuinfo")) or ""
    blocks = [b for b in text.split("\n\n") if b.strip()]
    cpus, flags, model = [], frozenset(), ""
    cores: Dict[Tuple[int, int], int] = {}
    for block in blocks:
        fields: Dict[str, str] = {}
        for line in block.splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                fields[k.strip()] = v.strip()
        if "processor" not in fields or not fields["processor"].isdigit():
            continue
        cpu = int(fields["processor"])
        socket = int(fields.get("physical id", "0") or 0)
        core = int(fields.get("core id", str(cpu)) or cpu)
        core_id = cores.setdefault((socket, core), len(cores))
        cpus.append(LogicalCpu(cpu=cpu, core=core_id, socket=socket, node=socket))
        if not flags and fields.get("flags"):
            flags = frozenset(fields["flags"].split())
        model = model or fields.get("model name", "")
    return sorted(cpus), flags, model


def _cgroup_cpuset(root: str) -> Optional[List[int]]:
    """The cgroup cpuset of this process, when one can be read (v2, then v1)."""
    candidates = []
    for line in (_read(os.path.join(root, "proc/self/cgroup")) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and (parts[0] == "0" or "cpuset" in parts[1].split(",")):
            rel = parts[2].lstrip("/")
            candidates.append(os.path.join(root, "sys/fs/cgroup", rel, "cpuset.cpus.effective"))
            candidates.append(os.path.join(root, "sys/fs/cgroup/cpuset", rel,
                                           "cpuset.effective_cpus"))
    candidates += [os.path.join(root, "sys/fs/cgroup/cpuset.cpus.effective"),
                   os.path.join(root, "sys/fs/cgroup/cpuset/cpuset.effective_cpus"),
                   os.path.join(root, "sys/fs/cgroup/cpuset/cpuset.cpus")]
    for path in candidates:
        text = _read(path)
        if text and text.strip():
            try:
                return parse_cpu_list(text.strip())
            except ValueError:
                continue
    return None


def usable_cpus(root: str = "/") -> Optional[List[int]]:
    """CPUs this process may run on: ``sched_getaffinity`` intersected with the cgroup cpuset."""
    affinity: Optional[set] = None
    if hasattr(os, "sched_getaffinity"):
        try:
            affinity = set(os.sched_getaffinity(0))
        except OSError:
            affinity = None
    cpuset = _cgroup_cpuset(root)
    if affinity is not None and cpuset is not None:
        both = affinity & set(cpuset)
        return sorted(both or affinity)
    if affinity is not None:
        return sorted(affinity)
    return cpuset


def cpu_quota(root: str = "/") -> Optional[float]:
    """The cgroup v2 CPU quota in CPUs (``docker --cpus``), or None when unlimited/unknown."""
    text = _read(os.path.join(root, "sys/fs/cgroup/cpu.max"))
    if not text:
        return None
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        return int(parts[0]) / int(parts[1])
    except (ValueError, ZeroDivisionError):
        return None


def detect(root: str = "/", use_lscpu: bool = True,
           usable: Optional[Iterable[int]] = None) -> Platform:
    """Detect the live machine. ``root`` lets tests point at a fake sysfs/proc tree;
    ``usable`` overrides the affinity/cpuset detection."""
    usable_list = list(usable) if usable is not None else usable_cpus(root)
    quota = cpu_quota(root)
    if use_lscpu and root == "/":
        summary = _run_lscpu([])
        if summary:
            parsed = _run_lscpu(["--parse=CPU,Core,Socket,Node"]) or ""
            try:
                found = from_lscpu_text(summary + "\n" + parsed, usable=usable_list,
                                        source="lscpu")
                return dataclasses.replace(found, cpu_quota=quota)
            except ValueError:
                pass
    _, flags, model = _cpuinfo(root)
    cpus = _cpus_from_sysfs(root)
    source = "sysfs"
    if not cpus:
        cpus, _, _ = _cpuinfo(root)
        source = "/proc/cpuinfo"
    if not cpus:
        count = os.cpu_count() or 1
        cpus = [LogicalCpu(cpu=i, core=i, socket=0, node=0) for i in range(count)]
        source = "os.cpu_count"
    online = {c.cpu for c in cpus}
    chosen = online if usable_list is None else (set(usable_list) & online) or online
    return Platform(cpus=tuple(cpus), usable=frozenset(chosen), flags=flags, model_name=model,
                    source=source, cpu_quota=quota)


if __name__ == "__main__":  # pragma: no cover - python models/common/platform_info.py
    import json
    print(json.dumps(detect().to_dict(), indent=2))
