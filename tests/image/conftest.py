"""Fixtures for the image tests: a fake `buildah` on PATH that records its argv, and a tiny
repository (one spec, the real Dockerfile parts) to assemble build contexts from."""

from __future__ import annotations

import json
import os
import shutil
import stat
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

FAKE_BUILDAH = r"""#!/usr/bin/env python3
# A stand-in for buildah: appends its argv (JSON) to $FAKE_BUILDAH_LOG and acts out a few
# subcommands. FAKE_BUILDAH_FAIL_AT=N makes `bud` fail at STEP N; FAKE_BUILDAH_NO_BASE=1 makes
# it fail at FROM, as when the base image is not in storage. `run -- /bin/sh -c ...` (the SBOM
# inventory) prints a small canned one, or with FAKE_BUILDAH_REAL_INVENTORY=1 runs it here; `run -- cat` shows the SBOM the last
# SBOM build COPYed; `inspect --format {{.FromImageDigest}}` prints $FAKE_BUILDAH_DIGEST.
import json, os, subprocess, sys
args = sys.argv[1:]
STATE = os.environ["FAKE_BUILDAH_LOG"]
with open(os.environ["FAKE_BUILDAH_LOG"], "a") as log:
    log.write(json.dumps(args) + "\n")
while args and args[0].startswith("--storage-driver"):
    args = args[2:] if args[0] == "--storage-driver" else args[1:]
cmd = args[0] if args else ""
if cmd == "bud" and os.environ.get("FAKE_BUILDAH_NO_BASE"):
    base = next((a.split("=", 1)[1] for a in args if a.startswith("BASE_IMAGE=")), "base")
    print(f"STEP 1/3: FROM {base}")
    print(f'Error: creating build container: short-name "{base}" did not resolve to an alias', flush=True)
    sys.exit(125)
elif cmd == "bud":
    fail_at = int(os.environ.get("FAKE_BUILDAH_FAIL_AT", "0"))
    for step in range(1, 4):
        print(f"STEP {step}/3: RUN echo step {step}")
        for i in range(40):
            print(f"output {step}.{i}")
        if step == fail_at:
            print("E: Unable to locate package no-such-package", flush=True)
            print("error building at STEP \"RUN echo\": exit status 100", file=sys.stderr)
            sys.exit(1)
    print("COMMIT")
    # the SBOM build: keep what it COPYs, so `run -- cat` can show it
    context = args[-1]
    if os.path.isfile(os.path.join(context, "sbom.cdx.json")):
        with open(os.path.join(context, "sbom.cdx.json")) as src, open(STATE + ".sbom", "w") as dst:
            dst.write(src.read())
elif cmd == "inspect":
    if os.environ.get("FAKE_BUILDAH_NO_IMAGE"):
        print("image not known", file=sys.stderr)
        sys.exit(125)
    fmt = args[args.index("--format") + 1] if "--format" in args else None
    if fmt == "{{.FromImageDigest}}":
        print(os.environ.get("FAKE_BUILDAH_DIGEST", "sha256:" + "ab" * 32))
    elif fmt is None:  # the layers of the image: two, as buildah's inspect JSON has them
        print(json.dumps({"Manifest": json.dumps({"layers": [{"size": 120000000}, {"size": 1500000000}]}),
                          "History": [{"created_by": "/bin/sh"}, {"created_by": "ENV X=1", "empty_layer": True},
                                      {"created_by": "/bin/sh -c pip install tensorflow-cpu"}]}))
    else:
        print("0123456789abcdef0123456789abcdef")
elif cmd == "push":  # push [--quiet] IMAGE docker-archive:PATH:REF: a small archive of that format
    import io, tarfile
    transport, path, ref = args[-1].split(":", 2)
    members = {"manifest.json": json.dumps([{"RepoTags": [ref], "Layers": ["l/layer.tar"]}]).encode(),
               "l/layer.tar": b"x" * 4096} if transport == "docker-archive" else \
              {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}', "index.json": b"{}"}
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
elif cmd == "pull":  # pull --quiet TRANSPORT:PATH: accepts only an uncompressed archive
    transport, path = args[-1].split(":", 1)
    with open(path, "rb") as handle:
        if handle.read(2) == b"\x1f\x8b":
            print("Error: loading tar component manifest.json: archive/tar: invalid tar header", file=sys.stderr)
            sys.exit(125)
    import tarfile
    names = tarfile.open(path).getnames()
    if (transport == "docker-archive") != ("manifest.json" in names):
        print(f"Error: {transport}: not this format", file=sys.stderr)
        sys.exit(125)
    print("feedface" * 8)
elif cmd == "images":
    print("localhost/loaded:latest")
elif cmd == "from":
    print("fake-working-container")
elif cmd == "run":
    command = args[args.index("--") + 1:]
    if command[:2] == ["/bin/sh", "-c"]:  # the SBOM inventory
        if os.environ.get("FAKE_BUILDAH_REAL_INVENTORY"):  # of this machine
            sys.exit(subprocess.run(command).returncode)
        print(json.dumps({"python": [{"name": "tensorflow-cpu", "version": "2.21.0", "license": "Apache-2.0"}],
                          "debian": [{"name": "bash", "version": "5.2.15-2+b7", "arch": "amd64"}]}))
        sys.exit(0)
    if command[:1] == ["cat"]:
        if not os.path.isfile(STATE + ".sbom"):
            print(f"cat: {command[1]}: No such file or directory", file=sys.stderr)
            sys.exit(1)
        print(open(STATE + ".sbom").read(), end="")
        sys.exit(0)
    sys.exit(int(os.environ.get("FAKE_BUILDAH_RUN_EXIT", "0")))
elif cmd == "rm":
    print("fake-working-container")
"""


