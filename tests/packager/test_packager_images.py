"""Spec format extensions: several images per package (``images:``) and a folder's contents at the
package root (``destination: .``)."""

from __future__ import annotations

import json
import tarfile

import pytest
from typer.testing import CliRunner

from packager.cli import app
from packager.commands.image import app as image_app
from packager.dockerfile import image_packages, select_image
from packager.errors import SpecError
from packager.package import load_package
from packager.plan import make_plan
from tests.packager.packager_fixtures import NAME, base_spec

runner = CliRunner()


def two_images() -> dict:
    data = base_spec()
    image = data.pop("image")
    data["images"] = {
        "cpu": image,
        "slim": {"name": "intel/demo", "tag": "demo-slim", "parts": ["base", "model_package"]},
    }
    return data


def problems(repo, data) -> list[str]:
    repo.write_spec(data)
    with pytest.raises(SpecError) as info:
        make_plan(load_package(NAME, repo.root))
    return [f"{p.key}: {p.message}" for p in info.value.problems]


# --- images ----------------------------------------------------------------------------------


def test_images_defaults_and_the_first_is_the_default_image(repo):
    repo.write_spec(two_images())
    spec = load_package(NAME, repo.root).spec
    assert list(spec.images) == ["cpu", "slim"]
    assert spec.image == spec.images["cpu"] and spec.image_key == "cpu"
    assert spec.images["cpu"].dockerfile == f"dockerfiles/{NAME}-cpu.Dockerfile"
    assert spec.images["slim"].dockerfile == f"dockerfiles/{NAME}-slim.Dockerfile"
    assert spec.images["slim"].workdir == f"/workspace/{NAME}"
    summary = spec.summary()
    assert "image" not in summary and list(summary["images"]) == ["cpu", "slim"]


def test_plan_renders_one_dockerfile_per_image(repo):
    repo.write_spec(two_images())
    plan = make_plan(load_package(NAME, repo.root))
    assert [i.key for i in plan.images] == ["cpu", "slim"]
    cpu, slim = (i.dockerfile for i in plan.images)
    assert plan.dockerfile == cpu
    assert "TF_PACKAGE" in cpu and "TF_PACKAGE" not in slim
    assert f"modelpkg image build {NAME} --image slim" in slim
    info = json.loads(next(f for f in plan.model.files if f.path == "package_info.json").data)
    assert info["image"] == "intel/demo:demo-fp32"
    assert info["images"] == {"cpu": "intel/demo:demo-fp32", "slim": "intel/demo:demo-slim"}


def test_single_image_spec_is_unchanged(repo):
    package = load_package(NAME, repo.root)
    assert package.spec.images == {} and package.spec.image_key is None
    assert [key for key, _ in image_packages(package)] == [None]
    plan = make_plan(package)
    assert [i.key for i in plan.images] == [None] and plan.images[0].dockerfile == plan.dockerfile
    assert "--image" not in plan.dockerfile
    assert "images" not in json.loads(next(f for f in plan.model.files if f.path == "package_info.json").data)


def test_select_image(repo):
    repo.write_spec(two_images())
    package = load_package(NAME, repo.root)
    slim = select_image(package, "slim")
    assert slim.spec.image.tag == "demo-slim" and slim.spec.image_key_path == "images.slim"
    assert make_plan(slim).dockerfile == make_plan(package).images[1].dockerfile
    assert select_image(package, None) is package
    with pytest.raises(SpecError, match="no image 'gpu'; images: cpu, slim"):
        select_image(package, "gpu")


def test_image_and_images_together_is_a_problem(repo):
    data = two_images()
    data["image"] = data["images"]["cpu"]
    assert any("give image (one image) or images (several, by key), not both" in p for p in problems(repo, data))


def test_images_need_their_own_reference_and_dockerfile(repo):
    data = two_images()
    data["images"]["slim"]["tag"] = "demo-fp32"
    assert any("same reference (intel/demo:demo-fp32)" in p for p in problems(repo, data))
    data = two_images()
    data["images"]["slim"]["dockerfile"] = f"dockerfiles/{NAME}-cpu.Dockerfile"
    assert any(f"same dockerfile (dockerfiles/{NAME}-cpu.Dockerfile)" in p for p in problems(repo, data))


def test_bad_image_key(repo):
    data = two_images()
    data["images"]["Bad_Key"] = data["images"].pop("slim")
    found = problems(repo, data)
    assert any(p.startswith("images.Bad_Key") and "an image key such as cpu or hpu" in p for p in found), found


def test_problems_name_the_image(repo):
    data = two_images()
    data["images"]["slim"]["parts"] = ["model_package", "base"]
    data["images"]["slim"]["build_args"] = {"NOPE": "1"}
    found = problems(repo, data)
    assert any(p.startswith("images.slim.parts[0]: is 'model_package'; the first part must be a base part") for p in found), found
    data = two_images()
    data["images"]["slim"]["parts"] = ["base", "no_such_part"]
    found = problems(repo, data)
    assert any(p.startswith("images.slim.parts[1]: template part 'no_such_part' does not exist") for p in found), found
    data = two_images()
    data["images"]["slim"]["build_args"] = {"NOPE": "1"}
    found = problems(repo, data)
    assert found and all(p.startswith("images.slim.build_args.NOPE: no part declares ARG NOPE") for p in found), found


