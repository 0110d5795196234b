"""Kubernetes: a Kubeflow MPIJob (``kubeflow.org/v2beta1``) manifest for a package.

``render_manifest(plan, options) -> str`` turns a package's plan into the YAML that
``kubectl apply -f`` takes: optional PersistentVolumeClaim examples, then one MPIJob whose
Launcher runs the package's quickstart (or, for a package without quickstarts such as
tensorflow-gaudi-bert-training, one of its ``run_*.py`` entry scripts) through the project's
launcher (``models/common/launch.py``), with the hosts MPI Operator v2 writes to the
launcher's hostfile, and whose Workers run the image's sshd (the ``sshd`` Dockerfile part).

The manifest is built as plain data and dumped with ``yaml.safe_dump`` (no text templating):
every value is quoted by the YAML library, and ``packager.k8s_check`` validates the result
against the MPIJob CRD and the Kubernetes core schemas.

Facts it owns: how many ranks a worker pod runs per hardware (one per socket on Xeon, one per
card on Gaudi), the default per-rank cpu/memory, the device resource name, and how the
launcher command reads the operator's hostfile.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import yaml

from packager.conventions import PRECISION_VAR, is_path_var
from packager.errors import UsageError
from packager.plan import PackagePlan
from packager.spec import ENV_PATTERN, IMAGE_REF_PATTERN, Spec

MPIJOB_API_VERSION = "kubeflow.org/v2beta1"
MPIJOB_KIND = "MPIJob"
# MPI Operator v2 mounts the hostfile here in the launcher (OpenMPI lines: "HOST slots=N") and
# points OMPI_MCA_orte_default_hostfile at it.
HOSTFILE = "/etc/mpi/hostfile"
ROOT_SSH_DIR = "/root/.ssh"  # the operator's default sshAuthMountPath
DEFAULT_SSHD_PORT = "3022"  # the sshd part's SSHD_PORT default (the launcher's DOCKER_SSHD_PORT)
DEFAULT_WORKERS = 2
DEFAULT_NAMESPACE = "default"
DEFAULT_MOUNT = "/data"
DEFAULT_UID = 1000  # the sshd part's SSHD_UID default
# runPolicy: keep finished pods for their logs, retry a failed launcher twice, delete the job a
# day after it ends.
CLEAN_POD_POLICY = "Running"
BACKOFF_LIMIT = 2
TTL_SECONDS_AFTER_FINISHED = 86400
LAUNCHER_RESOURCES = {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "2Gi"}}
LABEL_NAME = "app.kubernetes.io/name"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # RFC 1123 label, at most 63
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
ENTRY_SCRIPT = re.compile(r"^run_[A-Za-z0-9_]+\.py$")  # Habana's entry points at the package root
DEFAULT_ENTRY_SCRIPT = "run_pretraining.py"


@dataclass(frozen=True)
class Target:
    """What one worker pod is on a kind of hardware: ``slots`` ranks (sockets or cards), the
    default cpu and memory per rank, the device resource per rank, container capabilities and
    the launcher options the ranks are started with."""

    slots: int
    cpu_per_rank: int
    memory_gi_per_rank: int
    device: str | None = None
    capabilities: tuple[str, ...] = ()
    launcher_options: tuple[str, ...] = ()


TARGETS: dict[str, Target] = {
    # two-socket Xeon servers, one rank per socket as on bare metal (launch.py binds each rank
    # to its socket's cores and memory)
    "xeon": Target(slots=2, cpu_per_rank=16, memory_gi_per_rank=64),
    "xeon-spr": Target(slots=2, cpu_per_rank=16, memory_gi_per_rank=64),
    # eight Gaudi cards per server, one rank per card; Habana's mpirun binding
    # (--bind-to core --map-by socket:PE=N) and output options; SYS_NICE as in Habana's docker run
    "gaudi": Target(slots=8, cpu_per_rank=10, memory_gi_per_rank=48, device="habana.ai/gaudi",
                    capabilities=("SYS_NICE",),
                    launcher_options=("--map-by-socket-pe", "auto", "--tag-output", "--merge-stderr-to-stdout")),
}

# The launcher pod's script: the operator's hostfile as MULTI_HLS_IPS (host:slots,...), the
# first host as MASTER_ADDR (PyTorch's rendezvous; rank 0 runs there), then the command.
LAUNCHER_SCRIPT = """\
set -euo pipefail
hostfile="${{OMPI_MCA_orte_default_hostfile:-{hostfile}}}"
if [ ! -s "${{hostfile}}" ]; then
    echo "error: ${{hostfile}} is missing or empty: run this as the launcher of an MPIJob (MPI Operator v2)" >&2
    exit 2
