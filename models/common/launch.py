"""Start a training command with CPU/NUMA binding, thread settings and, when asked, MPI ranks.

    python models/common/launch.py [options] -- COMMAND [ARGS...]

* one process: ``numactl --physcpubind=<one thread per physical core> --membind=<node>``
  (``--localalloc`` across nodes); ``OMP_NUM_THREADS`` = physical cores used.
* ``MPI_NUM_PROCESSES=N`` on one host: ``mpirun -np N --bind-to none ... bind.py --slot ...``,
  one rank per socket (or ``--mpi-num-processes-per-socket`` ranks sharing a socket), each rank
  bound by ``bind.py`` to its own cores and local memory.
* ``--hosts``/``MULTI_HLS_IPS``: ``mpirun -H host:slots,...`` with ``btl_tcp_if_include``,
  ``plm_rsh_args "-p PORT"`` and ``-x`` forwarding of the environment (hosts are assumed to
  have the same CPU layout as this one). The ssh port defaults to 3022 (Habana's docker sshd;
  ``--ssh-port``/``DOCKER_SSHD_PORT`` override it); an ``OMPI_MCA_plm_rsh_args`` already in the
  environment is kept and the port added to it. Without ``--tcp-include``/``MPI_TCP_INCLUDE``
  the interface holding one of this machine's addresses named in the host list is used
  (``btl_tcp_if_include IFACE``; addresses from ``ip -o -4 addr show``, else the
  ``SIOCGIFCONF`` ioctl). A host must be one of an interface's own addresses, except on a
  loopback interface, which answers its whole subnet (``127.0.0.2`` is ``lo``'s, whose listed
  address is ``127.0.0.1/8``). Host names are not resolved. When no listed host is an address of
  this machine nothing is emitted and a warning says so.
* every MPI run forwards (``-x NAME``) those of ``TF_BF16_CONVERSION``, ``PYTHONPATH``,
  ``HOROVOD_HIERARCHICAL_ALLREDUCE``, ``GC_KERNEL_PATH``, ``HABANA_LOGS``,
  ``HABANA_VISIBLE_DEVICES`` that are set, on one host too.
* ``--map-by-socket-pe N|auto`` (env ``MPI_MAP_BY_SOCKET_PE``): Habana's binding, ``mpirun
  --bind-to core --map-by socket:PE=N`` running the command directly (no ``bind.py``). ``auto``:
  N = usable physical cores per socket // ranks per socket on this host (ranks spread over the
  usable sockets, rounded up), at least 1; the summary line says how N was found. N larger than
  the cores per socket, or N x ranks per socket beyond them, is an error.
* ``--tag-output``, ``--merge-stderr-to-stdout``, ``--output-filename DIR`` are passed to mpirun
  as they are (``DIR`` is created when missing); with one process they have no effect.
* ``--num-instances N`` / ``--numa-cores-per-instance C|socket|auto`` (Intel's names; ``auto``:
  4, or a socket's usable cores when fewer): N independent
  processes of the command, each pinned to its own C physical cores (``numactl
  --physcpubind=... --membind=NODE`` per instance, or ``bind.py``'s ``sched_setaffinity``
  without numactl), inside one NUMA node when C fits in one, never across sockets. Each gets
  ``LAUNCH_INSTANCE`` (0..N-1), ``LAUNCH_NUM_INSTANCES`` and ``LAUNCH_RESULT_FILE`` (where it
  may write a JSON result; ``--instance-results-dir``, default a temporary folder) and its own
  thread settings; their output lines are prefixed ``[instance i]``. The launcher waits for
  all, prints each result and the aggregate (:func:`aggregate_results`: examples/s summed,
  latency percentiles over all instances' batches; ``--aggregate-file FILE`` writes it as
  JSON) and exits with the first failing instance's status (0 when all succeed).
* ``--device cuda`` (or ``auto`` when the host has NVIDIA GPUs; the PyTorch quickstarts pass
  their ``DEVICE``; ``gpus.py``
  finds them with ``nvidia-smi -L`` or ``/proc/driver/nvidia/gpus``, narrowed by
  ``CUDA_VISIBLE_DEVICES``;
  ``--nvidia-smi-file`` reads a recorded list instead): one rank per GPU (``MPI_NUM_PROCESSES``
  defaults to the GPUs; more ranks than GPUs on a host is an error), each rank started through
  ``gpus.py``, which sets its ``CUDA_VISIBLE_DEVICES`` (and ``LOCAL_RANK``) from its local
  rank; CPU binding and thread settings as on a CPU host. One GPU: one process with
  ``CUDA_VISIBLE_DEVICES`` set. Without ``--device`` (or with ``cpu``) GPUs are not looked for:
  the flag, not a ``DEVICE`` variable, so that no other package's launch changes with it.

The command and the environment it sets are printed first (as a shell script you can paste),
with one comment line per rank saying what that rank runs (its ``numactl`` command, or the CPUs
``bind.py`` sets with ``sched_setaffinity``; decided by ``bind.py``'s own functions);
``--dry-run`` stops there, ``--dry-run --json`` prints ``{"argv": [...], "env": {...},
"ranks": [{"rank", "host", "local_rank", "cpus", "memory", "bind", "command"}, ...]}`` only
(``"unset": [...]`` too when variables are removed).
Credentials in URLs (``http://user:password@proxy:3128``, ``https://user:token@host/...``, in
any argument or variable) are printed as ``user:***@``; the command executed gets the real
values.
The launcher then *replaces itself* with the command (``exec``): the exit status is the
command's, and SIGINT/SIGTERM reach the command (or mpirun, which passes them to the ranks)
directly, with no parent in between to duplicate or lose them.

Standard library only; ``packager`` imports :func:`build_plan` for its own ``--dry-run``.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

if __package__ in (None, ""):  # run as a file: make `models.common` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
        __file__)))))

from models.common import bind, gpus, platform_info, precisions  # noqa: E402
from models.common.redact import mask_credentials  # noqa: E402
from models.common.platform_info import Platform, format_cpu_list, parse_cpu_list  # noqa: E402

__all__ = ["LaunchError", "Tools", "Plan", "Slot", "parse_args", "build_plan", "main",
           "parse_hosts", "assign_slots", "instance_slots", "aggregate_results"]

PROG = "launch.py"
BIND_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bind.py")
DEFAULT_KMP_AFFINITY = "granularity=fine,compact,1,0"
DEFAULT_KMP_BLOCKTIME = "1"
AMX_ISA = "AVX512_CORE_AMX"
# Every precision name the launcher takes (aliases such as bfloat16 become canonical names).
PRECISIONS = precisions.CANONICAL
LOCAL_HOST = "localhost"
DEVICES = ("auto", "cpu", "cuda")  # --device / DEVICE
# Set for each process started by --num-instances (read by the inference script).
INSTANCE_VAR, NUM_INSTANCES_VAR, RESULT_FILE_VAR = ("LAUNCH_INSTANCE", "LAUNCH_NUM_INSTANCES",
                                                    "LAUNCH_RESULT_FILE")
# Variables forwarded to remote ranks (-x) when they are set, besides the ones we set.
FORWARD_NAMES = ("PATH", "PYTHONPATH", "LD_LIBRARY_PATH", "LD_PRELOAD", "MASTER_ADDR",
                 "MASTER_PORT", "GC_KERNEL_PATH", "MALLOC_CONF", "COLLECTIVE_TIMEOUT",
                 "MODELPKG_COLLECTIVES")
# Forwarded (-x) in every MPI run, one host too, when they are set (Habana's BERT documents).
MPI_FORWARD_NAMES = ("TF_BF16_CONVERSION", "PYTHONPATH", "HOROVOD_HIERARCHICAL_ALLREDUCE",
                     "GC_KERNEL_PATH", "HABANA_LOGS", "HABANA_VISIBLE_DEVICES")
DEFAULT_SSH_PORT = 3022  # the sshd port of Habana's containers
AUTO_CORES_PER_INSTANCE = 4  # --numa-cores-per-instance auto: Intel's realtime inference setting
FORWARD_PREFIXES = ("OMP_", "KMP_", "DNNL_", "ONEDNN_", "MKL_", "TF_", "HOROVOD_", "HABANA_",
                    "NUM_INTRA_", "NUM_INTER_", "TORCH_", "PT_HPU_", "NCCL_")
MALLOC_LIBS = {
    "tcmalloc": ("libtcmalloc.so.4", "libtcmalloc.so", "libtcmalloc_minimal.so.4"),
    "jemalloc": ("libjemalloc.so.2", "libjemalloc.so"),
}


# -- credentials in printed output ------------------------------------------------------------

def _masked(obj: object, name: Optional[str] = None) -> object:
    """A copy of a JSON-like ``obj`` with :func:`mask_credentials` applied to every string."""
    if isinstance(obj, str):
        return mask_credentials(obj, name)
    if isinstance(obj, dict):
        return {k: _masked(v, k if isinstance(k, str) else None) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_masked(v) for v in obj]
    return obj


class LaunchError(Exception):
    """A problem the user can fix; printed as one line, exit status 2."""

    exit_code = 2


# -- the outside world, injectable for tests ------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Tools:
    numactl: Optional[str]
    mpirun: Optional[str]
    is_root: bool
    malloc_dirs: Tuple[str, ...] = ()
    python: str = sys.executable or "python3"
    # This machine's IPv4 interfaces as (name, "address/prefix"); None: read them when needed.
    interfaces: Optional[Tuple[Tuple[str, str], ...]] = ()

    def local_interfaces(self) -> Tuple[Tuple[str, str], ...]:
        return self.interfaces if self.interfaces is not None else read_interfaces()

    @classmethod
    def detect(cls, environ: Mapping[str, str]) -> "Tools":
        dirs = []
        for prefix in (environ.get("CONDA_PREFIX"), sys.prefix, "/usr/local"):
            if prefix:
                dirs.append(os.path.join(prefix, "lib"))
        dirs += ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64",
                 "/usr/lib", "/lib/x86_64-linux-gnu"]
        return cls(numactl=shutil.which("numactl"), mpirun=_mpirun_path(environ),
                   is_root=hasattr(os, "geteuid") and os.geteuid() == 0,
                   malloc_dirs=tuple(dict.fromkeys(dirs)), interfaces=None)

    def find_malloc(self, which: str) -> Optional[str]:
        kinds = ("tcmalloc", "jemalloc") if which == "auto" else (which,)
        for kind in kinds:
            for name in MALLOC_LIBS.get(kind, ()):
                for folder in self.malloc_dirs:
                    path = os.path.join(folder, name)
                    if os.path.isfile(path):
                        return path
        return None


def _mpirun_path(environ: Mapping[str, str]) -> Optional[str]:
    """``mpirun`` on PATH. Open MPI takes the folder above an absolute ``.../bin/mpirun`` as its
    install prefix, and refuses "/" ("A prefix was supplied to mpirun that only contained
    slashes"): with a merged /usr and /bin before /usr/bin on PATH, use /usr/bin/mpirun."""
    found = shutil.which("mpirun", path=environ.get("PATH"))
    if found and os.path.dirname(found) in ("/bin", "/sbin"):
        usr = "/usr" + found
        try:
            if os.path.samefile(usr, found):
                return usr
        except OSError:
            pass
    return found


# -- network interfaces ---------------------------------------------------------------------------

def read_interfaces() -> Tuple[Tuple[str, str], ...]:
    """This machine's IPv4 addresses as ``(interface, "address/prefix")``: ``ip -o -4 addr
    show`` when installed, else the ``SIOCGIFCONF``/``SIOCGIFNETMASK`` ioctls."""
    ip = shutil.which("ip") or next((p for p in ("/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip")
                                     if os.access(p, os.X_OK)), None)
    if ip:
        try:
            done = subprocess.run([ip, "-o", "-4", "addr", "show"], capture_output=True,
                                  text=True, timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):
            done = None
        if done is not None and done.returncode == 0:
            found = []
            for line in done.stdout.splitlines():
                m = re.match(r"^\d+:\s+(\S+?)(?:@\S+)?\s+inet\s+(\d+\.\d+\.\d+\.\d+(?:/\d+)?)",
                             line)
                if m:
                    found.append((m.group(1), m.group(2)))
            return tuple(found)
    return _ioctl_interfaces()


def _ioctl_interfaces() -> Tuple[Tuple[str, str], ...]:
    try:
        import array
        import fcntl
        import socket
        import struct
    except ImportError:
        return ()
    siocgifconf, siocgifnetmask, ifreq = 0x8912, 0x891B, 40  # struct ifreq on 64-bit Linux
    found = []
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            buf = array.array("B", bytes(ifreq * 128))
            address, length = buf.buffer_info()
            used = struct.unpack("iL", fcntl.ioctl(sock.fileno(), siocgifconf,
                                                   struct.pack("iL", length, address)))[0]
            data = buf.tobytes()[:used]
            for i in range(0, used, ifreq):
                name = data[i:i + 16].split(b"\0", 1)[0].decode(errors="replace")
                addr = socket.inet_ntoa(data[i + 20:i + 24])
                try:
                    mask = socket.inet_ntoa(fcntl.ioctl(sock.fileno(), siocgifnetmask,
                                                        struct.pack("256s", name.encode()))[20:24])
                    prefix = ipaddress.ip_network(f"0.0.0.0/{mask}").prefixlen
                except (OSError, ValueError):
                    prefix = 32
                found.append((name, f"{addr}/{prefix}"))
    except OSError:
        return ()
    return tuple(found)


def interface_for_hosts(hosts: Sequence[str], interfaces: Sequence[Tuple[str, str]]
                        ) -> Optional[Tuple[str, str, str]]:
    """``(interface, host, its address/prefix)`` for the first host (in list order) that is an
    address of this machine: one of an interface's own addresses, or inside a loopback
    interface's subnet (``lo`` answers all of 127.0.0.0/8). Host names are not resolved."""
    parsed = []
    for name, cidr in interfaces:
        try:
            parsed.append((name, cidr, ipaddress.ip_interface(cidr)))
        except ValueError:
            continue
    for host in hosts:
        try:
            addr = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            continue
        for name, cidr, iface in parsed:
            if addr == iface.ip or (iface.ip.is_loopback and addr in iface.network):
                return name, host, cidr
    return None


def _rsh_args(existing: Optional[str], port: int, explicit: bool) -> str:
    """``plm_rsh_args`` value: ``existing`` (from ``OMPI_MCA_plm_rsh_args``) plus ``-p PORT``.
    An explicit port replaces a ``-p`` already there; the default port leaves it."""
    words = shlex.split(existing) if existing else []
    has_port = any(w == "-p" or (w.startswith("-p") and w[2:].isdigit()) for w in words)
    if has_port and not explicit:
        return shlex.join(words)
    kept: List[str] = []
    skip = False
    for w in words:
        if skip:
            skip = False
        elif w == "-p":
            skip = True
        elif not (w.startswith("-p") and w[2:].isdigit()):
            kept.append(w)
    return shlex.join([*kept, "-p", str(port)]) if kept else f"-p {port}"


# -- options --------------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2
        raise LaunchError(f"{message} (see {PROG} --help)")


def _env(environ: Mapping[str, str], *names: str) -> Optional[str]:
    for name in names:
        value = environ.get(name)
        if value is not None and value.strip() != "":
            return value.strip()
    return None


def _positive(value: Optional[str], what: str, allow_zero: bool = False) -> Optional[int]:
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < (0 if allow_zero else 1):
        raise LaunchError(f"{what} must be a {'non-negative' if allow_zero else 'positive'} "
                          f"integer, got {value!r}")
    return number


def _precision(value: str) -> str:
    """Canonical name of a known precision spelling; unknown text is left for argparse's
    "invalid choice" message."""
    try:
        return precisions.canonical(value)
    except precisions.PrecisionError:
        return value


def parse_args(argv: Sequence[str], environ: Mapping[str, str]) -> argparse.Namespace:
    argv = list(argv)
    command: List[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, command = argv[:cut], argv[cut + 1:]
    p = _Parser(prog=PROG, description="Run COMMAND with numactl binding, OpenMP settings and, "
                "when asked, MPI ranks (one per socket).",
                usage=f"{PROG} [options] -- COMMAND [ARGS...]")
    p.add_argument("--mpi-num-processes", metavar="N",
                   help="total MPI ranks (env MPI_NUM_PROCESSES); 1 or unset: no mpirun")
    p.add_argument("--mpi-num-processes-per-socket", metavar="N",
                   help="ranks sharing one socket (env MPI_NUM_PROCESSES_PER_SOCKET; default 1)")
    p.add_argument("--hosts", metavar="H1,H2",
                   help="hosts for multi-host runs, host or host:slots "
                        "(env MULTI_HLS_IPS or MPI_HOSTNAMES)")
    p.add_argument("--tcp-include", metavar="IF",
                   help="interfaces/subnets for MPI TCP traffic (env MPI_TCP_INCLUDE)")
    p.add_argument("--ssh-port", metavar="P", help="sshd port on the hosts (env DOCKER_SSHD_PORT; "
                   f"default {DEFAULT_SSH_PORT} with --hosts), as plm_rsh_args \"-p P\" added to "
                   "OMPI_MCA_plm_rsh_args")
    p.add_argument("--map-by-socket-pe", metavar="N|auto",
                   help="mpirun --bind-to core --map-by socket:PE=N instead of the launcher's "
                        "own binding (env MPI_MAP_BY_SOCKET_PE); auto: usable physical cores per "
                        "socket // ranks per socket on this host")
    p.add_argument("--tag-output", action="store_true",
                   help="mpirun --tag-output: prefix each output line with [job,rank]")
    p.add_argument("--merge-stderr-to-stdout", action="store_true",
                   help="mpirun --merge-stderr-to-stdout")
    p.add_argument("--output-filename", metavar="DIR",
                   help="mpirun --output-filename DIR: each rank's output also goes to a file "
                        "under DIR (created when missing); MPI runs only")
    p.add_argument("--num-instances", metavar="N",
                   help="start N independent pinned processes of COMMAND (one set of cores "
                        "each) and aggregate their results")
    p.add_argument("--numa-cores-per-instance", metavar="C|socket|auto",
                   help="physical cores per instance (socket: one instance per socket; auto: "
                        f"{AUTO_CORES_PER_INSTANCE}, or a socket's usable cores when it has "
                        "fewer); without --num-instances: as many instances as fit")
    p.add_argument("--instance-results-dir", metavar="DIR",
                   help="where instance i writes $LAUNCH_RESULT_FILE (DIR/instance_<i>.json; "
                        "default: a temporary folder)")
    p.add_argument("--aggregate-file", metavar="FILE",
                   help="write the instances' aggregate result as JSON to FILE")
    p.add_argument("--socket-id", metavar="S", help="run only on socket S")
    p.add_argument("--num-cores", metavar="N", help="physical cores per process (default: all "
                   "of its socket/share)")
    p.add_argument("--num-intra-threads", metavar="N",
                   help="NUM_INTRA_THREADS (default: the process' cores)")
    p.add_argument("--num-inter-threads", metavar="N", help="NUM_INTER_THREADS (default: 1)")
    aliases = ", ".join(f"{a}={t}" for a, t in precisions.ALIASES.items())
    p.add_argument("--precision", type=_precision, choices=PRECISIONS,
                   metavar="{" + ",".join(PRECISIONS) + "}",
                   help="sets DNNL_MAX_CPU_ISA: avx-fp32 unsets it; fp32/bf32/bf16 on AMX "
                        f"hardware set {AMX_ISA} unless already set (also accepted: {aliases})")
    p.add_argument("--malloc", choices=("auto", "tcmalloc", "jemalloc", "none"), default="auto",
                   help="preload tcmalloc/jemalloc when installed (default auto: either)")
    p.add_argument("--no-bind", action="store_true",
                   help="no numactl/affinity binding (thread settings are still exported)")
    p.add_argument("--cpuset", metavar="LIST",
                   help="use only these CPUs (like taskset); with --lscpu-file, simulates the "
                        "recorded machine's cpuset")
    p.add_argument("--lscpu-file", metavar="FILE",
                   help="read the machine from a recorded `lscpu; lscpu --parse=CPU,Core,Socket,"
                        "Node` output instead of this machine")
    p.add_argument("--device", choices=DEVICES,
                   help="cuda: one rank per NVIDIA GPU of each host, each rank's "
                        "CUDA_VISIBLE_DEVICES set; auto: cuda when this host has GPUs, else cpu; "
                        "cpu (default): GPUs are not looked for")
    p.add_argument("--nvidia-smi-file", metavar="FILE",
                   help="read the GPUs from a recorded `nvidia-smi -L` output instead of this "
                        "machine")
    p.add_argument("--dry-run", action="store_true", help="print the command and exit")
    p.add_argument("--json", action="store_true",
                   help='print {"argv": [...], "env": {...}, "ranks": [...]} as JSON instead of '
                        "shell text (ranks: what each rank runs, with its CPUs and memory node)")
    p.add_argument("--show-platform", action="store_true",
                   help="print the detected CPU layout as JSON and exit")
    p.add_argument("command", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    ns = p.parse_args(argv)
    ns.command = command or ns.command
    if not ns.command and not ns.show_platform:
        raise LaunchError("no command given: put it after --, e.g. "
                          f"{PROG} --dry-run -- python train.py")

    ns.mpi_num_processes = _positive(ns.mpi_num_processes or _env(environ, "MPI_NUM_PROCESSES"),
                                     "--mpi-num-processes / MPI_NUM_PROCESSES")
    ns.mpi_num_processes_per_socket = _positive(
        ns.mpi_num_processes_per_socket or _env(environ, "MPI_NUM_PROCESSES_PER_SOCKET"),
        "--mpi-num-processes-per-socket / MPI_NUM_PROCESSES_PER_SOCKET")
    ns.hosts = ns.hosts or _env(environ, "MULTI_HLS_IPS", "MPI_HOSTNAMES")
    ns.tcp_include = ns.tcp_include or _env(environ, "MPI_TCP_INCLUDE")
    ns.ssh_port = _positive(ns.ssh_port or _env(environ, "DOCKER_SSHD_PORT"),
                            "--ssh-port / DOCKER_SSHD_PORT")
    ns.socket_id = _positive(ns.socket_id, "--socket-id", allow_zero=True)
    pe = ns.map_by_socket_pe or _env(environ, "MPI_MAP_BY_SOCKET_PE")
    if pe is not None and pe.strip().lower() == "auto":
        ns.map_by_socket_pe = "auto"
    elif pe is not None:
        try:
            ns.map_by_socket_pe = int(pe.strip())
        except ValueError:
            ns.map_by_socket_pe = 0
        if ns.map_by_socket_pe < 1:
            raise LaunchError(f"--map-by-socket-pe / MPI_MAP_BY_SOCKET_PE must be a positive "
                              f"integer (cores per rank) or auto, got {pe!r}")
        if ns.no_bind:
            raise LaunchError("--map-by-socket-pe binds ranks (mpirun --bind-to core): drop "
                              "--no-bind or --map-by-socket-pe")
    if ns.output_filename is not None and not ns.output_filename.strip():
        raise LaunchError("--output-filename needs a folder name")
    ns.num_cores = _positive(ns.num_cores, "--num-cores")
    ns.num_instances = _positive(ns.num_instances, "--num-instances")
    cpi = ns.numa_cores_per_instance
    if cpi is not None and cpi.strip().lower() in ("socket", "auto"):
        ns.numa_cores_per_instance = cpi.strip().lower()
    elif cpi is not None:
        ns.numa_cores_per_instance = _positive(cpi, "--numa-cores-per-instance (or socket, auto)")
    if ns.num_cores is not None and ns.numa_cores_per_instance is not None:
        raise LaunchError("--num-cores and --numa-cores-per-instance both set the cores of a "
                          "process: give one")
    ns.instance_mode = ns.num_instances is not None or ns.numa_cores_per_instance is not None
    if (ns.instance_results_dir or ns.aggregate_file) and not ns.instance_mode:
        raise LaunchError("--instance-results-dir/--aggregate-file go with --num-instances or "
                          "--numa-cores-per-instance")
    ns.num_intra_threads = _positive(ns.num_intra_threads or _env(environ, "NUM_INTRA_THREADS"),
                                     "--num-intra-threads / NUM_INTRA_THREADS")
    ns.num_inter_threads = _positive(ns.num_inter_threads or _env(environ, "NUM_INTER_THREADS"),
                                     "--num-inter-threads / NUM_INTER_THREADS")
    if ns.cpuset is not None:
        try:
            ns.cpuset = parse_cpu_list(ns.cpuset)
        except ValueError:
            raise LaunchError(f"--cpuset {ns.cpuset!r} is not a CPU list like 0-3,8-11") from None
        if not ns.cpuset:
            raise LaunchError("--cpuset is empty: give a CPU list like 0-3,8-11")
    return ns


_HOST_RE = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])$")


def parse_hosts(text: str) -> List[Tuple[str, Optional[int]]]:
    """``"10.0.0.1,node2:4"`` -> ``[("10.0.0.1", None), ("node2", 4)]``."""
    hosts: List[Tuple[str, Optional[int]]] = []
    entries = text.split(",")
    for i, raw in enumerate(entries, 1):
        entry = raw.strip()
        name, slots = entry, None
        m = re.match(r"^(.*?):(\d*)$", entry) if not entry.startswith("[") or "]:" in entry \
            else None
        if m:
            name, slots_text = m.group(1), m.group(2)
            slots = int(slots_text) if slots_text.isdigit() else -1
        if not entry or not _HOST_RE.match(name) or (slots is not None and slots < 1):
            raise LaunchError(
                f"host list {text!r}: entry {i} ({entry!r}) is malformed; use comma-separated "
                "host names or IPs, optionally host:slots, e.g. 10.0.0.1,10.0.0.2:8")
        hosts.append((name, slots))
    return hosts


# -- placement ------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Slot:
    """The CPUs (one per physical core) and NUMA nodes of one process."""

    cpus: Tuple[int, ...]
    nodes: Tuple[int, ...]

    @property
    def cpulist(self) -> str:
        return format_cpu_list(self.cpus)

    @property
    def mems(self) -> str:
        """``--membind`` value, or ``local`` when the CPUs span several nodes."""
        return str(self.nodes[0]) if len(self.nodes) == 1 else "local"

    @property
    def pair(self) -> Tuple[str, str]:
        """(CPUS, MEMS) as ``bind.py`` takes a slot."""
        return self.cpulist, self.mems

    @property
    def arg(self) -> str:
        """The ``bind.py --slot`` value ``CPUS:MEMS``."""
        return f"{self.cpulist}:{self.mems}"


def _slot(platform: Platform, cpus: Sequence[int]) -> Slot:
    return Slot(cpus=tuple(cpus), nodes=tuple(sorted({platform.node_of(c) for c in cpus})))


def assign_slots(platform: Platform, n: int, per_socket: Optional[int],
                 num_cores: Optional[int]) -> Tuple[List[Slot], List[str], bool]:
    """Place ``n`` ranks on this machine's usable physical cores.

    Returns (one slot per local rank, warnings, whether mpirun must oversubscribe)."""
    warnings: List[str] = []
    sockets = platform.usable_sockets()
    cores = {s: platform.physical_cores(s) for s in sockets}
    total = sum(len(v) for v in cores.values())
    if per_socket is not None:
        for s in sockets:
            if per_socket > len(cores[s]):
                raise LaunchError(
                    f"{per_socket} processes per socket but socket {s} has only "
                    f"{len(cores[s])} usable physical core(s): set "
                    f"MPI_NUM_PROCESSES_PER_SOCKET (--mpi-num-processes-per-socket) to at most "
                    f"{len(cores[s])}")
    ranks_per_socket = per_socket
    if ranks_per_socket is None:
        if n <= len(sockets):
            ranks_per_socket = 1
        elif n % len(sockets) == 0 and n // len(sockets) <= min(len(v) for v in cores.values()):
            ranks_per_socket = n // len(sockets)
            warnings.append(f"{n} ranks on {len(sockets)} socket(s): {ranks_per_socket} ranks "
                            "share each socket, splitting its cores")
    slots: List[Slot] = []
    oversubscribe = False
    if ranks_per_socket is not None and n <= len(sockets) * ranks_per_socket:
        used = sockets[:math.ceil(n / ranks_per_socket)]
        chunk = min(len(cores[s]) for s in used) // ranks_per_socket
        for r in range(n):
            s = used[r // ranks_per_socket]
            k = r % ranks_per_socket
            slots.append(_slot(platform, cores[s][k * chunk:(k + 1) * chunk]))
        spare = sum(len(cores[s]) for s in used) - chunk * n
        if spare and len({len(cores[s]) for s in used}) > 1:
            warnings.append(f"sockets have unequal usable cores; each rank gets {chunk}, "
                            f"{spare} core(s) stay idle")
    else:
        everything = [c for s in sockets for c in cores[s]]
        have = (f"{len(sockets)} socket(s)" if per_socket is None else
                f"{len(sockets)} socket(s) x {per_socket} rank(s) per socket")
        if total >= n:
            chunk = total // n
            slots = [_slot(platform, everything[r * chunk:(r + 1) * chunk]) for r in range(n)]
            warnings.append(f"{n} ranks asked but this machine has {have}: splitting its "
                            f"{total} usable physical cores, {chunk} per rank")
        else:
            slots = [_slot(platform, [everything[r % total]]) for r in range(n)]
            oversubscribe = True
            warnings.append(f"{n} ranks asked but only {total} usable physical core(s): ranks "
                            "share cores (oversubscribed, slow)")
    if num_cores is not None:
        have_cores = min(len(s.cpus) for s in slots)
        if num_cores > have_cores:
            raise LaunchError(f"--num-cores {num_cores} but each rank has {have_cores} usable "
                              f"physical core(s): use --num-cores {have_cores} or fewer ranks")
        slots = [_slot(platform, s.cpus[:num_cores]) for s in slots]
    return slots, warnings, oversubscribe


def instance_slots(platform: Platform, num_instances: Optional[int],
                   cores_per_instance: Union[int, str, None]) -> Tuple[List[Slot], List[str]]:
    """Split the usable physical cores into the instances' slots (``--num-instances`` /
    ``--numa-cores-per-instance``), in (socket, core) order.

    * C cores per instance: consecutive chunks of C cores inside one NUMA node when C fits in
      every node of the socket, else inside one socket (never across sockets); cores that do
      not fill a chunk stay idle (a warning says how many). N defaults to the chunks there are;
      more than that is an error naming the most that fit.
    * ``socket``: one instance per socket, all its cores.
    * ``auto``: C = ``AUTO_CORES_PER_INSTANCE`` (Intel's realtime setting), or the usable
      physical cores of the largest socket when it has fewer (a warning says so).
    * N alone: N <= sockets: one socket each; N a multiple of the sockets: each socket split
      evenly; else all cores split into N equal runs (an instance may then span sockets)."""
    warnings: List[str] = []
    sockets = platform.usable_sockets()
    cores = {s: platform.physical_cores(s) for s in sockets}
    if cores_per_instance == "auto":
        most = max(len(v) for v in cores.values())
        cores_per_instance = min(AUTO_CORES_PER_INSTANCE, most)
        if most < AUTO_CORES_PER_INSTANCE:
            warnings.append(f"--numa-cores-per-instance auto: {most} core(s) per instance (a "
                            f"socket has {most} usable physical core(s), fewer than "
                            f"{AUTO_CORES_PER_INSTANCE})")
    if cores_per_instance == "socket":
        cores_per_instance = None
        chunks = [cores[s] for s in sockets]
        if num_instances is None:
            num_instances = len(chunks)
    elif cores_per_instance is not None:
        c = int(cores_per_instance)
        chunks = []
        idle = 0
        for s in sockets:
            groups: Dict[int, List[int]] = {}
            for cpu in cores[s]:
                groups.setdefault(platform.node_of(cpu), []).append(cpu)
            if any(len(g) < c for g in groups.values()):
                groups = {0: cores[s]}  # C does not fit in a node: chunks of the whole socket
            for group in groups.values():
                fit = len(group) // c
                chunks += [group[k * c:(k + 1) * c] for k in range(fit)]
                idle += len(group) - fit * c
        if not chunks:
            most = max(len(v) for v in cores.values())
            raise LaunchError(f"--numa-cores-per-instance {c} but a socket has at most {most} "
                              f"usable physical core(s): use {most} or fewer")
        if num_instances is None:
            num_instances = len(chunks)
            if idle:
                warnings.append(f"{idle} usable physical core(s) stay idle: they do not fill "
                                f"an instance of {c} cores")
    else:
        assert num_instances is not None
        total = sum(len(v) for v in cores.values())
        if num_instances > total:
            raise LaunchError(f"--num-instances {num_instances} but only {total} usable physical "
                              f"core(s): use {total} or fewer instances")
        if num_instances <= len(sockets):
            chunks = [cores[s] for s in sockets]
        elif num_instances % len(sockets) == 0 and num_instances // len(sockets) <= min(
                len(v) for v in cores.values()):
            k = num_instances // len(sockets)
            chunks = []
            for s in sockets:
                size = len(cores[s]) // k
                chunks += [cores[s][i * size:(i + 1) * size] for i in range(k)]
        else:
            everything = [c for s in sockets for c in cores[s]]
            size = total // num_instances
            chunks = [everything[i * size:(i + 1) * size] for i in range(num_instances)]
    if num_instances > len(chunks):
        raise LaunchError(f"{num_instances} instances of {len(chunks[0])} core(s) do not fit: "
                          f"this machine's usable cores hold at most {len(chunks)}; lower "
                          "--num-instances or --numa-cores-per-instance")
    return [_slot(platform, chunk) for chunk in chunks[:num_instances]], warnings


def _percentiles(values: Sequence[float]) -> Dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:  # linear interpolation, as numpy.percentile's default
        pos = (len(ordered) - 1) * q / 100.0
        lo, hi = math.floor(pos), math.ceil(pos)
        return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)

    return {"p50": at(50), "p90": at(90), "p99": at(99), "mean": sum(ordered) / len(ordered),
            "min": ordered[0], "max": ordered[-1]}