def test_base_package_resolves_for_each_image(repo):
    base = base_spec("demo-base")
    base["image"]["tag"] = "base"
    base.pop("docs")
    repo.write_spec(base)
    data = two_images()
    data["images"]["slim"]["base_package"] = "demo-base"
    repo.write_spec(data)
    spec = load_package(NAME, repo.root).spec
    assert spec.images["slim"].base_image == "intel/demo:base"
    assert spec.images["cpu"].base_image == "debian:bookworm-slim"
    data["images"]["slim"]["base_package"] = "demo-nope"
    found = problems(repo, data)
    assert found == ["images.slim.base_package: no other package named 'demo-nope'; did you mean 'demo-base'?"]


def test_dockerfile_command_writes_and_checks_every_image(repo):
    repo.write_spec(two_images())
    root = ["--root", str(repo.root)]
    result = runner.invoke(app, [*root, "dockerfile", NAME, "--check"])
    assert result.exit_code == 1
    assert f"missing    dockerfiles/{NAME}-cpu.Dockerfile" in result.output
    assert f"missing    dockerfiles/{NAME}-slim.Dockerfile" in result.output
    result = runner.invoke(app, [*root, "dockerfile", NAME])
    assert result.exit_code == 0, result.output
    assert (repo.root / f"dockerfiles/{NAME}-slim.Dockerfile").is_file()
    (repo.root / f"dockerfiles/{NAME}-slim.Dockerfile").write_text("stale\n")
    result = runner.invoke(app, [*root, "dockerfile", "--all", "--check"])
    assert result.exit_code == 1
    assert f"unchanged  dockerfiles/{NAME}-cpu.Dockerfile" in result.output
    assert f"stale      dockerfiles/{NAME}-slim.Dockerfile" in result.output


def test_show_lists_the_images(repo):
    repo.write_spec(two_images())
    result = runner.invoke(app, ["--root", str(repo.root), "show", NAME])
    assert result.exit_code == 0, result.output
    assert "image cpu (default): intel/demo:demo-fp32" in result.output
    assert "image slim: intel/demo:demo-slim" in result.output


def test_image_build_unknown_image_is_a_usage_error(repo):
    repo.write_spec(two_images())
    result = runner.invoke(image_app, ["build", NAME, "--image", "gpu", "--builder", "buildah"])
    assert result.exit_code == 2
    assert "no image 'gpu'; images: cpu, slim" in result.output + (result.stderr or "")


def test_image_build_selects_the_image(repo, monkeypatch):
    from packager.commands import image as image_cmd

    seen = {}

    def fake_build(package, builder, options, log):
        seen["tag"] = package.spec.image.reference
        raise SystemExit(0)

    monkeypatch.setattr(image_cmd, "build_image", fake_build)
    monkeypatch.setattr(image_cmd, "select_builder", lambda *a, **k: type("B", (), {"name": "fake"})())
    repo.write_spec(two_images())
    runner.invoke(image_app, ["build", NAME, "--image", "slim"])
    assert seen == {"tag": "intel/demo:demo-slim"}
    runner.invoke(image_app, ["build", NAME])
    assert seen == {"tag": "intel/demo:demo-fp32"}


# --- destination: . ----------------------------------------------------------------------------


def with_root_folder(repo, *entries) -> dict:
    repo.write("habana/demo/run_demo.py", "print('run')\n")
    repo.write("habana/demo/cfg/bert.json", "{}\n")
    data = base_spec()
    data["files"].append({"source": "habana/demo", "destination": "."})
    data["files"] += list(entries)
    return data


def test_folder_contents_at_the_package_root(repo, tmp_path):
    repo.write_spec(with_root_folder(repo))
    plan = make_plan(load_package(NAME, repo.root))
    paths = {f.path: f.origin for f in plan.model.files}
    assert paths["run_demo.py"] == "files[2]" and paths["cfg/bert.json"] == "files[2]"
    result = runner.invoke(app, ["--root", str(repo.root), "build", NAME, "--output-dir", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    with tarfile.open(tmp_path / "out" / f"{NAME}.tar.gz") as tar:
        names = tar.getnames()
    assert f"{NAME}/run_demo.py" in names and f"{NAME}/cfg/bert.json" in names


@pytest.mark.parametrize("spelling", [".", "./", "./."])
def test_root_spellings(repo, spelling):
    data = with_root_folder(repo)
    data["files"][-1]["destination"] = spelling
    repo.write_spec(data)
    assert load_package(NAME, repo.root).spec.files[-1].destination == "."


def test_root_destination_still_refuses_collisions(repo):
    repo.write("habana/demo/models/demo/train.py", "print('other')\n")
    found = problems(repo, with_root_folder(repo))
    assert any(p.startswith("files[2]: writes demo-fp32-training/models/demo/train.py, which files[1] already writes")
               for p in found), found


def test_root_destination_cannot_write_the_readme(repo):
    repo.write("habana/demo/README.md", "# not the generated one\n")
    found = problems(repo, with_root_folder(repo))
    assert any("writes demo-fp32-training/README.md, which is the generated README" in p for p in found), found


def test_root_destination_takes_a_folder_not_a_file(repo):
    data = base_spec()
    data["files"].append({"source": "models/demo/train.py", "destination": "."})
    found = problems(repo, data)
    assert found == ["files[2].destination: models/demo/train.py is a file; '.' (the package root) takes a "
                     "folder's contents, so name the file's path in the package"]


def test_source_may_still_not_be_the_repository_root(repo):
    data = base_spec()
    data["files"].append({"source": ".", "destination": "."})
    found = problems(repo, data)
    assert any(p.startswith("files[2].source: path '.' is the repository root itself") for p in found), found
