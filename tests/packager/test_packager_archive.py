"""Reproducible archives: byte-identical rebuilds, data filter, manifest, atomic writes, wrapper."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from packager import archive
from packager.archive import build_package, write_archive
from packager.errors import BuildError, UsageError
from packager.plan import PlannedFile, glob_regex
from packager.package import load_package
from tests.packager.packager_fixtures import NAME, base_spec


def build(repo, out: Path) -> Path:
    return build_package(load_package(NAME, repo.root), out)[0]


def test_layout_modes_and_owners(repo, tmp_path):
    path = build(repo, tmp_path / "out")
    assert path == tmp_path / "out" / f"{NAME}.tar.gz"
    with tarfile.open(path) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == [
        NAME,
        f"{NAME}/MANIFEST.sha256",
        f"{NAME}/README.md",
        f"{NAME}/licenses",
        f"{NAME}/licenses/LICENSE",
        f"{NAME}/licenses/third_party",
        f"{NAME}/licenses/third_party/tf.txt",
        f"{NAME}/models",
        f"{NAME}/models/common",
        f"{NAME}/models/common/launch.py",
        f"{NAME}/models/demo",
        f"{NAME}/models/demo/data",
        f"{NAME}/models/demo/data/vocab.txt",
        f"{NAME}/models/demo/run.py",
        f"{NAME}/models/demo/train.py",
        f"{NAME}/package_info.json",
        f"{NAME}/quickstart",
        f"{NAME}/quickstart/lib.sh",
        f"{NAME}/quickstart/run_demo.sh",
    ]  # no __pycache__, no excluded *.tmp
    modes = {m.name: m.mode for m in members}
    assert modes[f"{NAME}/quickstart/run_demo.sh"] == 0o755
    assert modes[f"{NAME}/models/demo/run.py"] == 0o755  # was 0775
    assert modes[f"{NAME}/quickstart/lib.sh"] == 0o644
    assert modes[f"{NAME}/models"] == 0o755
    for m in members:
        assert (m.uid, m.gid, m.uname, m.gname, m.mtime) == (0, 0, "", "", archive.DEFAULT_MTIME)


def test_gzip_header_has_no_name_or_time(repo, tmp_path):
    data = build(repo, tmp_path).read_bytes()
    flags, mtime = data[3], int.from_bytes(data[4:8], "little")
    assert flags & 0x08 == 0  # FNAME
    assert mtime == 0


def test_byte_identical_rebuilds_across_mtimes_and_umask(repo, tmp_path):
    first = build(repo, tmp_path / "a").read_bytes()
    for path in (repo.root / "models").rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000))
    (repo.root / "models/demo/train.py").chmod(0o600)  # group/other bits do not matter
    second = build(repo, tmp_path / "b").read_bytes()
    assert first == second


def test_source_date_epoch(repo, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    path = build(repo, tmp_path)
    with tarfile.open(path) as tar:
        assert {m.mtime for m in tar.getmembers()} == {1700000000}
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(UsageError, match="SOURCE_DATE_EPOCH='yesterday' is not an integer"):
        build(repo, tmp_path / "x")


def test_content_change_changes_archive(repo, tmp_path):
    first = build(repo, tmp_path / "a").read_bytes()
    repo.write("models/demo/train.py", "print('changed')\n")
    assert build(repo, tmp_path / "b").read_bytes() != first


def test_extracts_under_data_filter_and_manifest_verifies(repo, tmp_path):
    path = build(repo, tmp_path / "out")
    dest = tmp_path / "x"
    with tarfile.open(path) as tar:
        tar.extractall(dest, filter="data")
    top = dest / NAME
    assert (top / "quickstart/run_demo.sh").stat().st_mode & 0o111
    assert (top / "quickstart/lib.sh").read_text() == (repo.root / "quickstart/common/lib.sh").read_text()
    lines = (top / "MANIFEST.sha256").read_text().splitlines()
    listed = {}
    for line in lines:
        digest, rel = line.split("  ", 1)
        listed[rel] = digest
    on_disk = sorted(p.relative_to(top).as_posix() for p in top.rglob("*") if p.is_file() and p.name != "MANIFEST.sha256")
    assert sorted(listed) == on_disk
    for rel, digest in listed.items():
        assert hashlib.sha256((top / rel).read_bytes()).hexdigest() == digest
    # the manifest is in `sha256sum -c` format, run inside the package folder
    result = subprocess.run(["sha256sum", "--check", "--quiet", "MANIFEST.sha256"], cwd=top, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    (top / "models/demo/train.py").write_text("tampered\n")
    result = subprocess.run(["sha256sum", "--check", "--quiet", "MANIFEST.sha256"], cwd=top, capture_output=True, text=True)
    assert result.returncode != 0 and "models/demo/train.py" in result.stdout


def test_readme_inside_matches_docs_render(repo, tmp_path):
    from packager.docs import render_readme

    spec = load_package(NAME, repo.root)
    with tarfile.open(build_package(spec, tmp_path)[0]) as tar:
        inside = tar.extractfile(f"{NAME}/README.md").read().decode()
    assert inside == render_readme(spec)
    assert "# Demo FP32 training" in inside


def test_no_readme_when_docs_readme_false(repo, tmp_path):
    data = base_spec()
    data["docs"]["readme"] = False
    repo.write_spec(data)
    with tarfile.open(build(repo, tmp_path)) as tar:
        assert f"{NAME}/README.md" not in tar.getnames()


def test_interrupted_write_leaves_no_partial_archive(repo, tmp_path, monkeypatch):
    out = tmp_path / "out"
    spec = load_package(NAME, repo.root)
    target = out / f"{NAME}.tar.gz"

    calls = {"n": 0}
    real_addfile = tarfile.TarFile.addfile

    def failing_addfile(self, tarinfo, fileobj=None):
        calls["n"] += 1
        if calls["n"] == 6:
            raise OSError(28, "No space left on device")
        return real_addfile(self, tarinfo, fileobj)

    monkeypatch.setattr(tarfile.TarFile, "addfile", failing_addfile)
    with pytest.raises(BuildError, match="No space left"):
        build_package(spec, out)
    assert not target.exists()
    assert list(out.iterdir()) == []  # no temp file left behind

    # a previous good archive stays untouched
    monkeypatch.setattr(tarfile.TarFile, "addfile", real_addfile)
    good = build_package(spec, out)[0].read_bytes()
    calls["n"] = 0
    monkeypatch.setattr(tarfile.TarFile, "addfile", failing_addfile)
    with pytest.raises(BuildError):
        build_package(spec, out)
    assert target.read_bytes() == good
    assert [p.name for p in out.iterdir()] == [target.name]


def test_build_package_translates_os_errors(repo, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(BuildError, match="cannot write the package"):
        build_package(load_package(NAME, repo.root), blocker / "out")


def test_write_archive_long_and_unicode_names(tmp_path):
    long = "/".join(["d" * 60] * 4) + "/file.txt"
    files = [PlannedFile(long, 0o644, "t", data=b"x"), PlannedFile("caf\u00e9.txt", 0o644, "t", data=b"y")]
    a = write_archive(tmp_path / "a.tar.gz", "top", files, mtime=0).read_bytes()
    b = write_archive(tmp_path / "b.tar.gz", "top", list(reversed(files)), mtime=0).read_bytes()
    assert a == b
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(a))) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    assert (tmp_path / "x/top" / long).read_text() == "x"


@pytest.mark.parametrize("pattern, path, hit", [
    ("**/__pycache__/**", "__pycache__/x.pyc", True),
    ("**/__pycache__/**", "a/b/__pycache__/x.pyc", True),
    ("**/*.pyc", "x.pyc", True),
    ("*.pyc", "a/x.pyc", False),
    ("data/*", "data/x/y", False),
    ("data/**", "data/x/y", True),
    ("**/*.tmp", "a.tmpl", False),
])
def test_glob(pattern, path, hit):
    assert bool(glob_regex(pattern).match(path)) is hit


def wrapper_spec(repo):
    data = base_spec()
    data["wrapper"] = {"enabled": True, "run": {"default_script": "run_demo.sh"}}
    repo.write_spec(data)
    return load_package(NAME, repo.root)


def test_wrapper_package_has_the_container_package_tree(repo, tmp_path):
    spec = wrapper_spec(repo)
    outputs = build_package(spec, tmp_path / "out")
    assert outputs == [tmp_path / "out" / f"{NAME}.tar.gz", tmp_path / "out/wrapper_packages" / f"{NAME}.tar.gz"]
    with tarfile.open(outputs[1]) as tar:
        names = tar.getnames()
        modes = {m.name: m.mode for m in tar.getmembers()}
        inner = tar.extractfile(f"{NAME}/model_packages/{NAME}.tar.gz").read()
        dockerfile = tar.extractfile(f"{NAME}/{NAME}.Dockerfile").read().decode()
        run_sh = tar.extractfile(f"{NAME}/run.sh").read().decode()
    assert names == [
        NAME,
        f"{NAME}/README.md",
        f"{NAME}/build.sh",
        f"{NAME}/demo-fp32-training.Dockerfile",
        f"{NAME}/licenses",
        f"{NAME}/licenses/LICENSE",
        f"{NAME}/licenses/third_party",
        f"{NAME}/licenses/third_party/tf.txt",
        f"{NAME}/model_packages",
        f"{NAME}/model_packages/{NAME}.tar.gz",
        f"{NAME}/run.sh",
    ]
    assert modes[f"{NAME}/build.sh"] == modes[f"{NAME}/run.sh"] == 0o755
    assert inner == outputs[0].read_bytes()
    assert f"ADD model_packages/{NAME}.tar.gz /workspace/" in dockerfile
    assert 'SCRIPT="${SCRIPT:-run_demo.sh}"' in run_sh
    assert '--volume "${DATASET_DIR}:${DATASET_DIR}"' in run_sh
    # reproducible too
    again = build_package(spec, tmp_path / "again")[1]
    assert again.read_bytes() == outputs[1].read_bytes()