def aggregate_results(results: Sequence[Optional[Mapping[str, object]]]) -> Dict[str, object]:
    """The instances' results as one: ``examples_per_sec`` summed (they run at the same time),
    latency percentiles over every instance's timed batches (``latencies_ms``), each
    instance's figure, and the values all instances share (batch, precision, mode, ...)."""
    got = [r for r in results if isinstance(r, Mapping)]
    out: Dict[str, object] = {"instances": len(results), "instances_reporting": len(got)}
    rates = [r.get("examples_per_sec") for r in got]
    if got and all(isinstance(x, (int, float)) for x in rates):
        out["examples_per_sec"] = float(sum(rates))  # type: ignore[arg-type]
        out["per_instance_examples_per_sec"] = [float(x) for x in rates]  # type: ignore[arg-type]
    samples: List[float] = []
    for r in got:
        lat = r.get("latencies_ms")
        if isinstance(lat, list):
            samples += [float(x) for x in lat]
    if samples:
        out["latency_ms"] = _percentiles(samples)
    for key in ("mode", "precision", "batch_size", "max_seq_length", "exact_match", "f1"):
        values = {json.dumps(r.get(key)) for r in got if key in r}
        if len(values) == 1 and len([r for r in got if key in r]) == len(got):
            out[key] = got[0][key]
    return out


