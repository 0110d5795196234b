"""Hostile and careless specs, files and environments: one clear line and a non-zero exit each,
nothing injected into generated files, nothing from outside the repository packed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from packager.archive import remove_stale_temp_files
from packager.cli import app
from packager.image.base import printable_argv
from tests.packager.packager_fixtures import NAME, REPO, base_spec

runner = CliRunner()


def validate(repo, *names: str):
    return runner.invoke(app, ["--root", str(repo.root), "validate", *names])


def problem_lines(result) -> list[str]:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output
    return [line.strip() for line in result.output.splitlines()[1:]]


@pytest.mark.parametrize("key", ["framework", "hardware", "mode"])
def test_a_list_where_one_value_belongs_is_a_problem_not_a_silent_skip(repo, key, tmp_path):
    data = base_spec()
    data[key] = [data[key]]
    repo.write_spec(data)
    lines = problem_lines(validate(repo))
    assert len(lines) == 1 and lines[0].startswith(f"specs/{NAME}.yaml: {key}: must be one value, not a list")
    listed = runner.invoke(app, ["--root", str(repo.root), "list"])
    assert listed.exit_code == 2 and f"{key}: must be one value" in listed.output
    built = runner.invoke(app, ["--root", str(repo.root), "build", NAME, "-o", str(tmp_path / "out")])
    assert built.exit_code == 2 and not (tmp_path / "out").exists()


def test_a_spec_that_is_not_utf8_is_its_own_problem_only(repo):
    other = base_spec("demo-bf16-training")
    repo.write_spec(other)
    (repo.root / "specs" / f"{NAME}.yaml").write_bytes(b"name: demo\ntitle: caf\xe9\n")
    lines = problem_lines(validate(repo))
    assert lines == [f"specs/{NAME}.yaml: is not UTF-8 text (byte 21: b'\\xe9'); save it as UTF-8"]
    assert validate(repo, "demo-bf16-training").exit_code == 0  # the other spec still works


@pytest.mark.parametrize("text, message", [
    ("name: x\ndeep: " + "[" * 400 + "]" * 400 + "\n", "is nested more than 32 levels deep"),
    ("name: x\n? [a, b]\n: 1\n", "a mapping key must be a plain name, not a list or mapping"),
    ("name: x\n1: 2\n", "has a key 1 that is not a string"),
])
def test_shapes_no_spec_has(repo, text, message):
    repo.write_spec_text(NAME, text)
    lines = problem_lines(validate(repo))
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith(f"specs/{NAME}.yaml: ")


def test_env_descriptions_that_are_not_a_mapping(repo):
    data = base_spec()
    data["docs"]["vars"]["env_descriptions"] = ["DATASET_DIR"]
    repo.write_spec(data)
    assert problem_lines(validate(repo)) == [
        f"specs/{NAME}.yaml: docs.vars: env_descriptions moved to the spec's top-level env_help "
        "(one description per variable)"]


def _with(data: dict, path: tuple, value) -> dict:
    """``data`` with the value at key ``path`` replaced."""
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


def _run_modelpkg(repo, *args: str, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from packager.entry import main; main()",
                           "--root", str(repo.root), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


def test_a_yaml_alias_bomb_stops_at_once_with_one_line(repo):
    lines = ["name: x", 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    repo.write_spec_text(NAME, "\n".join(lines) + "\n")
    assert (repo.root / "specs" / f"{NAME}.yaml").stat().st_size < 4096
    proc = _run_modelpkg(repo, "validate", timeout=60)  # was 22 s and 2.4 GB
    assert proc.returncode == 2
    assert proc.stderr == (f"error: 1 problem in spec:\n  specs/{NAME}.yaml: has more than 100000 values once YAML "
                           "aliases are expanded; write the spec without alias chains\n")


def test_huge_globs_and_huge_files(repo):
    data = base_spec()
    data["files"][1]["exclude"] = ["*" * 1_000_000]
    repo.write_spec(data)
    lines = problem_lines(validate(repo))
    assert lines == [f"specs/{NAME}.yaml: files[1].exclude[0]: String should have at most 256 characters"]
    repo.write_spec_text(NAME, "name: x\n" + "#" * (1 << 20) + "\n")
    assert problem_lines(validate(repo)) == [f"specs/{NAME}.yaml: is larger than 1024 KiB; a spec is a page of YAML"]


@pytest.mark.parametrize("path, value", [
    (("title",), "Demo\nRUN echo INJECTED"),
    (("image", "base_image"), "debian:bookworm\nRUN echo INJECTED"),
    (("image", "workdir"), "/workspace/x\nRUN echo INJECTED"),
    (("image", "build_args", "TF_PACKAGE"), "tensorflow-cpu\nRUN echo INJECTED"),
    (("files", 0, "destination"), "models/com\x00mon"),
    (("files", 0, "destination"), "models/com\nmon"),
    (("quickstart", 0, "env", "required", 0), "DATASET_DIR\rX"),
])
def test_control_characters_never_reach_a_generated_file(repo, path, value):
    repo.write_spec(_with(base_spec(), path, value))
    lines = problem_lines(validate(repo))
    key = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in path).lstrip(".")
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"specs/{NAME}.yaml: {key}: holds the control character "), lines
    assert lines[0].endswith("; write it on one line without control characters")


@pytest.mark.parametrize("path, value, message", [
    (("image", "base_image"), "x$(touch /tmp/PWNED)", "is not allowed; use an image reference"),
    (("image", "workdir"), "/workspace/$(id)", "is not allowed; use an absolute path in the image"),
    (("image", "build_args", "TF_PACKAGE"), 'tf" && echo x "', "may not hold"),
    (("files", 0, "destination"), "models/$(id)", "has characters a package path may not have"),
    (("quickstart", 0, "script"), "quickstart/demo/run`id`.sh", "has characters a package path may not have"),
    (("files", 0, "destination"), "a/" + "b" * 300, "is too long"),
    (("precision",), [], "must not be empty"),
])
def test_values_that_would_run_in_a_shell_or_break_a_file_are_refused(repo, path, value, message):
    repo.write_spec(_with(base_spec(), path, value))
    lines = problem_lines(validate(repo))
    assert len(lines) == 1 and message in lines[0], lines
    assert not Path("/tmp/PWNED").exists()


def test_generated_scripts_quote_what_they_take_from_the_spec(repo, tmp_path):
    data = base_spec()
    data["title"] = 'Demo "quoted" training'
    data["wrapper"] = {"enabled": True, "run": {"default_script": "run_demo.sh"}}
    repo.write_spec(data)
    repo.write("templates/wrapper/build.sh.j2", (REPO / "templates/wrapper/build.sh.j2").read_text())
    repo.write("templates/wrapper/run.sh.j2", (REPO / "templates/wrapper/run.sh.j2").read_text())
    repo.write("templates/wrapper/print_command.sh.j2", (REPO / "templates/wrapper/print_command.sh.j2").read_text())
    from packager.package import load_package
    from packager.plan import make_plan

    plan = make_plan(load_package(NAME, repo.root), tmp_path)
    assert 'org.opencontainers.image.description="Demo \\"quoted\\" training"' in plan.dockerfile
    files = {f.path: f.data.decode() for f in plan.wrapper.files if f.data is not None}
    assert "DEFAULT_BASE_IMAGE=debian:bookworm-slim\n" in files["build.sh"]
    assert "DEFAULT_SCRIPT=run_demo.sh\n" in files["run.sh"]


def test_a_package_name_must_be_a_name(repo, tmp_path):
    outside = tmp_path / "outside.yaml"
    outside.write_text(yaml.safe_dump(base_spec("outside")))
    result = runner.invoke(app, ["--root", str(repo.root), "build", "../../../" + str(outside.with_suffix("")),
                                 "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and "no package named" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", ["99999999999999999999", "253402300800"])
def test_source_date_epoch_that_tar_cannot_store(repo, tmp_path, monkeypatch, value):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", value)
    result = runner.invoke(app, ["--root", str(repo.root), "build", NAME, "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert f"SOURCE_DATE_EPOCH={value} is after the year 9999, which tar cannot store" in result.output
    assert not (tmp_path / "out" / f"{NAME}.tar.gz").exists()


def test_symlinks_out_of_the_repository_are_never_packed(repo, tmp_path):
    (repo.root / "licenses/evil").mkdir(parents=True)
    os.symlink("/etc/passwd", repo.root / "licenses/evil/passwd.txt")
    data = base_spec()
    data["licenses"] = ["licenses/evil"]
    repo.write_spec(data)
    lines = problem_lines(validate(repo))
    assert lines == [f"specs/{NAME}.yaml: licenses[0]: licenses/evil/passwd.txt is a symlink that leaves the "
                     "repository (to /etc/passwd); replace it with a real file, or exclude it"]


def test_symlink_loops_fifos_and_devices_are_named(repo):
    os.symlink("loop_b", repo.root / "models/demo/loop_a")
    os.symlink("loop_a", repo.root / "models/demo/loop_b")
    os.mkfifo(repo.root / "models/demo/pipe")
    os.mkfifo(repo.root / "licenses/third_party/fifo.txt")
    data = base_spec()
    data["licenses"] = ["licenses/third_party/tf.txt", "licenses/third_party/fifo.txt"]
    repo.write_spec(data)
    lines = problem_lines(validate(repo))
    label = f"specs/{NAME}.yaml"
    assert lines == [
        f"{label}: files[1].source: models/demo/loop_a is a symlink loop; remove it or exclude it",
        f"{label}: files[1].source: models/demo/loop_b is a symlink loop; remove it or exclude it",
        f"{label}: files[1].source: models/demo/pipe is a FIFO (named pipe), not a regular file; remove it or exclude it",
        f"{label}: licenses[1]: licenses/third_party/fifo.txt is a FIFO (named pipe), not a file or a folder; only regular files are packed",
    ], lines
    data["files"][1]["exclude"] = ["loop_*", "pipe"]  # excluded, they are fine
    data["licenses"] = ["licenses/third_party/tf.txt"]
    repo.write_spec(data)
    assert validate(repo).exit_code == 0


def test_a_killed_build_leaves_a_temp_file_that_the_next_build_removes(repo, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = out / f".{NAME}.tar.gz.{dead.pid}.abc123.tmp"
    stale.write_bytes(b"x" * 1024)
    running = out / f".{NAME}.tar.gz.{os.getpid()}.def456.tmp"  # a build still running (this process)
    running.write_bytes(b"y")
    result = runner.invoke(app, ["--root", str(repo.root), "build", NAME, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert not stale.exists() and running.exists()
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{NAME}.tar.gz", running.name])
    assert remove_stale_temp_files(out / f"{NAME}.tar.gz") == []


def test_ctrl_c_while_python_loads_modelpkg_is_one_line(tmp_path):
    """Ctrl-C in the first half second lands in the imports: a stand-in `typer` whose import is
    interrupted shows what the user gets (it was a 37-line KeyboardInterrupt traceback)."""
    fake = tmp_path / "fake"
    (fake / "typer").mkdir(parents=True)
    (fake / "typer" / "__init__.py").write_text("raise KeyboardInterrupt\n")
    env = dict(os.environ, PYTHONPATH=f"{fake}{os.pathsep}{REPO}")
    proc = subprocess.run([sys.executable, "-c", "from packager.entry import main; main()", "list"],
                          capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (130, "interrupted\n")


def test_printed_commands_mask_every_url_credential():
    argv = ["buildah", "bud", "--build-arg", "http_proxy=http://alice:S3cret@proxy:3128",
            "--build-arg", "PIP_INDEX_URL=https://user:t0ken@pypi.example/simple",
            "--env", "REPO=https://ghp_abc@github.example/x.git", "plain"]
    text = printable_argv(argv)
    assert "S3cret" not in text and "t0ken" not in text and "ghp_abc" not in text
    assert "PIP_INDEX_URL=https://user:***@pypi.example/simple" in text
    assert "REPO=https://***@github.example/x.git" in text and "http_proxy=***" in text


def test_an_error_message_never_shows_a_url_password(repo, tmp_path, monkeypatch):
    from packager.commands import common

    monkeypatch.setattr(common, "load_packages",
                        lambda *a, **k: (_ for _ in ()).throw(common.UsageError("cannot reach https://bob:hunter2@idx/simple")))
    result = runner.invoke(app, ["--root", str(repo.root), "build", NAME])
    assert result.exit_code == 2 and "hunter2" not in result.output and "https://bob:***@idx/simple" in result.output
