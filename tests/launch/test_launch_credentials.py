"""Issue "Hardening": the launcher prints its command and environment; passwords and tokens in
URLs are masked there (shell text and ``--dry-run --json``), the executed command keeps them."""

import json
import os
import sys

import pytest

from models.common import launch
from tests.launch.test_launch_cli import FIXTURES, run

PROXY = "http://alice:S3cret@proxy:3128"
INDEX = "https://user:tok3n@pypi.example.com/simple"


@pytest.mark.parametrize("text, masked", [
    (PROXY, "http://alice:***@proxy:3128"),
    (f"--index-url={INDEX}", "--index-url=https://user:***@pypi.example.com/simple"),
    ("https://user:p@ss@host/x?a=b", "https://user:***@host/x?a=b"),  # "@" in the password
    ("https://ghp_TOKEN@github.com/o/r.git", "https://***@github.com/o/r.git"),
    ("PIP_INDEX_URL=https://u:t@h/s http://x.org/a@b", "PIP_INDEX_URL=https://u:***@h/s "
     "http://x.org/a@b"),  # an "@" in a path is no userinfo
    ("git@github.com:o/r.git", "git@github.com:o/r.git"),
    ("http://proxy:3128", "http://proxy:3128"),
])
def test_mask_credentials(text, masked):
    assert launch.mask_credentials(text) == masked


def test_scheme_less_proxy_variables_are_masked_too():
    assert launch.mask_credentials("alice:S3cret@proxy:3128", "https_proxy") == \
        "alice:***@proxy:3128"
    assert launch.mask_credentials("alice:S3cret@proxy:3128", "OTHER") == \
        "alice:S3cret@proxy:3128"


def test_printed_env_and_json_mask_but_the_child_env_keeps_the_values():
    plan = launch.Plan(argv=["python", "train.py", f"--proxy={PROXY}"],
                       env={"PIP_INDEX_URL": INDEX, "http_proxy": "alice:S3cret@proxy:3128",
                            "OMP_NUM_THREADS": "4"},
                       unset=[], warnings=[], summary="1 process",
                       ranks=[{"rank": 0, "host": "localhost", "local_rank": 0, "cpus": "0-3",
                               "memory": "0", "bind": "numactl",
                               "command": ["python", "train.py", f"--proxy={PROXY}"]}])
    text = plan.shell_text()
    obj = json.loads(plan.to_json())
    for printed in (text, json.dumps(obj)):
        assert "S3cret" not in printed and "tok3n" not in printed
    assert "export PIP_INDEX_URL='https://user:***@pypi.example.com/simple'" in text
    assert "export http_proxy='alice:***@proxy:3128'" in text
    assert obj["env"]["PIP_INDEX_URL"] == "https://user:***@pypi.example.com/simple"
    assert obj["argv"][-1] == obj["ranks"][0]["command"][-1] == \
        "--proxy=http://alice:***@proxy:3128"
    # What runs is untouched.
    assert plan.argv[-1] == f"--proxy={PROXY}" and plan.env["PIP_INDEX_URL"] == INDEX
    assert plan.child_environ({})["PIP_INDEX_URL"] == INDEX


@pytest.mark.parametrize("as_json", [False, True])
def test_dry_run_masks_credentials_in_the_command(tmp_path, as_json):
    args = ["--dry-run", *(["--json"] if as_json else []), "--lscpu-file",
            os.path.join(FIXTURES, "spr_2s_56c_ht.lscpu"), "--mpi-num-processes", "2", "--",
            "/opt/py/bin/pip", "install", "--index-url", INDEX, "--proxy", PROXY, "pkg"]
    done = run(args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "S3cret" not in done.stdout + done.stderr and "tok3n" not in done.stdout
    assert "http://alice:***@proxy:3128" in done.stdout
    assert "https://user:***@pypi.example.com/simple" in done.stdout
    if as_json:
        obj = json.loads(done.stdout)
        assert all("S3cret" not in " ".join(r["command"]) for r in obj["ranks"])


def test_the_executed_command_gets_the_real_values(tmp_path):
    done = run(["--no-bind", "--", sys.executable, "-c",
                "import sys; print('child got', sys.argv[1])", PROXY], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"child got {PROXY}" in done.stdout
    printed = done.stdout.replace(f"child got {PROXY}", "")
    assert "S3cret" not in printed and "http://alice:***@proxy:3128" in printed