# -- the plan -------------------------------------------------------------------------------------

@dataclasses.dataclass
class Plan:
    argv: List[str]
    env: Dict[str, str]
    unset: List[str]
    warnings: List[str]
    summary: str
    # What each rank runs: {"rank", "host", "local_rank", "cpus", "memory", "bind", "command"}
    # (bind.rank_binding's fields; cpus/memory None and bind "none" with --no-bind).
    ranks: List[Dict[str, object]] = dataclasses.field(default_factory=list)
    # Folders to create before running (--output-filename); not created by --dry-run.
    make_dirs: List[str] = dataclasses.field(default_factory=list)
    # --num-instances: what each instance runs, {"instance", "cpus", "memory", "bind",
    # "command", "env"} (env: the variables of that instance only); argv is then empty.
    instances: List[Dict[str, object]] = dataclasses.field(default_factory=list)

    def to_json(self) -> str:
        """The plan as printed by ``--json``, credentials in URLs masked
        (:func:`mask_credentials`); ``argv``/``env`` themselves keep the real values."""
        obj: dict = {"argv": self.argv, "env": self.env, "ranks": self.ranks}
        if self.instances:
            obj["instances"] = self.instances
        if self.unset:
            obj["unset"] = self.unset
        return json.dumps(_masked(obj), sort_keys=False)

    def rank_lines(self) -> List[str]:
        """One line per rank: where it runs and the command it execs."""
        lines = []
        for r in self.ranks:
            gpu = f", CUDA_VISIBLE_DEVICES={r['gpu']}" if r.get("gpu") is not None else ""
            where = (f"instance {r['instance']} on {r['host']}" if "instance" in r else
                     f"rank {r['rank']} on {r['host']} (local rank {r['local_rank']}{gpu})")
            if r["bind"] == "numactl":
                how = ""
            elif r["bind"] == "sched_setaffinity":
                how = f"CPUs {r['cpus']} by sched_setaffinity, memory unbound: "
            elif r["bind"] == "mpirun":
                how = f"CPUs {r['cpus']} (cores) by mpirun --bind-to core, memory local: "
            else:
                how = "unbound: "
            command = [mask_credentials(a) for a in r["command"]]  # type: ignore[union-attr]
            lines.append(f"{where}: {how}{shlex.join(command)}")
        return lines

    def shell_text(self) -> str:
        """The plan as a shell script, credentials in URLs masked (:func:`mask_credentials`)."""
        lines = [f"# {PROG}: {mask_credentials(self.summary)}"]
        lines += [f"#   {line}" for line in self.rank_lines()]
        lines += [f"export {k}={shlex.quote(mask_credentials(v, k))}"
                  for k, v in sorted(self.env.items())]
        lines += [f"unset {k}" for k in self.unset]
        if self.instances:
            for inst in self.instances:
                own = [f"{k}={shlex.quote(mask_credentials(str(v), k))}"
                       for k, v in inst["env"].items()]  # type: ignore[union-attr]
                command = [mask_credentials(a) for a in inst["command"]]  # type: ignore[union-attr]
                lines.append(f"{' '.join(own)} {shlex.join(command)} &")
            lines.append("wait")
        else:
            lines.append(shlex.join(mask_credentials(a) for a in self.argv))
        return "\n".join(lines)

    def child_environ(self, environ: Mapping[str, str]) -> Dict[str, str]:
        env = dict(environ)
        env.update(self.env)
        for name in self.unset:
            env.pop(name, None)
        return env


