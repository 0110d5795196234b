"""`modelpkg image run` with a fake buildah: the argv of `buildah run`, env, mounts, cleanup."""

from __future__ import annotations

from typer.testing import CliRunner

from packager.commands.image import app

runner = CliRunner()


def _run_argv(fake):
    runs = [c for c in fake.calls() if "run" in c and "bud" not in c]
    assert len(runs) == 1, fake.calls()
    return runs[0]


def test_buildah_run_forwards_env_mounts_and_script_args(tiny_repo, fake_buildah, tmp_path, monkeypatch, clean_proxy_env):
    data = tmp_path / "data"
    data.mkdir()
    out = tmp_path / "out" / "run1"  # created: OUTPUT_DIR is an output
    extra = tmp_path / "extra"
    extra.mkdir()
    monkeypatch.setenv("DATASET_DIR", str(data))
    monkeypatch.setenv("OUTPUT_DIR", str(out))
    monkeypatch.setenv("MPI_NUM_PROCESSES", "2")
    monkeypatch.setenv("https_proxy", "http://proxy:3128")
    monkeypatch.setenv("UNRELATED", "nope")
    result = runner.invoke(app, [
        "run", "tiny-pkg", "--builder", "buildah", "--env", "BATCH_SIZE=4",
        "--volume", f"{extra}:/mnt/extra:ro", "--", "run_demo.sh", "--steps", "3",
    ])
    assert result.exit_code == 0, result.output + result.stderr
    assert out.is_dir()
    assert fake_buildah.subcommands() == ["inspect", "from", "run", "rm"]
    from_argv = fake_buildah.calls()[1]
    assert from_argv == ["from", "--pull-never", "--quiet", "local/tiny:tiny-latest"]
    argv = _run_argv(fake_buildah)
    assert argv[:3] == ["run", "--isolation", "chroot"]
    volumes = [argv[i + 1] for i, a in enumerate(argv) if a == "--volume"]
    assert volumes == [f"{data}:{data}", f"{out}:{out}", f"{extra}:/mnt/extra:ro"]
    env = [argv[i + 1] for i, a in enumerate(argv) if a == "--env"]
    assert sorted(env) == sorted([
        f"DATASET_DIR={data}", f"OUTPUT_DIR={out}", "MPI_NUM_PROCESSES=2",
        "https_proxy=http://proxy:3128", "BATCH_SIZE=4",
    ])
    tail = argv[argv.index("fake-working-container"):]
    assert tail == ["fake-working-container", "--", "/bin/bash", "quickstart/run_demo.sh", "--steps", "3"]
    assert fake_buildah.calls()[-1] == ["rm", "fake-working-container"]


def test_script_exit_status_is_returned_and_container_removed(tiny_repo, fake_buildah, tmp_path, monkeypatch):
    monkeypatch.setenv("DATASET_DIR", str(tmp_path))
    monkeypatch.setenv("OUTPUT_DIR", str(tmp_path))
    monkeypatch.setenv("FAKE_BUILDAH_RUN_EXIT", "7")
    result = runner.invoke(app, ["run", "tiny-pkg", "--builder", "buildah", "--", "run_demo.sh"])
    assert result.exit_code == 7
    assert "quickstart/run_demo.sh exited with status 7" in result.stderr
    assert fake_buildah.calls()[-1] == ["rm", "fake-working-container"]


def test_missing_required_env_is_named_before_anything_runs(tiny_repo, fake_buildah, monkeypatch):
    monkeypatch.delenv("DATASET_DIR", raising=False)
    monkeypatch.delenv("OUTPUT_DIR", raising=False)
    result = runner.invoke(app, ["run", "tiny-pkg", "--builder", "buildah", "--", "run_demo.sh"])
    assert result.exit_code == 1
    assert "quickstart/run_demo.sh needs DATASET_DIR, OUTPUT_DIR" in result.stderr
    assert fake_buildah.calls() == []


def test_unknown_script_and_missing_folder(tiny_repo, fake_buildah, tmp_path, monkeypatch):
    monkeypatch.setenv("DATASET_DIR", str(tmp_path / "absent"))
    monkeypatch.setenv("OUTPUT_DIR", str(tmp_path))
    result = runner.invoke(app, ["run", "tiny-pkg", "--builder", "buildah", "--", "nope.sh"])
    assert result.exit_code == 1
    assert "no quickstart 'nope.sh'; its quickstarts: run_demo.sh" in result.stderr
    result = runner.invoke(app, ["run", "tiny-pkg", "--builder", "buildah", "--", "run_demo.sh"])
    assert result.exit_code == 1
    assert f"DATASET_DIR={tmp_path / 'absent'} does not exist" in result.stderr


def test_image_not_built_yet_says_how_to_build_it(tiny_repo, fake_buildah, tmp_path, monkeypatch):
    monkeypatch.setenv("DATASET_DIR", str(tmp_path))
    monkeypatch.setenv("OUTPUT_DIR", str(tmp_path))
    monkeypatch.setenv("FAKE_BUILDAH_NO_IMAGE", "1")
    result = runner.invoke(app, ["run", "tiny-pkg", "--builder", "buildah", "--", "run_demo.sh"])
    assert result.exit_code == 1
    assert "build it first with `modelpkg image build tiny-pkg --builder buildah`" in result.stderr
    assert "from" not in fake_buildah.subcommands()


def test_run_through_the_modelpkg_cli_passes_script_flags(tiny_repo, fake_buildah, tmp_path, monkeypatch):
    from packager.cli import app as modelpkg

    monkeypatch.setenv("DATASET_DIR", str(tmp_path))
    monkeypatch.setenv("OUTPUT_DIR", str(tmp_path))
    result = runner.invoke(modelpkg, ["image", "run", "tiny-pkg", "--builder", "buildah", "--",
                                      "run_demo.sh", "--max_seq_length=64", "-v"])
    assert result.exit_code == 0, result.output + result.stderr
    argv = _run_argv(fake_buildah)
    assert argv[-4:] == ["/bin/bash", "quickstart/run_demo.sh", "--max_seq_length=64", "-v"]
