"""Each command through typer's CliRunner: exit codes and what the user sees."""

from __future__ import annotations

import json
import re
import tarfile

import pytest
from typer.testing import CliRunner

from packager.cli import app
from tests.packager.packager_fixtures import NAME, base_spec

runner = CliRunner()


def run(repo, *args):
    return runner.invoke(app, ["--root", str(repo.root), *args])


@pytest.mark.parametrize("command", [[], ["list"], ["show"], ["validate"], ["build"], ["dockerfile"], ["docs"]])
def test_help_everywhere(repo, command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_list_json(repo):
    other = base_spec("other-bf16-inference")
    other.update(precision=["fp32", "bf16"], mode="inference", framework="pytorch", hardware="xeon-spr")
    repo.write_spec(other)
    result = run(repo, "list", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == [NAME, "other-bf16-inference"]
    assert rows[0] | {} == rows[0]
    assert {k: rows[1][k] for k in ("name", "framework", "precision", "mode", "hardware")} == {
        "name": "other-bf16-inference", "framework": "pytorch", "precision": ["fp32", "bf16"],
        "mode": "inference", "hardware": "xeon-spr"}
    assert rows[0]["image"] == "intel/demo:demo-fp32"


def test_list_table(repo):
    result = run(repo, "list")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[1].split() == [NAME, "tensorflow", "fp32", "training", "xeon", "intel/demo:demo-fp32"]


def test_root_from_environment(repo):
    result = runner.invoke(app, ["list", "--json"], env={"MODELPKG_ROOT": str(repo.root)})
    assert result.exit_code == 0 and json.loads(result.stdout)[0]["name"] == NAME


def test_bad_root(tmp_path):
    result = runner.invoke(app, ["--root", str(tmp_path), "list"])
    assert result.exit_code == 2
    assert f"--root={tmp_path} is not a modelpkg repository" in result.output


def test_show(repo):
    result = run(repo, "show", NAME)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"dockerfile: dockerfiles/{NAME}.Dockerfile" in out  # resolved default
    assert f"workdir: /workspace/{NAME}" in out
    assert re.search(r"^0755 +\d+  quickstart/run_demo.sh$", out, flags=re.M)
    assert "models/demo/train.py" in out and "__pycache__" not in out
    assert "image: intel/demo:demo-fp32" in out


def test_validate_all_and_named(repo):
    result = run(repo, "validate")
    assert result.exit_code == 0, result.output
    assert f"ok  {NAME}" in result.stdout
    assert run(repo, "validate", NAME).exit_code == 0
    result = run(repo, "validate", "nope")
    assert result.exit_code == 2 and "no package named 'nope'" in result.output


def test_build(repo, tmp_path):
    out = tmp_path / "out"
    result = run(repo, "build", NAME, "--output-dir", str(out))
    assert result.exit_code == 0, result.output
    archive = out / f"{NAME}.tar.gz"
    assert f"package  {NAME}" in result.stdout  # summary first
    assert f"wrote {archive}" in result.stdout
    with tarfile.open(archive) as tar:
        assert f"{NAME}/MANIFEST.sha256" in tar.getnames()


def test_build_dry_run_writes_nothing(repo, tmp_path):
    out = tmp_path / "out"
    result = run(repo, "build", "--all", "--dry-run", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert f"would write {out / (NAME + '.tar.gz')}" in result.stdout
    assert f"    {NAME}/quickstart/run_demo.sh" in result.stdout
    assert not out.exists()


def test_build_wrapper(repo, tmp_path):
    data = base_spec()
    data["wrapper"] = {"enabled": True, "run": {"default_script": "run_demo.sh"}}
    repo.write_spec(data)
    result = run(repo, "build", NAME, "-o", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "wrapper_packages" / f"{NAME}.tar.gz").is_file()


def test_build_needs_names(repo):
    result = run(repo, "build")
    assert result.exit_code == 2 and "name at least one package, or use --all" in result.output
    result = run(repo, "build", NAME, "--all")
    assert result.exit_code == 2 and "not both" in result.output


def test_build_invalid_spec_exits_2_and_writes_nothing(repo, tmp_path):
    (repo.root / "quickstart/demo/run_demo.sh").chmod(0o644)
    result = run(repo, "build", NAME, "-o", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "is not executable" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command, rel", [
    ("dockerfile", f"dockerfiles/{NAME}.Dockerfile"),
    ("docs", f"docs/packages/{NAME}.md"),
])
def test_generated_file_write_and_check(repo, command, rel):
    path = repo.root / rel
    result = run(repo, command, NAME, "--check")
    assert result.exit_code == 1 and "missing" in result.stdout  # not generated yet
    assert not path.exists()

    result = run(repo, command, "--all")
    assert result.exit_code == 0, result.output
    assert f"written    {rel}" in result.stdout and path.is_file()
    assert run(repo, command, NAME).stdout.startswith(f"unchanged  {rel}")
    assert run(repo, command, "--all", "--check").exit_code == 0

    # the spec changes: the committed file is stale
    data = base_spec()
    data["title"] = "Demo FP32 training, renamed"
    repo.write_spec(data)
    before = path.read_text()
    result = run(repo, command, NAME, "--check")
    assert result.exit_code == 1
    assert f"--- {rel} (committed)" in result.stdout and f"+++ {rel} (rendered)" in result.stdout
    assert "+" in result.stdout and "Demo FP32 training, renamed" in result.stdout
    assert f"regenerate and commit: modelpkg {command} {NAME}" in result.output
    assert path.read_text() == before  # --check writes nothing


def test_dockerfile_for_spec_without_image(repo):
    data = base_spec()
    del data["image"]
    repo.write_spec(data)
    result = run(repo, "validate")
    assert result.exit_code == 2
    assert "docs.parts[6]: templates/docs/docker.md.j2" in result.output and "needs an image section" in result.output
    data["docs"]["parts"].remove("docker")
    repo.write_spec(data)
    result = run(repo, "dockerfile", NAME)
    assert result.exit_code == 2 and "no image section" in result.output
    assert run(repo, "dockerfile", "--all").exit_code == 0  # skipped


def test_unexpected_error_is_reported_without_traceback(repo, monkeypatch):
    import packager.commands.validate as validate

    def boom(*args, **kwargs):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(validate, "load_packages", boom)
    result = run(repo, "validate")
    assert result.exit_code == 70
    assert "internal error: RuntimeError: kaboom" in result.output and "Traceback" not in result.output


def test_console_script_entry_point(repo):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", "from packager.cli import main; main()", "--root", str(repo.root), "validate", "nope"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "error: no package named 'nope'" in result.stderr and "Traceback" not in result.stderr


def test_build_into_an_unwritable_output_dir_says_so(repo, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run(repo, "build", NAME, "-o", str(blocker / "out"))
    assert result.exit_code == 1, result.output
    assert f"error: cannot write the package for {NAME} into {blocker / 'out'}: Not a directory" in result.output
    assert "choose a writable --output-dir" in result.output and "Traceback" not in result.output

    out = tmp_path / "readonly"
    out.mkdir()

    def denied(*args, **kwargs):  # what a read-only folder does (root ignores chmod, so simulate it)
        raise PermissionError(13, "Permission denied", str(out))

    monkeypatch.setattr("packager.archive.tempfile.mkstemp", denied)
    result = run(repo, "build", NAME, "-o", str(out))
    assert result.exit_code == 1, result.output
    assert f"into {out}: Permission denied: {out}; choose a writable --output-dir" in result.output
    assert list(out.iterdir()) == []


def test_ctrl_c_mid_build_leaves_no_partial_archive(repo, tmp_path, monkeypatch):
    import tarfile as tarfile_module

    real_addfile = tarfile_module.TarFile.addfile
    calls = []

    def interrupted(self, tarinfo, fileobj=None):
        calls.append(tarinfo.name)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real_addfile(self, tarinfo, fileobj)

    monkeypatch.setattr(tarfile_module.TarFile, "addfile", interrupted)
    out = tmp_path / "out"
    result = run(repo, "build", NAME, "-o", str(out))
    assert result.exit_code == 130, result.output
    assert f"interrupted: no partial archive was left in {out}" in result.output
    assert len(calls) == 4
    assert list(out.iterdir()) == []  # neither the archive nor its temp file


def test_output_piped_into_head_stops_quietly(repo):
    import subprocess
    import sys

    # `show` writes more than a pipe buffer (64 KiB) only with many files: make some
    demo = repo.root / "models" / "demo"
    for index in range(2000):
        (demo / f"module_{index:04d}.py").write_text("x = 1\n")
    script = (f"{sys.executable} -c 'from packager.cli import main; main()' --root {repo.root} show {NAME} "
              "| head -n 1")
    result = subprocess.run(["bash", "-c", f"set -o pipefail; {script}; echo status=$?"],
                            capture_output=True, text=True, check=False)
    assert result.stdout.startswith(f"# specs/{NAME}.yaml, resolved\n"), result.stdout
    assert "status=141" in result.stdout
    assert result.stderr == "", result.stderr  # no "error: Broken pipe", no traceback


def test_list_shows_the_good_specs_and_names_a_broken_one(repo):
    other = base_spec("other-bf16-inference")
    other["mode"] = "infer"
    repo.write_spec(other, name="other-bf16-inference")
    result = run(repo, "list")
    assert result.exit_code == 2
    assert NAME in result.stdout and "other-bf16-inference" not in result.stdout
    assert ("specs/other-bf16-inference.yaml: mode: 'infer' is not allowed; use one of 'training' or 'inference'"
            in result.stderr)
    result = run(repo, "list", "--json")
    assert result.exit_code == 2
    assert [row["name"] for row in json.loads(result.stdout)] == [NAME]