def _precision_env(precision: Optional[str], platform: Platform, environ: Mapping[str, str],
                   env: Dict[str, str], unset: List[str], warnings: List[str]) -> None:
    if precision is None:
        return
    try:
        precision = precisions.canonical(precision)
    except precisions.PrecisionError as exc:
        raise LaunchError(f"--precision: {exc}") from None
    if precision == "avx-fp32":
        unset.append("DNNL_MAX_CPU_ISA")
        return
    if precision in ("fp32", "bf32", "bf16"):
        if "DNNL_MAX_CPU_ISA" not in environ and platform.has_amx:
            env["DNNL_MAX_CPU_ISA"] = AMX_ISA
    if precision == "bf16" and not platform.has_native_bf16:
        warnings.append("bf16 asked but this CPU has neither avx512_bf16 nor amx_bf16: "
                        "bf16 math is emulated and slow")


def load_gpus(opts: argparse.Namespace, environ: Mapping[str, str]) -> gpus.GpuHost:
    """This host's GPUs (``gpus.detect``), or those of ``--nvidia-smi-file``."""
    try:
        return gpus.detect(environ, smi_file=getattr(opts, "nvidia_smi_file", None))
    except OSError as exc:
        raise LaunchError(f"--nvidia-smi-file {opts.nvidia_smi_file}: {exc.strerror}") from None


