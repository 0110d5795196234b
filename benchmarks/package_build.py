"""Time `modelpkg build` of one package against `tar -czf` of the same files, in the same run.

    python benchmarks/package_build.py [--spec NAME | --fixture] [--repeat 5]

Uses the named spec, else the first real spec that validates, else a generated fixture
repository (400 source files, about 6 MB). Prints the best of --repeat timings for both and
their ratio; the target is modelpkg <= 1.5x tar (modelpkg also renders the README, hashes
every file for MANIFEST.sha256 and normalises the archive for reproducibility).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataclasses import replace  # noqa: E402

from packager.archive import write_plan  # noqa: E402
from packager.errors import ModelpkgError  # noqa: E402
from packager.package import load_package, package_names  # noqa: E402
from packager.plan import make_plan  # noqa: E402
from packager.root import find_root  # noqa: E402

TARGET = 1.5


def make_fixture(root: Path) -> str:
    """A repository with one spec and enough code-like files to time."""
    templates = find_root() / "templates"
    shutil.copytree(templates / "dockerfile", root / "templates/dockerfile")
    shutil.copytree(templates / "docs", root / "templates/docs")
    rng = random.Random(0)
    words = ["def", "return", "tensor", "layer", "self", "import", "batch", "hidden", "=", "(", ")", ":", "0.1"]
    for i in range(400):
        path = root / "models/bench" / f"pkg{i % 20}" / f"module_{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = (" ".join(rng.choice(words) for _ in range(12)) for _ in range(200))
        path.write_text("\n".join(lines) + "\n")
    (root / "models/bench/vocab.txt").write_text("\n".join(f"tok{i}" for i in range(300_000)) + "\n")
    (root / "quickstart/common").mkdir(parents=True)
    (root / "quickstart/common/lib.sh").write_text("# helpers\n")
    script = root / "quickstart/bench/run.sh"
    script.parent.mkdir(parents=True)
    script.write_text("#!/usr/bin/env bash\necho run\n")
    script.chmod(0o755)
    (root / "LICENSE").write_text("Apache-2.0\n")
    (root / "specs").mkdir()
    (root / "specs/bench-fp32-training.yaml").write_text(
        "name: bench-fp32-training\ntitle: Bench\nframework: tensorflow\nprecision: fp32\n"
        "mode: training\nhardware: xeon\nfiles:\n  - {source: models/bench, destination: models/bench}\n"
        "quickstart:\n  - {script: quickstart/bench/run.sh, description: Runs.}\n"
        "docs: {parts: [title, quickstart_table, license]}\n"
    )
    return "bench-fp32-training"


def pick_package(root: Path, wanted: str | None):
    if wanted:
        return load_package(wanted, root)
    for name in dict.fromkeys(["bert-large-bf16-training"] + package_names(root)):
        try:
            return load_package(name, root)
        except ModelpkgError as exc:
            print(f"skipping {name}: {str(exc).splitlines()[0]}")
    return None


def best_of(repeat: int, func) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", help="package name (default: a real spec, else a generated fixture)")
    parser.add_argument("--fixture", action="store_true", help="time the generated fixture even when real specs exist")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="modelpkg-bench-") as tmp:
        tmp_path = Path(tmp)
        root = find_root()
        package = None if args.fixture else pick_package(root, args.spec)
        if package is None:
            root = tmp_path / "repo"
            package = load_package(make_fixture(root), root)
            print("using a generated fixture repository")
        out = tmp_path / "out"
        files = make_plan(package, out).model.files
        sources = [f.source for f in files if f.source is not None]
        size = sum(p.stat().st_size for p in sources)
        print(f"package {package.name}: {len(files)} files, {size / 1e6:.2f} MB of sources")

        listing = tmp_path / "files.txt"
        listing.write_text("".join(os.path.relpath(p, root) + "\n" for p in sources))

        def ours() -> None:  # what `modelpkg build` does for the model package: plan, write
            write_plan(replace(make_plan(package, out), wrapper=None))

        def tar() -> None:
            subprocess.run(["tar", "-czf", str(tmp_path / "tar.tar.gz"), "-C", str(root), "-T", str(listing)], check=True)

        ours()  # warm the page cache for both
        tar()
        t_ours = best_of(args.repeat, ours)
        t_tar = best_of(args.repeat, tar)
        ratio = t_ours / t_tar
        ours_size = (out / f"{package.name}.tar.gz").stat().st_size
        tar_size = (tmp_path / "tar.tar.gz").stat().st_size
        print(f"modelpkg build : {t_ours * 1000:8.1f} ms  ({ours_size} bytes)")
        print(f"tar -czf       : {t_tar * 1000:8.1f} ms  ({tar_size} bytes)")
        print(f"ratio          : {ratio:.2f}x  (target <= {TARGET}x: {'met' if ratio <= TARGET else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
