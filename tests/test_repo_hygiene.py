"""Repository-wide rules: shell scripts pass shellcheck, the README's set-up commands are the
ones CI runs, and the shipped model code keeps to its dependency boundaries."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tracked_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout.decode()
    return [ROOT / p for p in out.split("\0") if p and (ROOT / p).is_file()]


def _shell_scripts() -> list[Path]:
    scripts = []
    for path in _tracked_files():
        if path.suffix == ".sh":
            scripts.append(path)
            continue
        if path.suffix == "" and path.stat().st_size < 200_000:
            first = path.read_bytes()[:64]
            if first.startswith(b"#!") and b"bash" in first.split(b"\n")[0]:
                scripts.append(path)
    return sorted(scripts)


def test_there_are_shell_scripts_to_check():
    names = {p.name for p in _shell_scripts()}
    assert "lib.sh" in names and "run" in names and "setup-test-env.sh" in names


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_every_shell_script_passes_shellcheck():
    scripts = _shell_scripts()
    result = subprocess.run(
        ["shellcheck", "--external-sources", *map(str, scripts)],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _setup_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```\n(.*?)```", section, re.S)]


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_second():
    commands = _setup_commands()
    assert len(commands) == 2, commands
    assert all("\n" not in c for c in commands), "each set-up command is one line"
    assert "modelpkg build" in commands[0]
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci, f".ci/run must run the README's test command: {commands[1]!r}"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_shipped_model_code_never_imports_the_packager():
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "models").rglob("*.py")
        if "packager" in _imports(p)
    ]
    assert offenders == []


def test_launch_logic_uses_only_the_standard_library():
    allowed = set(sys.stdlib_module_names) | {"models", "__future__"}
    for path in (ROOT / "models" / "common").rglob("*.py"):
        third_party = _imports(path) - allowed
        # sibling imports used when a file is run as a script
        third_party -= {p.stem for p in path.parent.glob("*.py")}
        assert not third_party, f"{path.relative_to(ROOT)} imports {sorted(third_party)}"


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "benchmarks").glob("*.py")))
def test_every_benchmark_imports_and_answers_help(script):
    """A benchmark is run by hand, rarely: an import left stale by a refactoring (a module
    renamed or removed) shows up here instead of when somebody wants the figures."""
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--help"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"benchmarks/{script} --help: {proc.stderr[-2000:]}"
    assert "usage:" in proc.stdout