def _gpu_ids(opts: argparse.Namespace, environ: Mapping[str, str],
             gpu_host: Optional[gpus.GpuHost]) -> Tuple[List[str], str]:
    """(GPU ids for the ranks of this host, what they are) for ``--device``; no ids: a CPU run."""
    device = getattr(opts, "device", None)
    if device not in ("cuda", "auto"):
        return [], ""
    host = gpu_host if gpu_host is not None else load_gpus(opts, environ)
    if not host.gpus:
        if device == "cuda":
            narrowed = (f" (CUDA_VISIBLE_DEVICES={environ['CUDA_VISIBLE_DEVICES']!r})"
                        if "CUDA_VISIBLE_DEVICES" in environ else "")
            raise LaunchError(f"--device cuda but no NVIDIA GPU is visible: "
                              f"{host.source} list(s) none{narrowed}; check the driver "
                              "(nvidia-smi) and start containers with --gpus all, or use "
                              "--device cpu (DEVICE=cpu in the PyTorch quickstarts)")
        return [], ""
    return host.ids, host.describe()


def build_plan(opts: argparse.Namespace, environ: Mapping[str, str], platform: Platform,
               tools: Tools, gpu_host: Optional[gpus.GpuHost] = None) -> Plan:
    """Pure: options + machine -> command line and environment (``gpu_host``: the GPUs for
    ``--device cuda|auto``; detected when None)."""
    warnings: List[str] = []
    env: Dict[str, str] = {}
    unset: List[str] = []
    make_dirs: List[str] = []

    if opts.cpuset is not None:
        platform = platform.with_usable(opts.cpuset)
        if not platform.usable:
            raise LaunchError(f"--cpuset {format_cpu_list(opts.cpuset)} names no online CPU of "
                              f"this machine (online: "
                              f"{format_cpu_list(c.cpu for c in platform.cpus)})")
    if opts.socket_id is not None:
        if opts.socket_id not in platform.sockets:
            raise LaunchError(f"--socket-id {opts.socket_id} is out of range: this machine has "
                              f"socket(s) {format_cpu_list(platform.sockets)}")
        own = {c.cpu for c in platform.cpus if c.socket == opts.socket_id}
        if not own & platform.usable:
            raise LaunchError(f"--socket-id {opts.socket_id}: none of its CPUs may be used by "
                              f"this process (usable: {format_cpu_list(platform.usable)}); "
                              "pick another socket")
        platform = platform.with_usable(own & platform.usable)

    hosts = parse_hosts(opts.hosts) if opts.hosts else []
    gpu_ids, gpu_what = _gpu_ids(opts, environ, gpu_host)
    n = opts.mpi_num_processes
    if gpu_ids and opts.mpi_num_processes_per_socket is not None:
        raise LaunchError("--device cuda places one rank per GPU: drop "
                          "MPI_NUM_PROCESSES_PER_SOCKET (--mpi-num-processes-per-socket)")
    if n is None and gpu_ids and not hosts:
        n = len(gpu_ids)
    if n is None and opts.mpi_num_processes_per_socket is not None and not hosts:
        n = len(platform.usable_sockets()) * opts.mpi_num_processes_per_socket
    use_mpi = bool(hosts) or (n or 1) > 1

    if getattr(opts, "instance_mode", False) and gpu_ids:
        raise LaunchError("--num-instances/--numa-cores-per-instance run on the CPU: add "
                          "--device cpu")
    if getattr(opts, "instance_mode", False):
        if use_mpi:
            raise LaunchError("--num-instances/--numa-cores-per-instance start independent "
                              "processes on this host; they do not combine with MPI ranks "
                              "(MPI_NUM_PROCESSES > 1 or hosts): use one or the other")
        if opts.no_bind:
            raise LaunchError("--num-instances pins each instance to its own cores: drop "
                              "--no-bind")
        return _instances_plan(opts, environ, platform, tools)

    if not use_mpi:
        cores = platform.physical_cores()
        if opts.num_cores is not None:
            if opts.num_cores > len(cores):
                where = (f"socket {opts.socket_id}" if opts.socket_id is not None
                         else "this process")
                raise LaunchError(f"--num-cores {opts.num_cores} but {where} has "
                                  f"{len(cores)} usable physical core(s): use --num-cores "
                                  f"{len(cores)} or less")
            cores = cores[:opts.num_cores]
        slot = _slot(platform, cores)
        if opts.no_bind:
            argv = list(opts.command)
            ranks = [_unbound_rank(0, LOCAL_HOST, 0, argv)]
        else:
            binding = bind.rank_binding(slot.pair, opts.command, tools.numactl)
            ranks = [{"rank": 0, "host": LOCAL_HOST, "local_rank": 0, **binding}]
            if tools.numactl:
                argv = list(binding["command"])  # launch.py execs numactl itself
            else:
                argv = [tools.python, BIND_SCRIPT, "--slot", slot.arg, "--", *opts.command]
                warnings.append("numactl not found: binding CPUs with sched_setaffinity, memory "
                                "unbound (install numactl for NUMA-local memory)")
        threads = len(slot.cpus)
        summary = f"1 process on CPUs {slot.cpulist} (NUMA {slot.mems}), {threads} thread(s)"
        if gpu_ids:  # one GPU used: the process sees only it
            env["CUDA_VISIBLE_DEVICES"] = gpu_ids[0]
            ranks[0]["gpu"] = gpu_ids[0]
            summary += f"; GPU {gpu_ids[0]} of {gpu_what}"
    else:
        mpirun = tools.mpirun
        if not mpirun:
            if hosts:
                asked, instead = f"hosts {opts.hosts}", "or unset MULTI_HLS_IPS/MPI_HOSTNAMES"
            else:
                asked, instead = f"MPI_NUM_PROCESSES={n}", "or set MPI_NUM_PROCESSES=1"
            if not opts.dry_run:
                raise LaunchError(f"{asked} needs mpirun, which is not on PATH: install Open MPI "
                                  f"(apt-get install openmpi-bin) {instead}")
            warnings.append("mpirun not found on PATH (install openmpi-bin); showing the command")
            mpirun = "mpirun"
        argv = [mpirun]
        if tools.is_root:
            argv.append("--allow-run-as-root")
        if hosts:
            if n is not None and any(s is None for _, s in hosts):
                per_host = math.ceil(n / len(hosts))
            elif gpu_ids:  # hosts are assumed to have this host's GPUs
                per_host = len(gpu_ids)
            else:
                per_host = len(platform.usable_sockets()) * (opts.mpi_num_processes_per_socket
                                                             or 1)
            host_slots = [(h, s if s is not None else per_host) for h, s in hosts]
            capacity = sum(s for _, s in host_slots)
            if n is None:
                n = capacity
            elif n > capacity:
                raise LaunchError(f"{n} ranks asked but the hosts provide {capacity} slots "
                                  f"({opts.hosts}): lower MPI_NUM_PROCESSES or add host:slots")
            local_n = max(s for _, s in host_slots)
        else:
            local_n = n
        assert n is not None
        if gpu_ids and local_n > len(gpu_ids):
            raise LaunchError(f"{local_n} ranks on a host with {len(gpu_ids)} GPU(s) "
                              f"({gpu_what}): one rank per GPU, NCCL cannot share one; set "
                              f"MPI_NUM_PROCESSES to at most {len(gpu_ids) * max(1, len(hosts))}")
        pe_mode = opts.map_by_socket_pe is not None
        if pe_mode:
            pe, pe_cpus, pe_why = _socket_pe(platform, local_n, opts)
            slots, oversubscribe = [], False
        else:
            slots, more, oversubscribe = assign_slots(platform, local_n,
                                                      opts.mpi_num_processes_per_socket,
                                                      opts.num_cores)
            warnings += more
        argv += ["-np", str(n)]
        if hosts:
            argv += ["-H", ",".join(f"{h}:{s}" for h, s in host_slots)]
        if oversubscribe:
            argv.append("--oversubscribe")
        if pe_mode:
            argv += ["--bind-to", "core", "--map-by", f"socket:PE={pe}"]
        else:
            argv += ["--bind-to", "none", "--map-by", "slot"]
        tcp_note = ""
        if opts.tcp_include:
            argv += ["--mca", "btl_tcp_if_include", opts.tcp_include]
        elif hosts:
            found = interface_for_hosts([h for h, _ in hosts], tools.local_interfaces())
            if found:
                argv += ["--mca", "btl_tcp_if_include", found[0]]
                tcp_note = f"; MPI TCP over {found[0]} (holds {found[1]}, {found[2]})"
            else:
                warnings.append(f"none of the hosts ({opts.hosts}) is an address of this "
                                "machine (host names are not resolved): no btl_tcp_if_include "
                                "given, MPI picks the interfaces; set MPI_TCP_INCLUDE "
                                "(--tcp-include) to choose one")
        if hosts:
            port = opts.ssh_port or DEFAULT_SSH_PORT
            argv += ["--mca", "plm_rsh_args",
                     _rsh_args(_env(environ, "OMPI_MCA_plm_rsh_args"), port,
                               explicit=opts.ssh_port is not None)]
        if hosts and environ.get("MPI_ROOT"):
            argv += ["--prefix", environ["MPI_ROOT"]]
        if opts.tag_output:
            argv.append("--tag-output")
        if opts.merge_stderr_to_stdout:
            argv.append("--merge-stderr-to-stdout")
        if opts.output_filename:
            if os.path.exists(opts.output_filename) and not os.path.isdir(opts.output_filename):
                raise LaunchError(f"--output-filename {opts.output_filename} exists and is not "
                                  "a folder: give a folder for the ranks' output files")
            argv += ["--output-filename", opts.output_filename]
            make_dirs.append(opts.output_filename)
        threads = pe if pe_mode else min(len(s.cpus) for s in slots)
        bind_argv = [tools.python, BIND_SCRIPT]
        for s in slots:
            bind_argv += ["--slot", s.arg]
        command = list(opts.command)
        if not hosts:
            # mpirun puts its own bin folder first on each rank's PATH, so a bare "python3"
            # could resolve to a different interpreter in the ranks than in this shell.
            command[0] = shutil.which(command[0], path=environ.get("PATH", os.defpath)) \
                or command[0]
        if gpu_ids:  # gpus.py sets each rank's CUDA_VISIBLE_DEVICES from its local rank
            command = [tools.python, gpus.SCRIPT, "--gpus", ",".join(gpu_ids[:local_n]), "--",
                       *command]
        tail = command if opts.no_bind or pe_mode else [*bind_argv, "--", *command]
        ranks = []
        placed = host_slots if hosts else [(LOCAL_HOST, n)]
        for rank, (host, local_rank) in enumerate(_rank_hosts(placed, n)):
            if opts.no_bind:
                ranks.append(_unbound_rank(rank, host, local_rank, command))
            elif pe_mode:
                ranks.append({"rank": rank, "host": host, "local_rank": local_rank,
                              "cpus": pe_cpus[local_rank % len(pe_cpus)], "memory": "local",
                              "bind": "mpirun", "command": list(command)})
            else:
                slot_pair = bind.pick_slot([s.pair for s in slots], local_rank)
                ranks.append({"rank": rank, "host": host, "local_rank": local_rank,
                              **bind.rank_binding(slot_pair, command, tools.numactl)})
            if gpu_ids:
                ranks[-1]["gpu"] = gpus.rank_env(gpu_ids[:local_n], local_rank)[
                    "CUDA_VISIBLE_DEVICES"]
        where = f"{len(hosts)} host(s)" if hosts else "this host"
        if pe_mode:
            summary = (f"{n} MPI rank(s) on {where}, {threads} thread(s) each; mpirun binds "
                       f"them: --map-by socket:PE={pe} ({pe_why})")
        else:
            summary = (f"{n} MPI rank(s) on {where}, {threads} thread(s) each; local ranks "
                       "bound to " + " | ".join(f"{s.cpulist} (NUMA {s.mems})" for s in slots))
        if gpu_ids:
            summary += f"; one rank per GPU: {gpu_what}"
        summary += tcp_note

    local_threads = threads * (1 if not use_mpi else local_n)
    if platform.cpu_quota is not None and platform.cpu_quota < local_threads:
        warnings.append(f"this container may use {platform.cpu_quota:g} CPU(s) (cgroup cpu.max) "
                        f"but {local_threads} OpenMP threads are planned: pass --num-cores "
                        f"{max(1, int(platform.cpu_quota))} or raise the limit")
    _thread_env(opts, environ, threads, env)
    _precision_env(opts.precision, platform, environ, env, unset, warnings)
    if opts.malloc != "none":
        current = environ.get("LD_PRELOAD", "")
        if not re.search(r"(tc|je)malloc", current):
            lib = tools.find_malloc(opts.malloc)
            if lib:
                env["LD_PRELOAD"] = f"{lib}:{current}" if current else lib
            elif opts.malloc != "auto":
                warnings.append(f"--malloc {opts.malloc}: lib{opts.malloc} not found, running "
                                "with the default allocator")

    if use_mpi:
        names = {k for k in MPI_FORWARD_NAMES if k in env or _env(environ, k) is not None}
        if hosts:
            names.update(env)
            names.update(k for k in environ if k in FORWARD_NAMES or k.startswith(FORWARD_PREFIXES))
        names.difference_update(unset)
        for name in sorted(names):
            argv += ["-x", name]
        argv += tail
    return Plan(argv=argv, env=env, unset=unset, warnings=warnings, summary=summary, ranks=ranks,
                make_dirs=make_dirs)


