"""A tiny fixture repository under tmp_path: the real generic templates, fixture code, specs.

Tests never depend on the real specs in specs/ (other engineers own those), except
test_real_specs.py, which checks them when they are present.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
NAME = "demo-fp32-training"

WRAPPER_BUILD = """#!/usr/bin/env bash
set -euo pipefail
docker build -f {{ name }}.Dockerfile -t {{ image.reference }} .
"""
WRAPPER_RUN = """#!/usr/bin/env bash
set -euo pipefail
SCRIPT="${SCRIPT:-{{ run.default_script }}}"
docker run{% for v in mounts %} --volume "${{ '{' }}{{ v }}{{ '}' }}:${{ '{' }}{{ v }}{{ '}' }}"{% endfor %} {{ image.reference }} /bin/bash "quickstart/${SCRIPT}"
"""


def base_spec(name: str = NAME) -> dict:
    return {
        "name": name,
        "title": "Demo FP32 training",
        "framework": "tensorflow",
        "precision": "fp32",
        "mode": "training",
        "hardware": "xeon",
        "description": "Trains a demo model.\nSecond line.\n",
        "files": [
            {"source": "models/common", "destination": "models/common"},
            {"source": "models/demo", "destination": "models/demo", "exclude": ["**/*.tmp"]},
        ],
        "quickstart": [
            {
                "script": "quickstart/demo/run_demo.sh",
                "description": "Runs the demo.",
                "env": {"required": ["DATASET_DIR", "OUTPUT_DIR"], "optional": ["MPI_NUM_PROCESSES"]},
            }
        ],
        "image": {
            "name": "intel/demo",
            "tag": "demo-fp32",
            "parts": ["base", "python", "tensorflow", "openmpi", "numactl", "ssh", "model_package"],
            "build_args": {"TF_PACKAGE": "tensorflow-cpu==2.21.0"},
        },
        "docs": {
            "parts": ["title", "description", "download", "datasets", "quickstart_table",
                      "bare_metal", "docker", "license"],
            "vars": {"datasets": "Write a dataset to `DATASET_DIR`."},
        },
        "licenses": ["licenses/third_party/tf.txt"],
    }


class FixtureRepo:
    def __init__(self, root: Path):
        self.root = root

    def write(self, rel: str, text: str = "", mode: int | None = None) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if mode is not None:
            path.chmod(mode)
        return path

    def write_spec(self, data: dict, name: str | None = None) -> Path:
        path = self.root / "specs" / f"{name or data['name']}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def write_spec_text(self, name: str, text: str) -> Path:
        path = self.root / "specs" / f"{name}.yaml"
        path.write_text(text)
        return path


def make_repo(root: Path) -> FixtureRepo:
    repo = FixtureRepo(root)
    for kind in ("dockerfile", "docs"):
        shutil.copytree(REPO / "templates" / kind, root / "templates" / kind)
    repo.write("templates/wrapper/build.sh.j2", WRAPPER_BUILD)
    repo.write("templates/wrapper/run.sh.j2", WRAPPER_RUN)
    repo.write("LICENSE", "Apache License 2.0 (fixture)\n")
    repo.write("quickstart/common/lib.sh", "# shared helpers\nrequire_env() { :; }\n")
    repo.write("quickstart/demo/run_demo.sh", "#!/usr/bin/env bash\necho demo\n", mode=0o755)
    repo.write("models/common/launch.py", "print('launch')\n")
    repo.write("models/demo/train.py", "print('train')\n")
    repo.write("models/demo/run.py", "#!/usr/bin/env python3\nprint('run')\n", mode=0o775)
    repo.write("models/demo/data/vocab.txt", "[PAD]\n[UNK]\nhello\n")
    repo.write("models/demo/__pycache__/train.cpython-311.pyc", "junk")
    repo.write("models/demo/scratch.tmp", "excluded by the spec")
    repo.write("licenses/third_party/tf.txt", "TensorFlow notice\n")
    (root / "specs").mkdir()
    repo.write_spec(base_spec())
    return repo
