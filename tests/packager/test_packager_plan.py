"""Plan once, then do: one build plans once, and `--dry-run` lists exactly what `build` writes."""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

import packager.plan as plan_module
from packager.cli import app
from packager.commands import build as build_command
from packager.package import load_package
from packager.plan import make_plan
from tests.packager.packager_fixtures import NAME, base_spec

runner = CliRunner()


def _with_wrapper(repo) -> None:
    data = base_spec()
    data["wrapper"] = {"enabled": True, "run": {"default_script": "run_demo.sh"}}
    repo.write_spec(data)


def _counting(monkeypatch, module, name: str, counts: dict[str, int]) -> None:
    real = getattr(module, name)

    def counted(*args, **kwargs):
        counts[name] = counts.get(name, 0) + 1
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)


def test_one_build_plans_once(repo, tmp_path, monkeypatch):
    """A build of a package with a wrapper walks the files, renders the README, the Dockerfile
    and the wrapper scripts once each (it used to be 5, 5, 2 and 1 times)."""
    _with_wrapper(repo)
    counts: dict[str, int] = {}
    for name in ("plan_files", "render_readme", "render_dockerfile", "render_wrapper_scripts"):
        _counting(monkeypatch, plan_module, name, counts)
    _counting(monkeypatch, build_command, "make_plan", counts)
    result = runner.invoke(app, ["--root", str(repo.root), "build", NAME, "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert counts == {"make_plan": 1, "plan_files": 1, "render_readme": 1, "render_dockerfile": 1,
                      "render_wrapper_scripts": 1}
    assert (tmp_path / "out" / "wrapper_packages" / f"{NAME}.tar.gz").is_file()


def _listed(output: str) -> dict[str, list[str]]:
    """archive path -> the member paths `build --dry-run` lists under it."""
    listed: dict[str, list[str]] = {}
    current = None
    for line in output.splitlines():
        match = re.match(r"^  would write (.+):$", line)
        if match:
            current = listed.setdefault(match.group(1), [])
        elif line.startswith("    ") and current is not None:
            current.append(line.strip())
    return listed


def test_dry_run_lists_exactly_what_build_writes(repo, tmp_path):
    _with_wrapper(repo)
    out = tmp_path / "out"
    dry = runner.invoke(app, ["--root", str(repo.root), "build", NAME, "-o", str(out), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert not out.exists()  # nothing written
    listed = _listed(dry.output)
    assert sorted(listed) == [str(out / f"{NAME}.tar.gz"), str(out / "wrapper_packages" / f"{NAME}.tar.gz")]
    result = runner.invoke(app, ["--root", str(repo.root), "build", NAME, "-o", str(out)])
    assert result.exit_code == 0, result.output
    for archive, members in listed.items():
        with tarfile.open(archive) as tar:
            written = [m.name for m in tar.getmembers() if m.isfile()]
        assert sorted(written) == sorted(members), archive
    assert f"{NAME}/licenses/third_party/tf.txt" in listed[str(out / "wrapper_packages" / f"{NAME}.tar.gz")]


def test_show_and_validate_use_the_same_plan(repo):
    plan = make_plan(load_package(NAME, repo.root))
    shown = runner.invoke(app, ["--root", str(repo.root), "show", NAME])
    assert shown.exit_code == 0, shown.output
    for item in plan.model.files:
        assert f"{item.mode:04o}  {item.size:>9}  {item.path}" in shown.output
    valid = runner.invoke(app, ["--root", str(repo.root), "validate", NAME])
    assert valid.output.strip() == f"ok  {NAME}  (specs/{NAME}.yaml, {len(plan.model.files)} files)"


def test_package_info_records_what_the_package_is(repo, tmp_path):
    data = base_spec()
    data["precision"] = ["fp32", "bfloat16"]
    repo.write_spec(data)
    plan = make_plan(load_package(NAME, repo.root), tmp_path)
    (info,) = [f for f in plan.model.files if f.path == "package_info.json"]
    assert json.loads(info.data) == {
        "name": NAME, "title": "Demo FP32 training", "framework": "tensorflow", "precisions": ["fp32", "bf16"],
        "mode": "training", "hardware": "xeon", "image": "intel/demo:demo-fp32",
    }
    manifest = next(f for f in plan.model.files if f.path == "MANIFEST.sha256").data.decode()
    assert "  package_info.json\n" in manifest


def test_package_info_drives_what_the_shipped_precision_check_accepts(repo, tmp_path):
    """The spec's precisions reach the package: models/common/precisions.py (what the quickstarts
    call) accepts them and refuses the framework's others, naming the allowed ones."""
    import subprocess
    import sys

    from tests.packager.packager_fixtures import REPO

    repo.write("models/common/precisions.py", (REPO / "models/common/precisions.py").read_text())
    out = tmp_path / "out"
    assert runner.invoke(app, ["--root", str(repo.root), "build", NAME, "-o", str(out)]).exit_code == 0
    with tarfile.open(out / f"{NAME}.tar.gz") as tar:
        tar.extractall(tmp_path / "x", filter="data")
    pkg = tmp_path / "x" / NAME

    def resolve(value: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(pkg / "models/common/precisions.py"), "resolve", value,
                               "--package-dir", str(pkg), "--framework", "tensorflow"],
                              capture_output=True, text=True)

    assert resolve("fp32").stdout == "fp32\n"
    refused = resolve("bfloat16")  # TensorFlow runs bf16, but this package is fp32 only
    assert refused.returncode == 2
    assert refused.stderr == "error: PRECISION=bfloat16 is not supported here; use one of: fp32\n"


def test_env_help_for_a_variable_no_quickstart_reads(repo):
    data = base_spec()
    data["env_help"] = {"DATASET_DIR": "the data", "DATA_DIR": "a typo"}
    repo.write_spec(data)
    result = runner.invoke(app, ["--root", str(repo.root), "validate", NAME])
    assert result.exit_code == 2
    assert (f"specs/{NAME}.yaml: env_help.DATA_DIR: describes DATA_DIR, which no quickstart reads "
            "(quickstart[*].env); drop it or add it to a quickstart's env") in result.output


def test_part_roles_come_from_the_parts_themselves(repo):
    """A new dependency part needs no packager change: its first line says what it is."""
    repo.write("templates/dockerfile/cuda.Dockerfile.j2", "{# part: dependency #}\n# cuda: the CUDA runtime\nRUN true\n")
    repo.write("templates/dockerfile/banner.Dockerfile.j2", "# banner: no role\nLABEL x=y\n")
    data = base_spec()
    data["image"]["parts"] = ["base", "python", "tensorflow", "model_package", "banner", "cuda"]
    repo.write_spec(data)
    result = runner.invoke(app, ["--root", str(repo.root), "validate", NAME])
    assert result.exit_code == 2
    problems = [line.strip() for line in result.output.splitlines()[1:]]
    assert problems == [f"specs/{NAME}.yaml: image.parts[5]: 'cuda' installs dependencies but comes after "
                        "'model_package'; move it before, so that a code change does not rebuild the dependency layers"]
    data["image"]["parts"] = ["base", "python", "tensorflow", "cuda", "model_package", "banner"]
    repo.write_spec(data)
    text = make_plan(load_package(NAME, repo.root)).dockerfile
    assert "# cuda: the CUDA runtime\nRUN true\n" in text and "part:" not in text


@pytest.mark.parametrize("output_dir", ["", " "])
def test_empty_output_dir_is_refused(repo, output_dir, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    result = runner.invoke(app, ["--root", str(repo.root), "build", NAME, "-o", output_dir])
    assert result.exit_code == 2 and "--output-dir is empty" in result.output
    assert list(work.iterdir()) == []
