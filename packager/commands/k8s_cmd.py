"""``modelpkg k8s``: render a package's Kubeflow MPIJob manifest, or check a manifest file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from packager.archive import atomic_write_text
from packager.commands.common import echo, err_console, load_selected
from packager.errors import CheckFailed, UsageError
from packager.k8s import DEFAULT_NAMESPACE, DEFAULT_WORKERS, JobOptions, render_manifest
from packager.k8s_check import check_file
from packager.plan import make_plan


def k8s_command(
    ctx: typer.Context,
    name: Annotated[Optional[str], typer.Argument(help="Package name (modelpkg list shows them).", show_default=False)] = None,
    script_args: Annotated[Optional[list[str]], typer.Argument(help="After --: arguments for the quickstart or entry script.", show_default=False)] = None,
    workers: Annotated[int, typer.Option("--workers", help="Worker pods (servers).")] = DEFAULT_WORKERS,
    slots_per_worker: Annotated[Optional[int], typer.Option("--slots-per-worker", help="MPI ranks per worker: default one per socket (Xeon: 2) or per card (Gaudi: 8).", show_default=False)] = None,
    script: Annotated[Optional[str], typer.Option("--script", help="Quickstart the launcher runs (default: the wrapper's default script, else the first); for a package without quickstarts, its run_*.py entry script (default run_pretraining.py).", show_default=False)] = None,
    image: Annotated[Optional[str], typer.Option("--image", help="Image reference the pods run (default: the spec's image; push it to a registry the cluster pulls from).", show_default=False)] = None,
    namespace: Annotated[str, typer.Option("--namespace", help="Namespace of the MPIJob.")] = DEFAULT_NAMESPACE,
    pvc: Annotated[Optional[list[str]], typer.Option("--pvc", help="NAME=MOUNT: mount the PersistentVolumeClaim NAME at MOUNT in every pod (repeatable; default <name>-data=/data). The quickstart's *_DIR/*_FILE variables default to folders under the first mount.", show_default=False)] = None,
    env: Annotated[Optional[list[str]], typer.Option("--env", help="K=V for the launcher (repeatable): the quickstart's variables (DATASET_DIR=/data/squad, BATCH_SIZE=24) and others (TF_*, HABANA_*, ... reach the ranks).", show_default=False)] = None,
    cpu: Annotated[Optional[str], typer.Option("--cpu", help="CPU request per worker (default 16 per socket on Xeon, 10 per card on Gaudi).", show_default=False)] = None,
    memory: Annotated[Optional[str], typer.Option("--memory", help="Memory request and limit per worker (default 64Gi per socket on Xeon, 48Gi per card on Gaudi).", show_default=False)] = None,
    user: Annotated[Optional[str], typer.Option("--user", help="NAME[:UID]: run the pods as the image's non-root user (image built with --build-arg SSHD_USER=NAME; UID default 1000); ssh keys then go to /home/NAME/.ssh.", show_default=False)] = None,
    pvc_example: Annotated[Optional[str], typer.Option("--pvc-example", metavar="SIZE", help="Also emit a PersistentVolumeClaim (ReadWriteMany, SIZE such as 100Gi) for each claim.", show_default=False)] = None,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Write the manifest to FILE instead of stdout.", show_default=False)] = None,
    check: Annotated[Optional[Path], typer.Option("--check", metavar="FILE", help="Validate the manifest FILE instead: MPIJobs against --crd, everything against the Kubernetes core schemas; exit 1 listing the problems.", show_default=False)] = None,
    crd: Annotated[Optional[Path], typer.Option("--crd", help="With --check: the MPIJob CRD (kubectl get crd mpijobs.kubeflow.org -o yaml).", show_default=False)] = None,
) -> None:
    """Render a Kubeflow MPIJob (kubeflow.org/v2beta1, MPI Operator v2) that runs the package on
    several servers, or check a manifest (--check FILE [--crd CRD.yaml])."""
    if check is not None:
        if name is not None or script_args:
            raise UsageError("give a package name to render, or --check FILE, not both (modelpkg k8s --help)")
        count, problems = check_file(check, crd)
        if problems:
            for line in problems:
                err_console.print(f"{check}: {line}", markup=False, soft_wrap=True)
            raise CheckFailed(f"{check}: {len(problems)} problem(s) in {count} document(s)")
        echo(f"ok  {check}: {count} document(s) valid" + (f" (MPIJob CRD {crd})" if crd else ""))
        return
    if crd is not None:
        raise UsageError("--crd goes with --check FILE")
    if name is None:
        raise UsageError("name a package (modelpkg list shows them), or use --check FILE (modelpkg k8s --help)")
    package = load_selected(ctx, [name], False, command="k8s")[0]
    options = JobOptions(workers=workers, slots_per_worker=slots_per_worker, script=script, image=image,
                         namespace=namespace, pvcs=tuple(pvc or ()), env=tuple(env or ()),
                         script_args=tuple(script_args or ()), cpu=cpu, memory=memory, user=user,
                         pvc_example=pvc_example)
    text = render_manifest(make_plan(package), options)
    if output is None:
        echo(text.rstrip("\n"))
    else:
        atomic_write_text(output, text)
        err_console.print(f"wrote {output} (kubectl apply -f {output})", markup=False)