fi
MULTI_HLS_IPS="$(awk '$1 !~ /^#/ && NF {{ s = ""; for (i = 2; i <= NF; i++) if ($i ~ /^slots=/) s = ":" substr($i, 7); printf "%s%s%s", sep, $1, s; sep = "," }}' "${{hostfile}}")"
export MULTI_HLS_IPS
first="${{MULTI_HLS_IPS%%,*}}"
export MASTER_ADDR="${{MASTER_ADDR:-${{first%%:*}}}}"
echo "hosts from ${{hostfile}}: ${{MULTI_HLS_IPS}} (MASTER_ADDR=${{MASTER_ADDR}})"
exec {command} "$@"
"""


@dataclass(frozen=True)
class JobOptions:
    """What ``modelpkg k8s`` takes besides the package (parsed, not yet checked)."""

    workers: int = DEFAULT_WORKERS
    slots_per_worker: int | None = None
    script: str | None = None
    image: str | None = None
    namespace: str = DEFAULT_NAMESPACE
    pvcs: tuple[str, ...] = ()  # NAME=MOUNT
    env: tuple[str, ...] = ()  # K=V
    script_args: tuple[str, ...] = ()
    cpu: str | None = None
    memory: str | None = None
    user: str | None = None  # NAME or NAME:UID: the image's non-root user (SSHD_USER)
    pvc_example: str | None = None  # a size: also emit a PersistentVolumeClaim per --pvc


@dataclass(frozen=True)
class Entry:
    """The program the launcher runs: a quickstart (with its variables) or an entry script."""

    path: str  # relative to the package root (the image's workdir)
    quickstart: bool
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()


# -- input checks (each a one-line UsageError) ------------------------------------------------

def _check_label(value: str, what: str) -> str:
    if len(value) > 63 or not DNS_LABEL.match(value):
        raise UsageError(f"{what} {value!r} is not a DNS label (lower-case letters, digits and '-', "
                         "starting and ending with a letter or digit, at most 63 characters)")
    return value


def _positive(value: int | None, option: str, what: str) -> None:
    if value is not None and value < 1:
        raise UsageError(f"{option} {value}: must be a positive number of {what}")


def _quantity(value: str | None, option: str, example: str) -> str | None:
    if value is not None and not QUANTITY.match(value):
        raise UsageError(f"{option} {value!r} is not a Kubernetes quantity (e.g. {example})")
    return value


def parse_pvcs(items: tuple[str, ...]) -> list[tuple[str, str]]:
    """``NAME=MOUNT`` pairs: a claim name (DNS label) and an absolute mount path."""
    pvcs: list[tuple[str, str]] = []
    for item in items:
        name, sep, mount = item.partition("=")
        if not sep or not mount.strip():
            raise UsageError(f"--pvc {item}: the mount path is missing; give NAME=MOUNT, e.g. --pvc bert-data=/data")
        _check_label(name, f"--pvc {item}: claim name")
        path = PurePosixPath(mount)
        if not mount.startswith("/") or ".." in path.parts or str(path) == "/" or not re.match(r"^[A-Za-z0-9._/@+-]+$", mount):
            raise UsageError(f"--pvc {item}: the mount path {mount!r} must be an absolute folder other than / "
                             "(letters, digits and . _ - / only, no ..)")
        mount = str(path)
        for other, other_mount in pvcs:
            if other == name:
                raise UsageError(f"--pvc {item}: the claim {name} is given twice")
            if mount == other_mount or mount.startswith(other_mount + "/") or other_mount.startswith(mount + "/"):
                raise UsageError(f"--pvc {item}: {mount} overlaps the mount of {other} ({other_mount})")
        pvcs.append((name, mount))
    return pvcs


def parse_env(items: tuple[str, ...]) -> dict[str, str]:
    """``K=V`` pairs; K a valid environment variable name."""
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--env {item}: give NAME=VALUE, e.g. --env BATCH_SIZE=32")
        if not re.match(ENV_PATTERN, key):
            raise UsageError(f"--env {item}: {key!r} is not a valid environment variable name "
                             "(letters, digits and _, not starting with a digit)")
        if key in env:
            raise UsageError(f"--env {key} is given twice")
        env[key] = value
    return env


def _parse_user(value: str | None) -> tuple[str, int] | None:
    if value is None:
        return None
    name, sep, uid = value.partition(":")
    if not USER_NAME.match(name) or name == "root" or (sep and not uid.isdigit()) or (sep and int(uid) == 0):
        raise UsageError(f"--user {value!r}: give the image's non-root user as NAME or NAME:UID "
                         f"(NAME as built with --build-arg SSHD_USER=NAME, UID its SSHD_UID, default {DEFAULT_UID})")
    return name, int(uid) if sep else DEFAULT_UID


def resolve_entry(plan: PackagePlan, script: str | None) -> Entry:
    """The quickstart (default: the wrapper's default script, else the first) or, for a package
    without quickstarts, the ``run_*.py`` entry script at its root (default run_pretraining.py)."""
    spec = plan.package.spec
    if spec.quickstart:
        names = [q.basename for q in spec.quickstart]
        default = spec.wrapper.run.default_script if spec.wrapper.run is not None else names[0]
        chosen = PurePosixPath(script).name if script else default
        if chosen not in names:
            raise UsageError(f"--script {script}: {spec.name} has no quickstart {chosen!r}; "
                             f"its quickstarts: {', '.join(names)}")
        quickstart = spec.quickstart[names.index(chosen)]
        return Entry(f"quickstart/{chosen}", True, quickstart.env.required, quickstart.env.optional)
    entries = sorted(f.path for f in plan.model.files if ENTRY_SCRIPT.match(f.path))
    if not entries:
        raise UsageError(f"{spec.name} has no quickstart and no run_*.py entry script at its root: "
                         "nothing for an MPIJob to run")
    chosen = PurePosixPath(script).name if script else (
        DEFAULT_ENTRY_SCRIPT if DEFAULT_ENTRY_SCRIPT in entries else entries[0])
    if chosen not in entries:
        raise UsageError(f"--script {script}: {spec.name} has no entry script {chosen!r}; "
                         f"its entry scripts: {', '.join(entries)}")
    return Entry(chosen, False)


def _default_path(var: str, mount: str) -> str:
    """Where a path variable points by default: under the first claim's mount
    (DATASET_DIR -> /data/dataset, CONFIG_FILE -> /data/config_file)."""
    stem = var[:-len("_DIR")] if var.endswith("_DIR") else var
    return f"{mount}/{stem.lower()}"


def _on_a_volume(path: str, pvcs: list[tuple[str, str]]) -> bool:
    return any(path == mount or path.startswith(mount + "/") for _, mount in pvcs)


def _shm_size(spec: Spec) -> str | None:
    """The wrapper's ``shm_size`` (docker --shm-size, e.g. 8G) as a quantity (8Gi)."""
    size = spec.wrapper.run.shm_size if spec.wrapper.run is not None else None
    if not size:
        return None
    suffix = {"b": "", "k": "Ki", "m": "Mi", "g": "Gi"}
    unit = size[-1].lower()
    return f"{size[:-1]}{suffix[unit]}" if unit in suffix else size


# -- the manifest -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Job:
    """The checked inputs of one manifest, and the derived values the manifest shows."""

    name: str
    namespace: str
    image: str
    workdir: str
    target: Target
    workers: int
    slots: int
    entry: Entry
    env: dict[str, str]  # the launcher container's variables, in order
    pvcs: list[tuple[str, str]]
    sshd_port: str
    user: tuple[str, int] | None
    cpu: str
    memory: str
    script_args: tuple[str, ...]
    shm_size: str | None
    pvc_example: str | None

    @property
    def ranks(self) -> int:
        return self.workers * self.slots

    @property
    def ssh_dir(self) -> str:
        return ROOT_SSH_DIR if self.user is None else f"/home/{self.user[0]}/.ssh"


def make_job(plan: PackagePlan, options: JobOptions) -> Job:
    """Check ``options`` against the package; every problem is a one-line ``UsageError``."""
    spec = plan.package.spec
    if spec.image is None:
        raise UsageError(f"{spec.name} has no image section, so no image for the MPIJob's pods")
    _positive(options.workers, "--workers", "worker pods")
    _positive(options.slots_per_worker, "--slots-per-worker", "ranks per worker")
    name = _check_label(spec.name, "the package name (the MPIJob's name)")
    if len(name) > 63 - len("-launcher"):
        raise UsageError(f"the package name {name!r} is too long for the MPIJob's pod names (at most 54 characters)")
    namespace = _check_label(options.namespace, "--namespace")
    if options.image is not None and not re.match(IMAGE_REF_PATTERN, options.image):
        raise UsageError(f"--image {options.image!r} is not an image reference (e.g. registry:5000/team/img:tag)")
    target = TARGETS[spec.hardware]
    slots = options.slots_per_worker or target.slots
    pvcs = parse_pvcs(options.pvcs) or [(f"{name}-data", DEFAULT_MOUNT)]
    given = parse_env(options.env)
    user = _parse_user(options.user)
    cpu = _quantity(options.cpu, "--cpu", "32 or 500m") or str(target.cpu_per_rank * slots)
    memory = _quantity(options.memory, "--memory", "128Gi") or f"{target.memory_gi_per_rank * slots}Gi"
    pvc_example = _quantity(options.pvc_example, "--pvc-example", "100Gi")
    entry = resolve_entry(plan, options.script)

    env: dict[str, str] = {}
    for var in (*entry.required, *(v for v in entry.optional if v in given)):
        if var in given:
            env[var] = given[var]
        elif is_path_var(var):
            env[var] = _default_path(var, pvcs[0][1])
        elif var == PRECISION_VAR:
            env[var] = spec.precisions[0]
        else:
            raise UsageError(f"{entry.path} needs {var} ({spec.describe_env(var)}): give --env {var}=...")
        if is_path_var(var):
            if not env[var].startswith("/"):
                raise UsageError(f"--env {var}={env[var]}: give an absolute path inside the pods")
            if not _on_a_volume(env[var], pvcs):
                mounts = ", ".join(f"{n} at {m}" for n, m in pvcs)
                raise UsageError(f"{var}={env[var]} is on no volume ({mounts}): add --pvc NAME=MOUNT for it "
                                 "or point it under a mount")
    for reserved in ("MPI_NUM_PROCESSES", "MULTI_HLS_IPS", "MPI_HOSTNAMES"):
        if reserved in given:
            raise UsageError(f"--env {reserved} is set by the manifest from --workers and --slots-per-worker "
                             "and the operator's hostfile; drop it")
    env.update((k, v) for k, v in given.items() if k not in env)
    sshd_port = spec.image.build_args.get("SSHD_PORT", DEFAULT_SSHD_PORT)
    env["MPI_NUM_PROCESSES"] = str(options.workers * slots)
    env["DOCKER_SSHD_PORT"] = sshd_port
    if not entry.quickstart:  # the quickstarts set it themselves
        env.setdefault("PYTHONPATH", spec.image.workdir)
    return Job(name=name, namespace=namespace, image=options.image or spec.image.reference,
               workdir=spec.image.workdir, target=target, workers=options.workers, slots=slots,
               entry=entry, env=env, pvcs=pvcs, sshd_port=sshd_port, user=user, cpu=cpu,
               memory=memory, script_args=tuple(options.script_args), shm_size=_shm_size(spec),
               pvc_example=pvc_example)


def launcher_command(job: Job) -> list[str]:
    """The launcher container's command: bash running ``LAUNCHER_SCRIPT``, the script's
    arguments after it (``bash -c SCRIPT NAME ARGS...``: no shell quoting of user values)."""
    if job.entry.quickstart:
        command = f"./{job.entry.path}"
    else:
        python = '"${PYTHON:-python3}"'
        options = " ".join(job.target.launcher_options)
        horovod = " --horovod" if job.ranks > 1 else ""
        command = (f"{python} models/common/launch.py{' ' + options if options else ''} -- "
                   f"{python} \"$PWD/{job.entry.path}\"{horovod}")
    script = LAUNCHER_SCRIPT.format(hostfile=HOSTFILE, command=command)
    return ["/bin/bash", "-c", script, "launcher", *job.script_args]


def _labels(job: Job, component: str) -> dict[str, str]:
    return {LABEL_NAME: job.name, LABEL_COMPONENT: component, LABEL_MANAGED_BY: "modelpkg"}


def _volumes(job: Job) -> tuple[list[dict], list[dict]]:
    volumes: list[dict[str, Any]] = [{"name": claim, "persistentVolumeClaim": {"claimName": claim}}
                                     for claim, _ in job.pvcs]
    mounts: list[dict[str, Any]] = [{"name": claim, "mountPath": mount} for claim, mount in job.pvcs]
    if job.shm_size:
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": job.shm_size}})
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    return volumes, mounts


def _pod_security(job: Job) -> dict[str, Any]:
    if job.user is None:
        return {}
    uid = job.user[1]
    # fsGroup belongs to the pod's securityContext (a container securityContext has no fsGroup)
    return {"securityContext": {"runAsUser": uid, "runAsGroup": uid, "runAsNonRoot": True, "fsGroup": uid}}


def _container_security(job: Job) -> dict[str, Any]:
    if not job.target.capabilities:
        return {}
    return {"securityContext": {"capabilities": {"add": list(job.target.capabilities)}}}


def _worker_resources(job: Job) -> dict[str, Any]:
    # cpu as a request only: the launcher binds each rank to its socket's cores (numactl); a cpu
    # limit would throttle those threads through the cgroup quota. Memory and devices are limits.
    requests: dict[str, Any] = {"cpu": job.cpu, "memory": job.memory}
    limits: dict[str, Any] = {"memory": job.memory}
    if job.target.device:
        requests[job.target.device] = job.slots
        limits[job.target.device] = job.slots
    return {"requests": requests, "limits": limits}


def mpijob(job: Job) -> dict[str, Any]:
    """The MPIJob as plain data."""
    volumes, mounts = _volumes(job)
    worker_command = ["/usr/sbin/sshd", "-De"]
    if job.user is not None:
        worker_command += ["-f", f"/home/{job.user[0]}/.sshd_config"]
    launcher = {
        "replicas": 1,
        "restartPolicy": "OnFailure",
        "template": {
            "metadata": {"labels": _labels(job, "launcher")},
            "spec": {
                **_pod_security(job),
                # the launcher computes each rank's CPU binding from the machine it runs on:
                # prefer a node that runs this job's workers
                "affinity": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                    "weight": 100,
                    "podAffinityTerm": {
                        "labelSelector": {"matchLabels": {LABEL_NAME: job.name, LABEL_COMPONENT: "worker"}},
                        "topologyKey": "kubernetes.io/hostname",
                    },
                }]}},
                "containers": [{
                    "name": "launcher",
                    "image": job.image,
                    "workingDir": job.workdir,
                    "command": launcher_command(job),
                    "env": [{"name": k, "value": v} for k, v in job.env.items()],
                    "resources": copy.deepcopy(LAUNCHER_RESOURCES),
                    "volumeMounts": mounts,
                }],
                "volumes": volumes,
            },
        },
    }
    worker = {
        "replicas": job.workers,
        "template": {
            "metadata": {"labels": _labels(job, "worker")},
            "spec": {
                **_pod_security(job),
                "containers": [{
                    "name": "worker",
                    "image": job.image,
                    "workingDir": job.workdir,
                    "command": worker_command,
                    "ports": [{"name": "ssh", "containerPort": int(job.sshd_port), "protocol": "TCP"}],
                    "readinessProbe": {"tcpSocket": {"port": int(job.sshd_port)},
                                       "initialDelaySeconds": 2, "periodSeconds": 5},
                    "resources": _worker_resources(job),
                    **_container_security(job),
                    "volumeMounts": mounts,
                }],
                "volumes": volumes,
            },
        },
    }
    return {
        "apiVersion": MPIJOB_API_VERSION,
        "kind": MPIJOB_KIND,
        "metadata": {"name": job.name, "namespace": job.namespace, "labels": _labels(job, "mpijob")},
        "spec": {
            "slotsPerWorker": job.slots,
            "mpiImplementation": "OpenMPI",
            "sshAuthMountPath": job.ssh_dir,
            "launcherCreationPolicy": "WaitForWorkersReady",
            "runPolicy": {"cleanPodPolicy": CLEAN_POD_POLICY, "backoffLimit": BACKOFF_LIMIT,
                          "ttlSecondsAfterFinished": TTL_SECONDS_AFTER_FINISHED},
            "mpiReplicaSpecs": {"Launcher": launcher, "Worker": worker},
        },
    }