def _thread_env(opts: argparse.Namespace, environ: Mapping[str, str], threads: int,
                env: Dict[str, str]) -> None:
    env["OMP_NUM_THREADS"] = str(threads)
    env["NUM_INTRA_THREADS"] = str(opts.num_intra_threads or threads)
    env["NUM_INTER_THREADS"] = str(opts.num_inter_threads or 1)
    for name, value in (("KMP_AFFINITY", DEFAULT_KMP_AFFINITY),
                        ("KMP_BLOCKTIME", DEFAULT_KMP_BLOCKTIME)):
        if name not in environ:
            env[name] = value


def _instances_plan(opts: argparse.Namespace, environ: Mapping[str, str], platform: Platform,
                    tools: Tools) -> Plan:
    """--num-instances / --numa-cores-per-instance: one pinned process per slot."""
    slots, warnings = instance_slots(platform, opts.num_instances, opts.numa_cores_per_instance)
    env: Dict[str, str] = {}
    unset: List[str] = []
    threads = min(len(s.cpus) for s in slots)
    _thread_env(opts, environ, threads, env)
    _precision_env(opts.precision, platform, environ, env, unset, warnings)
    if opts.malloc != "none" and not re.search(r"(tc|je)malloc", environ.get("LD_PRELOAD", "")):
        lib = tools.find_malloc(opts.malloc)
        if lib:
            current = environ.get("LD_PRELOAD", "")
            env["LD_PRELOAD"] = f"{lib}:{current}" if current else lib
    if not tools.numactl:
        warnings.append("numactl not found: binding each instance's CPUs with "
                        "sched_setaffinity, memory unbound (install numactl for NUMA-local "
                        "memory)")
    results_dir = opts.instance_results_dir or "${LAUNCH_RESULTS_DIR}"
    instances: List[Dict[str, object]] = []
    for i, slot in enumerate(slots):
        binding = bind.rank_binding(slot.pair, opts.command, tools.numactl)
        command = (list(binding["command"]) if tools.numactl else
                   [tools.python, BIND_SCRIPT, "--slot", slot.arg, "--", *opts.command])
        instances.append({
            "instance": i, "host": LOCAL_HOST, "cpus": binding["cpus"],
            "memory": binding["memory"], "bind": binding["bind"], "command": command,
            "env": {INSTANCE_VAR: str(i), NUM_INSTANCES_VAR: str(len(slots)),
                    RESULT_FILE_VAR: os.path.join(results_dir, f"instance_{i}.json")}})
    total = len(slots) * threads
    if platform.cpu_quota is not None and platform.cpu_quota < total:
        warnings.append(f"this container may use {platform.cpu_quota:g} CPU(s) (cgroup cpu.max) "
                        f"but {total} OpenMP threads are planned over the instances")
    summary = (f"{len(slots)} instance(s), {threads} core(s) each: "
               + " | ".join(f"{s.cpulist} (NUMA {s.mems})" for s in slots))
    ranks = [{"rank": 0, "host": LOCAL_HOST, "local_rank": 0,
              **{k: inst[k] for k in ("instance", "cpus", "memory", "bind", "command")}}
             for inst in instances]
    return Plan(argv=[], env=env, unset=unset, warnings=warnings, summary=summary, ranks=ranks,
                instances=instances)