class FakeBuildah:
    def __init__(self, path: Path, log: Path):
        self.path = path
        self.log = log

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def subcommands(self) -> list[str]:
        out = []
        for argv in self.calls():
            rest = list(argv)
            if rest[:1] == ["--storage-driver"]:
                rest = rest[2:]
            out.append(rest[0])
        return out


@pytest.fixture
def fake_buildah(tmp_path, monkeypatch) -> FakeBuildah:
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    exe = bindir / "buildah"
    exe.write_text(FAKE_BUILDAH)
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    log = tmp_path / "buildah-calls.jsonl"
    monkeypatch.setenv("FAKE_BUILDAH_LOG", str(log))
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return FakeBuildah(exe, log)


@pytest.fixture
def clean_proxy_env(monkeypatch):
    for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
                 "ftp_proxy", "all_proxy", "FTP_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


TINY_SPEC = """\
name: tiny-pkg
title: Tiny package
framework: tensorflow
precision: fp32
mode: training
hardware: xeon
files:
  - source: models/tiny
    destination: models/tiny
quickstart:
  - script: quickstart/tiny/run_demo.sh
    description: A tiny demo.
    env:
      required: [DATASET_DIR, OUTPUT_DIR]
      optional: [MPI_NUM_PROCESSES]
image:
  name: local/tiny
  tag: tiny-latest
  base_image: debian:bookworm-slim
  parts: [base, python, tensorflow, model_package, workdir]
  build_args: {TF_PACKAGE: "tensorflow-cpu==2.21.0"}
"""


@pytest.fixture
def tiny_repo(tmp_path, monkeypatch) -> Path:
    """A repository with one spec (tiny-pkg), the real Dockerfile parts and quickstart lib."""
    root = tmp_path / "repo"
    (root / "specs").mkdir(parents=True)
    (root / "specs" / "tiny-pkg.yaml").write_text(TINY_SPEC)
    shutil.copytree(REPO / "templates", root / "templates")
    (root / "models" / "tiny").mkdir(parents=True)
    (root / "models" / "tiny" / "train.py").write_text("print('training')\n")
    qs = root / "quickstart" / "tiny"
    qs.mkdir(parents=True)
    (qs / "run_demo.sh").write_text(textwrap.dedent("""\
        #!/usr/bin/env bash
        set -euo pipefail
        echo demo
    """))
    (qs / "run_demo.sh").chmod(0o755)
    common = root / "quickstart" / "common"
    common.mkdir(parents=True)
    shutil.copy(REPO / "quickstart" / "common" / "lib.sh", common / "lib.sh")
    (root / "LICENSE").write_text("Apache-2.0\n")
    if (REPO / "licenses").is_dir():
        shutil.copytree(REPO / "licenses", root / "licenses")
    monkeypatch.setenv("MODELPKG_ROOT", str(root))
    return root