def pvc_examples(job: Job) -> list[dict[str, Any]]:
    """One PersistentVolumeClaim per claim the job mounts (ReadWriteMany: the launcher and every
    worker mount it, on several nodes)."""
    if job.pvc_example is None:
        return []
    return [{
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": claim, "namespace": job.namespace, "labels": {LABEL_NAME: job.name, LABEL_MANAGED_BY: "modelpkg"}},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": job.pvc_example}}},
    } for claim, _ in job.pvcs]


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the launcher script) as YAML block literals; no anchors/aliases
    (the launcher and the workers mount the same volumes, written out in each)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


_Dumper.add_representer(
    str,
    lambda dumper, value: dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None),
)


def header(job: Job, package: str) -> str:
    what = job.entry.path + (" " + " ".join(job.script_args) if job.script_args else "")
    lines = [
        f"# modelpkg k8s {package}: MPIJob {MPIJOB_API_VERSION} (MPI Operator v2)",
        f"# {job.workers} worker pod(s) x {job.slots} rank(s) = {job.ranks} MPI rank(s); launcher runs {what}",
        f"# image {job.image}: built with sshd (modelpkg image build {package}); kubectl apply -f FILE",
    ]
    return "\n".join(lines) + "\n"


def documents(job: Job) -> list[dict[str, Any]]:
    return [*pvc_examples(job), mpijob(job)]


def dump_documents(docs: list[dict[str, Any]]) -> str:
    return "---\n".join(yaml.dump(d, Dumper=_Dumper, sort_keys=False, width=100) for d in docs)


def render_manifest(plan: PackagePlan, options: JobOptions) -> str:
    """The YAML of ``modelpkg k8s NAME``: a comment header, PVC examples, the MPIJob."""
    job = make_job(plan, options)
    return header(job, plan.package.name) + dump_documents(documents(job))