def run_instances(plan: Plan, environ: Mapping[str, str], results_dir: Optional[str],
                  aggregate_file: Optional[str]) -> int:
    """Start every instance of ``plan``, relay their output prefixed ``[instance i]``, wait,
    print each result and the aggregate. Returns the first failing instance's exit status
    (0 when all succeed); Ctrl-C / SIGTERM are passed to every instance."""
    import signal  # noqa: PLC0415
    import tempfile  # noqa: PLC0415
    import threading  # noqa: PLC0415

    made_temp = results_dir is None
    folder = tempfile.mkdtemp(prefix="launch-instances-") if made_temp else results_dir
    os.makedirs(folder, exist_ok=True)
    procs: List[subprocess.Popen] = []
    relays: List[threading.Thread] = []
    lock = threading.Lock()

    def relay(i: int, stream) -> None:
        for line in iter(stream.readline, b""):
            text = line.decode(errors="replace")
            with lock:
                sys.stdout.write(f"[instance {i}] {text}")
                sys.stdout.flush()
        stream.close()

    def forward(signum, _frame):
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    files = []
    try:
        for inst in plan.instances:
            child = plan.child_environ(environ)
            own = dict(inst["env"])  # type: ignore[arg-type]
            own[RESULT_FILE_VAR] = os.path.join(folder, f"instance_{inst['instance']}.json")
            files.append(own[RESULT_FILE_VAR])
            try:
                os.unlink(own[RESULT_FILE_VAR])
            except FileNotFoundError:
                pass
            child.update(own)
            command = list(inst["command"])  # type: ignore[arg-type]
            try:
                proc = subprocess.Popen(command, env=child, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT)
            except OSError as exc:
                print(f"{PROG}: error: cannot run {command[0]!r}: {exc.strerror}",
                      file=sys.stderr)
                forward(signal.SIGTERM, None)
                return 127
            procs.append(proc)
            thread = threading.Thread(target=relay, args=(inst["instance"], proc.stdout),
                                      daemon=True)
            thread.start()
            relays.append(thread)
        codes = [proc.wait() for proc in procs]
        for thread in relays:
            thread.join()
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    results: List[Optional[dict]] = []
    for i, path in enumerate(files):
        try:
            with open(path, encoding="utf-8") as fh:
                results.append(json.load(fh))
        except (OSError, ValueError):
            results.append(None)
    for i, (code, result) in enumerate(zip(codes, results)):
        rate = result.get("examples_per_sec") if isinstance(result, dict) else None
        what = (f"{rate:.3f} examples/sec" if isinstance(rate, (int, float)) else
                "no result file" if result is None else "result without examples_per_sec")
        print(f"{PROG}: instance {i}: exit {code}, {what}")
    summary = aggregate_results(results)
    line = [f"{PROG}: aggregate over {len(codes)} instance(s):"]
    if "examples_per_sec" in summary:
        line.append(f"throughput {summary['examples_per_sec']:.3f} examples/sec")
    lat = summary.get("latency_ms")
    if isinstance(lat, dict):
        line.append(f"latency ms p50 {lat['p50']:.2f} p90 {lat['p90']:.2f} p99 {lat['p99']:.2f}")
    print(" ".join(line) if len(line) > 1 else line[0] + " no results reported")
    print(f"{PROG}: aggregate: {json.dumps(summary, sort_keys=True)}")
    sys.stdout.flush()
    if aggregate_file:
        tmp = f"{aggregate_file}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.replace(tmp, aggregate_file)
    if made_temp:
        import shutil as _shutil  # noqa: PLC0415
        _shutil.rmtree(folder, ignore_errors=True)
    failed = [(i, c) for i, c in enumerate(codes) if c != 0]
    if failed:
        print(f"{PROG}: error: instance(s) {', '.join(str(i) for i, _ in failed)} failed "
              f"(exit {', '.join(str(c) for _, c in failed)})", file=sys.stderr)
        code = failed[0][1]
        return code if code > 0 else 128 - code
    return 0


