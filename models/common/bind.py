"""Per-rank CPU/memory binding, run by ``mpirun`` in front of the training command.

``launch.py`` starts ``mpirun --bind-to none ... python bind.py --slot CPUS:MEMS ... -- CMD`` with
one ``--slot`` per local rank. Each rank reads its local rank from the MPI environment
(``dist_env``), takes slot ``local_rank`` and replaces itself with
``numactl --physcpubind=CPUS --membind=MEMS CMD`` (``--localalloc`` when MEMS is ``local``).
Without numactl it sets the CPU affinity itself and runs CMD unbound to memory.

Binding here, instead of through mpirun's ``--map-by``/``--bind-to``, keeps the exact CPU lists
visible in the printed command and works the same for Open MPI, MPICH and Intel MPI.

:func:`pick_slot` and :func:`rank_binding` are the one place that decides what a rank runs;
``launch.py`` calls them too, to print each rank's command before starting mpirun.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from typing import Dict, List, Optional, Sequence, Tuple, Union

if __package__ in (None, ""):  # run as a file: make `models.common` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
        __file__)))))

from models.common import dist_env  # noqa: E402
from models.common.platform_info import parse_cpu_list  # noqa: E402


def parse_slot(text: str) -> Tuple[str, str]:
    cpus, sep, mems = text.partition(":")
    if not sep or not cpus or not mems:
        raise argparse.ArgumentTypeError(
            f"slot {text!r} must be CPUS:MEMS, e.g. 0-27:0 or 0-3,8-11:local")
    parse_cpu_list(cpus)
    if mems != "local":
        parse_cpu_list(mems)
    return cpus, mems


def rank_argv(slot: Tuple[str, str], command: Sequence[str],
              numactl: Optional[str]) -> List[str]:
    cpus, mems = slot
    if not numactl:
        return list(command)
    mem_opt = "--localalloc" if mems == "local" else f"--membind={mems}"
    return [numactl, f"--physcpubind={cpus}", mem_opt, *command]


def pick_slot(slots: Sequence[Tuple[str, str]], local_rank: int) -> Tuple[str, str]:
    """The slot of ``local_rank``: the i-th, shared round-robin when there are fewer slots."""
    return slots[local_rank % len(slots)]


def rank_binding(slot: Tuple[str, str], command: Sequence[str], numactl: Optional[str],
                 can_set_affinity: bool = hasattr(os, "sched_setaffinity"),
                 ) -> Dict[str, Union[str, List[str]]]:
    """What a rank bound to ``slot`` does: ``{"cpus", "memory", "bind", "command"}``.

    ``bind`` is ``numactl`` (``command`` is the numactl command line that is exec'd),
    ``sched_setaffinity`` (this process binds itself to ``cpus``, then execs ``command``;
    memory unbound) or ``none`` (no way to bind here: ``command`` runs unbound)."""
    cpus, mems = slot
    if numactl:
        how = "numactl"
    elif can_set_affinity:
        how, mems = "sched_setaffinity", "unbound"
    else:
        how, mems = "none", "unbound"
    return {"cpus": cpus, "memory": mems, "bind": how,
            "command": rank_argv(slot, command, numactl)}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="bind.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--slot", action="append", type=parse_slot, required=True,
                        help="CPUS:MEMS for local rank i (the i-th --slot)")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given after --")
    env = dist_env.from_environ()
    slot = pick_slot(args.slot, env.local_rank)
    if env.local_rank >= len(args.slot):
        print(f"bind.py: warning: local rank {env.local_rank} but only {len(args.slot)} slots; "
              f"sharing slot {env.local_rank % len(args.slot)}", file=sys.stderr)
    plan = rank_binding(slot, command, shutil.which("numactl"))
    if plan["bind"] == "sched_setaffinity":
        try:
            os.sched_setaffinity(0, parse_cpu_list(slot[0]))
        except OSError as exc:
            print(f"bind.py: warning: could not bind to CPUs {slot[0]}: {exc}", file=sys.stderr)
    return exec_command(list(plan["command"]), "bind.py")


def exec_command(command: List[str], prog: str) -> int:
    """Replace this process with ``command`` (the per-rank wrappers' last step); when it
    cannot start, one ``PROG: error:`` line and 127, as a shell says."""
    sys.stdout.flush()
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"{prog}: error: cannot run {command[0]!r}: {exc.strerror}", file=sys.stderr)
        return 127
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