def _socket_pe(platform: Platform, local_n: int,
               opts: argparse.Namespace) -> Tuple[int, List[str], str]:
    """PE (cores per rank) for ``--map-by socket:PE=N``, the CPU list each local rank gets as
    mpirun places them (round robin over the sockets, then the next cores), and why."""
    if opts.num_cores is not None:
        raise LaunchError("--num-cores and --map-by-socket-pe both set the cores per rank: "
                          "give only --map-by-socket-pe N")
    sockets = platform.usable_sockets()
    cores = {s: platform.physical_cores(s) for s in sockets}
    per_socket = min(len(v) for v in cores.values())
    ranks_per_socket = math.ceil(local_n / len(sockets))
    spread = (f"{local_n} rank(s) on this host over {len(sockets)} socket(s): "
              f"{ranks_per_socket} per socket")
    if opts.map_by_socket_pe == "auto":
        pe = max(1, per_socket // ranks_per_socket)
        why = (f"auto: {per_socket} usable physical cores per socket // {ranks_per_socket} "
               f"rank(s) per socket ({spread})")
    else:
        pe = opts.map_by_socket_pe
        why = f"given; {spread}, {per_socket} usable physical cores per socket"
        if pe > per_socket:
            raise LaunchError(f"--map-by-socket-pe {pe} but a socket has {per_socket} usable "
                              f"physical core(s): use {per_socket} or less (or auto)")
    if pe * ranks_per_socket > per_socket:
        raise LaunchError(f"--map-by-socket-pe: {ranks_per_socket} rank(s) per socket x PE={pe} "
                          f"needs {pe * ranks_per_socket} cores but a socket has {per_socket} "
                          f"usable physical core(s) ({spread}): use fewer ranks or a smaller PE")
    cpus = []
    for local in range(min(local_n, len(sockets) * ranks_per_socket)):
        s, k = sockets[local % len(sockets)], local // len(sockets)
        cpus.append(format_cpu_list(cores[s][k * pe:(k + 1) * pe]))
    return pe, cpus, why


def _rank_hosts(host_slots: Sequence[Tuple[str, int]], n: int) -> List[Tuple[str, int]]:
    """(host, local rank) of ranks 0..n-1 as ``mpirun --map-by slot -H host:slots,...`` places
    them: each host's slots in turn, in the order given."""
    placed: List[Tuple[str, int]] = []
    for host, count in host_slots:
        placed += [(host, local) for local in range(count)]
    return placed[:n]


def _unbound_rank(rank: int, host: str, local_rank: int,
                  command: Sequence[str]) -> Dict[str, object]:
    return {"rank": rank, "host": host, "local_rank": local_rank, "cpus": None, "memory": None,
            "bind": "none", "command": list(command)}


# -- entry point ----------------------------------------------------------------------------------

def load_platform(opts: argparse.Namespace) -> Platform:
    if opts.lscpu_file:
        try:
            with open(opts.lscpu_file, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise LaunchError(f"--lscpu-file {opts.lscpu_file}: {exc.strerror}") from None
        try:
            return platform_info.from_lscpu_text(text, source=opts.lscpu_file)
        except ValueError as exc:
            raise LaunchError(f"--lscpu-file {opts.lscpu_file}: {exc}") from None
    return platform_info.detect()


def _check_recorded_platform_is_here(opts: argparse.Namespace, platform: Platform) -> None:
    """A recorded machine binds to its own CPU numbers: running (not --dry-run) needs them here."""
    if not hasattr(os, "sched_getaffinity"):
        return
    here = set(os.sched_getaffinity(0))
    wanted = set(platform.usable) if opts.cpuset is None else set(platform.usable) & set(opts.cpuset)
    missing = wanted - here
    if missing:
        raise LaunchError(f"--lscpu-file {opts.lscpu_file} describes CPUs "
                          f"{format_cpu_list(missing)} that this process cannot use (it may use "
                          f"{format_cpu_list(here)}): add --dry-run to only print the command for "
                          "that machine, or drop --lscpu-file to detect this one")


def _is_open_mpi(mpirun: str) -> bool:
    try:
        done = subprocess.run([mpirun, "--version"], capture_output=True, text=True, timeout=30,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return "Open MPI" in done.stdout + done.stderr or "OpenRTE" in done.stdout + done.stderr


def main(argv: Optional[Sequence[str]] = None, environ: Optional[Mapping[str, str]] = None,
         platform: Optional[Platform] = None, tools: Optional[Tools] = None,
         gpu_host: Optional[gpus.GpuHost] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    environ = os.environ if environ is None else environ
    try:
        opts = parse_args(argv, environ)
        platform = platform or load_platform(opts)
        if opts.show_platform:
            print(json.dumps(platform.to_dict(), indent=2))
            return 0
        if opts.lscpu_file and not opts.dry_run:
            _check_recorded_platform_is_here(opts, platform)
        tools_used = tools or Tools.detect(environ)
        plan = build_plan(opts, environ, platform, tools_used, gpu_host)
    except LaunchError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    for warning in plan.warnings:
        print(f"{PROG}: warning: {mask_credentials(warning)}", file=sys.stderr)
    print(plan.to_json() if opts.json else plan.shell_text())
    sys.stdout.flush()
    sys.stderr.flush()
    if opts.dry_run:
        return 0
    if plan.instances:
        return run_instances(plan, environ, opts.instance_results_dir, opts.aggregate_file)
    child_env = plan.child_environ(environ)
    for folder in plan.make_dirs:
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            print(f"{PROG}: error: --output-filename {folder}: cannot create it: "
                  f"{exc.strerror}", file=sys.stderr)
            return 2
    if plan.argv[0] == tools_used.mpirun and not _is_open_mpi(plan.argv[0]):
        print(f"{PROG}: error: {plan.argv[0]} is not Open MPI's mpirun (the options used are "
              "Open MPI's): install openmpi-bin and put its mpirun first on PATH",
              file=sys.stderr)
        return 2
    program = opts.command[0]
    if not opts.hosts and os.sep not in program and not shutil.which(
            program, path=child_env.get("PATH", os.defpath)):
        print(f"{PROG}: error: {program!r} not found on PATH: give its full path or install it",
              file=sys.stderr)
        return 127
    try:
        os.execvpe(plan.argv[0], plan.argv, child_env)
    except OSError as exc:
        print(f"{PROG}: error: cannot run {plan.argv[0]!r}: {exc.strerror}", file=sys.stderr)
        return 127
    return 0  # not reached: exec replaced this process


if __name__ == "__main__":
    sys.exit(main())
